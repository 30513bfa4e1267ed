package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

type destJSON struct {
	Addr string `json:"addr"`
	Tipo string `json:"tipo"`
}

type daticertJSON struct {
	Tipo             string     `json:"tipo"`
	Errore           string     `json:"errore"`
	Mittente         string     `json:"mittente"`
	Destinatari      []destJSON `json:"destinatari"`
	Risposte         string     `json:"risposte"`
	Oggetto          *string    `json:"oggetto"`
	GestoreEmittente string     `json:"gestore_emittente"`
	Zona             string     `json:"zona"`
	Giorno           string     `json:"giorno"`
	Ora              string     `json:"ora"`
	Identificativo   string     `json:"identificativo"`
	Msgid            string     `json:"msgid"`
	Ricevuta         string     `json:"ricevuta"`
	Consegna         string     `json:"consegna"`
	Ricezione        []string   `json:"ricezione"`
	ErroreEsteso     string     `json:"errore_esteso"`
}

type fileJSON struct {
	File           string        `json:"file"`
	Kind           string        `json:"kind"`
	HeaderType     string        `json:"header_type"`
	SignatureValid bool          `json:"signature_valid"`
	ChainValid     *bool         `json:"chain_valid"`   // null when the chain was not checked
	ChainChecked   bool          `json:"chain_checked"` // false: no trusted roots, the result is the signature's only
	Roots          string        `json:"roots"`         // where the trusted roots came from
	ChainNote      string        `json:"chain_note,omitempty"`
	Warnings       []string      `json:"warnings"`
	SigningTime    *time.Time    `json:"signing_time"`
	SignerSubject  string        `json:"signer_subject"`
	SignerSHA1     string        `json:"signer_sha1"`
	Daticert       *daticertJSON `json:"daticert"`
	Error          string        `json:"error"`
}

const verifyUsage = `usage: pecctl verify [--ca FILE]... [--sha1-cutoff DAY|off] [-config FILE] [--json] FILE...

Verifies PEC messages: the S/MIME signature and the signer's chain at the
CMS signing time; prints kind, type header, daticert, signer, warnings and
the first error. Trusted roots: the --ca files; without --ca, [signing]
trusted_roots of the configuration (-config, default ` + config.DefaultPath + `)
when it exists; else the system's roots. SHA-1 certificate signatures are
accepted in chains of messages signed before --sha1-cutoff (default: the
configuration's sha1_cutoff, else 2017-01-01). When no roots are found the
chain is not checked and the output says so: exit status 0 then means "the
signature verifies", nothing more. Exit status 0 when every file verifies,
1 when one does not, 2 on usage errors.
`

// systemRootFiles are where Linux distributions keep the CA bundle (the
// list crypto/x509 searches, which does not expose the certificates).
var systemRootFiles = []string{
	"/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu
	"/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
	"/etc/ssl/ca-bundle.pem",             // openSUSE
	"/etc/ssl/cert.pem",                  // Alpine
}

// verifyRoots finds the trusted roots: --ca, the configuration, the
// system; nil roots and "none" when there are none.
func verifyRoots(cas []string, cfgPath string, cfgGiven bool, cutoff string) (*smime.Roots, string, error) {
	var roots *smime.Roots
	source := "none"
	switch {
	case len(cas) > 0:
		roots = smime.NewRoots()
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, "", err
			}
			if !roots.AppendPEM(pem) {
				return nil, "", fmt.Errorf("%s holds no PEM certificate", f)
			}
		}
		source = "--ca " + strings.Join(cas, ",")
	default:
		if _, err := os.Stat(cfgPath); err == nil || cfgGiven {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return nil, "", err
			}
			if len(cfg.Signing.TrustedRoots) > 0 {
				if roots, err = cfg.Roots(); err != nil {
					return nil, "", err
				}
				source = "configuration " + cfgPath + " [signing] trusted_roots"
				if cutoff == "" {
					return roots, source, nil
				}
				break
			}
		}
		files := systemRootFiles
		if f := os.Getenv("SSL_CERT_FILE"); f != "" {
			files = []string{f} // as crypto/x509: it replaces the list
		}
		for _, f := range files {
			if pem, err := os.ReadFile(f); err == nil {
				roots = smime.NewRoots()
				if roots.AppendPEM(pem) {
					source = "system " + f
					break
				}
				roots = nil
			}
		}
	}
	if roots != nil && cutoff != "" {
		if cutoff == "off" {
			roots.SHA1Cutoff = time.Time{}
		} else {
			t, err := time.Parse("2006-01-02", cutoff)
			if err != nil {
				return nil, "", fmt.Errorf("--sha1-cutoff %q: use a day such as 2017-01-01, or off", cutoff)
			}
			roots.SHA1Cutoff = t
		}
	}
	return roots, source, nil
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	var cas multi
	fs.Var(&cas, "ca", "PEM file of trusted roots (repeatable)")
	asJSON := fs.Bool("json", false, "one JSON object per file")
	cfgPath := fs.String("config", config.DefaultPath, "configuration file whose trusted_roots are used without --ca")
	cutoff := fs.String("sha1-cutoff", "", "accept SHA-1 certificate signatures in chains of messages signed before this day (YYYY-MM-DD), or off")
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	cfgGiven := false
	fs.Visit(func(f *flag.Flag) { cfgGiven = cfgGiven || f.Name == "config" })
	roots, source, err := verifyRoots(cas, *cfgPath, cfgGiven, *cutoff)
	if err != nil {
		fmt.Fprintf(stderr, "pecctl verify: %v\n", err)
		return 2
	}
	status := 0
	enc := json.NewEncoder(stdout)
	for _, f := range files {
		out := verifyFile(f, roots)
		out.Roots = source
		// a file verifies when it is a well-formed PEC message whose
		// signature (and chain, with --ca) verified: any error counts
		ok := out.Error == "" && out.SignatureValid && (out.ChainValid == nil || *out.ChainValid)
		if !ok {
			status = 1
		}
		if *asJSON {
			enc.Encode(out)
		} else {
			printText(stdout, out)
		}
	}
	return status
}

func verifyFile(file string, roots *smime.Roots) fileJSON {
	out := fileJSON{File: file, Kind: string(kind.Ordinaria), ChainChecked: roots != nil, Warnings: []string{}}
	raw, err := os.ReadFile(file)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	r := verify.Message(raw, roots)
	out.Warnings = append(out.Warnings, r.Warnings...)
	if m := r.Message; m != nil {
		out.Kind = jsonKind(m.Kind, m.HeaderType)
		if tr := m.Header.Get("X-Trasporto"); tr != "" {
			out.HeaderType = "X-Trasporto: " + tr
		} else if rc := m.Header.Get("X-Ricevuta"); rc != "" {
			out.HeaderType = "X-Ricevuta: " + rc
		}
		if d := m.Daticert; d != nil {
			out.Daticert = toJSON(d)
		}
	}
	if s := r.Signature; s != nil {
		out.SignatureValid = s.SignatureErr == nil
		if roots != nil {
			v := s.ChainErr == nil
			out.ChainValid = &v
		}
		if !s.SigningTime.IsZero() {
			t := s.SigningTime
			out.SigningTime = &t
		}
		out.ChainNote = s.ChainNote
		if s.Signer != nil {
			out.SignerSubject = s.Signer.Subject.String()
			out.SignerSHA1 = s.SignerSHA1
		}
	} else if roots != nil {
		v := false
		out.ChainValid = &v
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return out
}

// jsonKind: posta-certificata, anomalia, the X-Ricevuta value, or ordinaria.
func jsonKind(k kind.Kind, headerType string) string {
	switch k {
	case kind.PostaCertificata, kind.Anomalia, kind.Ordinaria:
		return string(k)
	}
	return headerType
}

func toJSON(d *daticert.Postacert) *daticertJSON {
	j := &daticertJSON{Tipo: string(d.Tipo), Errore: string(d.Errore), Mittente: d.Mittente, Risposte: d.Risposte,
		Oggetto: d.Oggetto, GestoreEmittente: d.GestoreEmittente, Zona: d.Zona, Giorno: d.Giorno, Ora: d.Ora,
		Identificativo: d.Identificativo, Msgid: d.Msgid, Ricevuta: string(d.Ricevuta), Consegna: d.Consegna,
		Ricezione: d.Ricezione, ErroreEsteso: d.ErroreEsteso, Destinatari: []destJSON{}}
	if j.Errore == "" {
		j.Errore = string(daticert.Nessuno)
	}
	if j.Ricezione == nil {
		j.Ricezione = []string{}
	}
	for _, x := range d.Destinatari {
		j.Destinatari = append(j.Destinatari, destJSON{x.Addr, string(x.Tipo)})
	}
	return j
}

func printText(w io.Writer, o fileJSON) {
	fmt.Fprintf(w, "%s:\n", o.File)
	fmt.Fprintf(w, "  kind:            %s\n", o.Kind)
	if o.HeaderType != "" {
		fmt.Fprintf(w, "  type header:     %s\n", o.HeaderType)
	}
	fmt.Fprintf(w, "  signature:       %s\n", yesNo(o.SignatureValid))
	if o.ChainValid != nil {
		fmt.Fprintf(w, "  chain:           %s (roots: %s)\n", yesNo(*o.ChainValid), o.Roots)
	} else {
		fmt.Fprintf(w, "  chain:           NOT CHECKED: no trusted roots (pass --ca FILE); a valid result means the signature only\n")
	}
	if o.ChainNote != "" {
		fmt.Fprintf(w, "  chain note:      %s\n", o.ChainNote)
	}
	if o.SigningTime != nil {
		fmt.Fprintf(w, "  signing time:    %s\n", o.SigningTime.Format(time.RFC3339))
	}
	if o.SignerSubject != "" {
		fmt.Fprintf(w, "  signer:          %s\n  signer SHA-1:    %s\n", o.SignerSubject, o.SignerSHA1)
	}
	if d := o.Daticert; d != nil {
		fmt.Fprintf(w, "  daticert:        tipo=%s errore=%s\n", d.Tipo, d.Errore)
		fmt.Fprintf(w, "    mittente:      %s\n", d.Mittente)
		for _, x := range d.Destinatari {
			fmt.Fprintf(w, "    destinatario:  %s (%s)\n", x.Addr, x.Tipo)
		}
		fmt.Fprintf(w, "    risposte:      %s\n", d.Risposte)
		if d.Oggetto != nil {
			fmt.Fprintf(w, "    oggetto:       %s\n", *d.Oggetto)
		}
		fmt.Fprintf(w, "    gestore:       %s\n", d.GestoreEmittente)
		fmt.Fprintf(w, "    data:          %s %s (%s)\n", d.Giorno, d.Ora, d.Zona)
		fmt.Fprintf(w, "    identificativo: %s\n", d.Identificativo)
		for _, x := range []struct{ k, v string }{{"msgid", d.Msgid}, {"ricevuta", d.Ricevuta}, {"consegna", d.Consegna}, {"errore-esteso", d.ErroreEsteso}} {
			if x.v != "" {
				fmt.Fprintf(w, "    %-14s %s\n", x.k+":", x.v)
			}
		}
		for _, r := range d.Ricezione {
			fmt.Fprintf(w, "    ricezione:     %s\n", r)
		}
	}
	for _, x := range o.Warnings {
		fmt.Fprintf(w, "  warning:         %s\n", x)
	}
	if o.Error != "" {
		fmt.Fprintf(w, "  error:           %s\n", o.Error)
	}
}

func yesNo(b bool) string {
	if b {
		return "valid"
	}
	return "INVALID"
}
