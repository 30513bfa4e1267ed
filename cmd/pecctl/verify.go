package main

import (
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
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
	ChainValid     *bool         `json:"chain_valid"` // null when no --ca was given
	SigningTime    *time.Time    `json:"signing_time"`
	SignerSubject  string        `json:"signer_subject"`
	SignerSHA1     string        `json:"signer_sha1"`
	Daticert       *daticertJSON `json:"daticert"`
	Error          string        `json:"error"`
}

const verifyUsage = `usage: pecctl verify [--ca FILE]... [--json] FILE...

Verifies PEC messages: S/MIME signature, and with --ca the signer's chain to
those roots at the CMS signing time; prints kind, type header, daticert,
signer and the first error. Exit status 0 when every file verifies, 1 when
one does not, 2 on usage errors.
`

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, verifyUsage) }
	var cas multi
	fs.Var(&cas, "ca", "PEM file of trusted roots (repeatable)")
	asJSON := fs.Bool("json", false, "one JSON object per file")
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
	var roots *x509.CertPool
	if len(cas) > 0 {
		roots = x509.NewCertPool()
		for _, f := range cas {
			pem, err := os.ReadFile(f)
			if err != nil {
				fmt.Fprintf(stderr, "pecctl verify: %v\n", err)
				return 2
			}
			if !roots.AppendCertsFromPEM(pem) {
				fmt.Fprintf(stderr, "pecctl verify: %s holds no PEM certificate\n", f)
				return 2
			}
		}
	}
	status := 0
	enc := json.NewEncoder(stdout)
	for _, f := range files {
		out := verifyFile(f, roots)
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

func verifyFile(file string, roots *x509.CertPool) fileJSON {
	out := fileJSON{File: file, Kind: string(kind.Ordinaria)}
	raw, err := os.ReadFile(file)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	r := verify.Message(raw, roots)
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
		fmt.Fprintf(w, "  chain:           %s\n", yesNo(*o.ChainValid))
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
