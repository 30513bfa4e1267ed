package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

const virusUsage = `usage: pecctl virus list|extract [OPTIONS]

The virus store (RFC 6109 §2.2.4): the infected messages kept for 30 months.

  list [--from DAY --to DAY] [--pecid ID] [--json]
                       the items (id, time, PEC id, sender, recipients,
                       virus, size, SHA-256), oldest first
  extract (--id N | --pecid ID | --from DAY --to DAY) -o FILE [--raw]
                       for an authorised request: one S/MIME message signed
                       with the provider key holding a JSON description of
                       the items and each item, byte for byte, as a base64
                       attachment (still infected: handle it as such); with
                       --raw and --id, the bare item only

Every subcommand takes -config FILE (default ` + config.DefaultPath + `).
`

func cmdVirus(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, virusUsage)
		return 2
	}
	switch args[0] {
	case "list", "extract":
		return virusCmd(args[0], args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, virusUsage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl virus: unknown subcommand %q\n%s", args[0], virusUsage)
	return 2
}

// virusJSON describes one item.
type virusJSON struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	PECID      string    `json:"pecid"`
	Sender     string    `json:"sender"`
	Recipients []string  `json:"recipients"`
	Signature  string    `json:"signature"`
	Size       int       `json:"size"`
	SHA256     string    `json:"sha256"`
	File       string    `json:"file,omitempty"`
}

func describeVirus(v store.VirusItem, loc *time.Location) virusJSON {
	sum := sha256.Sum256(v.Data)
	return virusJSON{ID: v.ID, Time: v.Time.In(loc), PECID: v.PECID, Sender: v.Sender, Recipients: append([]string{}, v.Recipients...),
		Signature: v.Signature, Size: len(v.Data), SHA256: hex.EncodeToString(sum[:])}
}

func virusCmd(sub string, args []string, stdout, stderr io.Writer) int {
	cmd := "virus " + sub
	fs, cfgPath := newFlags(cmd, virusUsage, stderr)
	fromS := fs.String("from", "", "")
	toS := fs.String("to", "", "")
	pecid := fs.String("pecid", "", "")
	asJSON := fs.Bool("json", false, "")
	id := fs.Int64("id", 0, "")
	out := fs.String("o", "", "")
	raw := fs.Bool("raw", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, virusUsage, "unexpected argument %q", pos[0])
	}
	if (*fromS == "") != (*toS == "") {
		return usageErr(stderr, cmd, virusUsage, "--from and --to go together")
	}
	if sub == "list" && (*id != 0 || *out != "" || *raw) {
		return usageErr(stderr, cmd, virusUsage, "list takes --from, --to, --pecid and --json")
	}
	if sub == "extract" {
		switch {
		case *out == "":
			return usageErr(stderr, cmd, virusUsage, "-o FILE is required: the items are infected and are not written to a terminal")
		case *id == 0 && *pecid == "" && *fromS == "":
			return usageErr(stderr, cmd, virusUsage, "name the items: --id, --pecid or --from and --to")
		case *raw && (*id == 0 || *pecid != "" || *fromS != ""):
			return usageErr(stderr, cmd, virusUsage, "--raw takes one item, by --id")
		case *asJSON:
			return usageErr(stderr, cmd, virusUsage, "extract does not take --json")
		}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	var from, to time.Time
	if *fromS != "" {
		if from, to, err = parseDayRange(*fromS, *toS, loc); err != nil {
			return usageErr(stderr, cmd, virusUsage, "%v", err)
		}
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	rec, ok := st.(store.Records)
	if !ok {
		return fail(stderr, cmd, fmt.Errorf("the store %s cannot list the virus store", st.Describe()))
	}
	var items []store.VirusItem
	if *id != 0 {
		v, ok, err := rec.VirusItem(*id)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		if !ok {
			return fail(stderr, cmd, fmt.Errorf("no virus store item %d (purged after the retention period, or never there): pecctl virus list shows the items", *id))
		}
		items = []store.VirusItem{v}
	} else if items, err = rec.VirusBetween(from, to, *pecid); err != nil {
		return fail(stderr, cmd, err)
	}
	if sub == "list" {
		return virusList(items, *asJSON, loc, stdout, stderr)
	}
	if len(items) == 0 {
		return fail(stderr, cmd, errors.New("no virus store item matches: nothing written"))
	}
	var data []byte
	if *raw {
		data = items[0].Data
	} else {
		signer, err := cfg.Signer()
		if err != nil {
			return fail(stderr, cmd, fmt.Errorf("%v: the extract is signed with the provider key", err))
		}
		if data, err = buildVirusExtract(cfg, signer, items, time.Now()); err != nil {
			return fail(stderr, cmd, err)
		}
	}
	if err := os.WriteFile(*out, data, 0o600); err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stderr, "pecctl virus extract: %d items written to %s (infected content: handle it as such)\n", len(items), *out)
	return 0
}

func virusList(items []store.VirusItem, asJSON bool, loc *time.Location, stdout, stderr io.Writer) int {
	if asJSON {
		l := make([]virusJSON, 0, len(items))
		for _, v := range items {
			l = append(l, describeVirus(v, loc))
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(l); err != nil {
			return fail(stderr, "virus list", err)
		}
		return 0
	}
	for _, v := range items {
		d := describeVirus(v, loc)
		fmt.Fprintf(stdout, "id=%d time=%s pecid=%s sender=%s rcpt=%s virus=%s size=%d sha256=%s\n", d.ID, word(localTime(v.Time, loc)),
			word(d.PECID), word(d.Sender), list(d.Recipients), word(d.Signature), d.Size, d.SHA256)
	}
	fmt.Fprintf(stdout, "%d items\n", len(items))
	return 0
}

func buildVirusExtract(cfg *config.Config, signer *smime.Signer, items []store.VirusItem, now time.Time) ([]byte, error) {
	loc := cfg.Location()
	desc := make([]virusJSON, 0, len(items))
	for _, v := range items {
		d := describeVirus(v, loc)
		d.File = "virus-" + strconv.FormatInt(v.ID, 10) + ".eml.bin"
		desc = append(desc, d)
	}
	js, err := json.MarshalIndent(struct {
		Provider  string      `json:"provider"`
		Generated time.Time   `json:"generated"`
		Items     []virusJSON `json:"items"`
	}{cfg.Provider.Name, now.In(loc).Truncate(time.Second), desc}, "", "  ")
	if err != nil {
		return nil, err
	}
	js = append(js, '\n')
	var txt strings.Builder
	fmt.Fprintf(&txt, "Estratto dell'archivio dei messaggi con virus (RFC 6109 §2.2.4)\n\n")
	fmt.Fprintf(&txt, "Gestore: %s\nElementi: %d\nEstratto generato il: %s\n\n", cfg.Provider.Name, len(items), itTime(now, loc))
	fmt.Fprintf(&txt, "ATTENZIONE: gli allegati virus-*.eml.bin contengono i messaggi infetti così come\nsono stati ricevuti; l'allegato virus.json li descrive (impronta SHA-256).\n")
	for i, d := range desc {
		fmt.Fprintf(&txt, "\n%d) %s - %s\n   Identificativo: %s\n   Mittente: %s\n   Destinatari: %s\n   Dimensione: %d byte, SHA-256 %s\n",
			i+1, itTime(d.Time, loc), strings.ToValidUTF8(d.Signature, "\uFFFD"), strings.ToValidUTF8(d.PECID, "\uFFFD"),
			strings.ToValidUTF8(d.Sender, "\uFFFD"), strings.ToValidUTF8(strings.Join(d.Recipients, ", "), "\uFFFD"), d.Size, d.SHA256)
	}
	inner := "mixed-" + randHex(12)
	var c bytes.Buffer
	fmt.Fprintf(&c, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n", inner, inner)
	c.WriteString("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	smime.WriteBase64(&c, []byte(txt.String()))
	fmt.Fprintf(&c, "\r\n--%s\r\n", inner)
	c.WriteString("Content-Type: application/json; name=\"virus.json\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"virus.json\"\r\n\r\n")
	smime.WriteBase64(&c, js)
	for i, v := range items {
		fmt.Fprintf(&c, "\r\n--%s\r\n", inner)
		fmt.Fprintf(&c, "Content-Type: application/octet-stream; name=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n", desc[i].File)
		fmt.Fprintf(&c, "Content-Disposition: attachment; filename=\"%s\"\r\n\r\n", desc[i].File)
		smime.WriteBase64(&c, v.Data)
	}
	fmt.Fprintf(&c, "\r\n--%s--\r\n", inner)
	ct, body, err := signer.Sign(c.Bytes(), now, "signed-"+randHex(12))
	if err != nil {
		return nil, err
	}
	fromAddr := "posta-certificata@" + cfg.Provider.Domain
	if len(signer.Cert.EmailAddresses) > 0 {
		fromAddr = signer.Cert.EmailAddresses[0]
	}
	_, dom, _ := strings.Cut(fromAddr, "@")
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: %s\r\n", (&mail.Address{Name: "Archivio virus PEC di " + cfg.Provider.Name, Address: fromAddr}).String())
	fmt.Fprintf(&m, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", fmt.Sprintf("Estratto dell'archivio virus: %d elementi", len(items))))
	fmt.Fprintf(&m, "Date: %s\r\n", now.In(loc).Format(time.RFC1123Z))
	fmt.Fprintf(&m, "Message-ID: <estratto-virus.%s@%s>\r\n", randHex(16), dom)
	m.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&m, "Content-Type: %s\r\n\r\n", ct)
	m.Write(body)
	return m.Bytes(), nil
}
