package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

const logExportUsage = `usage: pecctl log export --mailbox ADDR --date YYYY-MM-DD [-o FILE] [-config FILE]

Writes a signed extract of the log for a mailbox holder: every event of that
day (provider's time zone) where ADDR is the sender or a recipient, as an
S/MIME multipart/signed message signed with the sealing key of [log] (the
PEC key, with a warning, while [log] has none). The signed
part holds an Italian summary (text/plain, UTF-8) and the rows as a JSON
attachment. Check it with:
  openssl smime -verify -in FILE -CAfile ROOT.pem -purpose any
(ROOT.pem: the CA of the sealing certificate)

  -o FILE   write there (mode 0600) instead of standard output
`

func logExport(args []string, stdout, stderr io.Writer) int {
	const cmd = "log export"
	fs, cfgPath := newFlags(cmd, logExportUsage, stderr)
	mailbox := fs.String("mailbox", "", "")
	date := fs.String("date", "", "")
	out := fs.String("o", "", "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logExportUsage, "unexpected argument %q", pos[0])
	}
	if *mailbox == "" || *date == "" {
		return usageErr(stderr, cmd, logExportUsage, "--mailbox and --date are required")
	}
	if !strings.Contains(*mailbox, "@") {
		return usageErr(stderr, cmd, logExportUsage, "--mailbox %q is not an e-mail address", *mailbox)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	from, to, err := parseDay(*date, loc)
	if err != nil {
		return usageErr(stderr, cmd, logExportUsage, "--date: %v", err)
	}
	signer, err := sealingSigner(cfg, cmd, stderr) // [log] sealing key (Aruba §8.1)
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the extract is signed with the sealing key", err))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	evs, err := mailboxEvents(st, strings.ToLower(*mailbox), from, to)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	msg, err := buildExport(cfg, signer, strings.ToLower(*mailbox), *date, evs, time.Now())
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if *out == "" {
		if _, err := stdout.Write(msg); err != nil {
			return fail(stderr, cmd, err)
		}
		return 0
	}
	if err := os.WriteFile(*out, msg, 0o600); err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stderr, "pecctl log export: %d events of %s on %s written to %s\n", len(evs), *mailbox, *date, *out)
	return 0
}

// mailboxEvents returns the events in [from, to) where mailbox is the
// sender or a recipient, in log order.
func mailboxEvents(st store.Log, mailbox string, from, to time.Time) ([]store.Event, error) {
	bySender, err := st.Events(store.Query{Sender: mailbox, From: from, To: to})
	if err != nil {
		return nil, err
	}
	byRcpt, err := st.Events(store.Query{Recipient: mailbox, From: from, To: to})
	if err != nil {
		return nil, err
	}
	seen := map[int64]bool{}
	var out []store.Event
	for _, e := range append(bySender, byRcpt...) {
		if !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// exportJSON is the JSON attachment of an extract.
type exportJSON struct {
	Mailbox   string           `json:"mailbox"`
	Day       string           `json:"day"`
	TimeZone  string           `json:"time_zone"`
	From      time.Time        `json:"from"`
	To        time.Time        `json:"to"`
	Provider  string           `json:"provider"`
	Generated time.Time        `json:"generated"`
	Rows      []logarchive.Row `json:"rows"`
}

var pointNames = map[string]string{
	"access":   "punto di accesso",
	"incoming": "punto di ricezione",
	"delivery": "punto di consegna",
	"timer":    "controllo dei tempi di consegna",
	"outbox":   "invio di un messaggio generato",
}

// itTime is the human-readable date of PEC messages: 02/03/2024 00:30:00 (+0100).
func itTime(t time.Time, loc *time.Location) string {
	t = t.In(loc)
	return t.Format("02/01/2006 15:04:05") + " (" + t.Format("-0700") + ")"
}

func buildExport(cfg *config.Config, signer *smime.Signer, mailbox, day string, evs []store.Event, now time.Time) ([]byte, error) {
	loc := cfg.Location()
	from, to, err := parseDay(day, loc)
	if err != nil {
		return nil, err
	}
	rows := make([]logarchive.Row, 0, len(evs))
	for _, e := range evs {
		rows = append(rows, logarchive.RowOf(e, loc))
	}
	js, err := json.MarshalIndent(exportJSON{Mailbox: mailbox, Day: day, TimeZone: loc.String(), From: from, To: to,
		Provider: cfg.Provider.Name, Generated: now.In(loc).Truncate(time.Second), Rows: rows}, "", "  ")
	if err != nil {
		return nil, err
	}
	js = append(js, '\n')

	d, _ := time.ParseInLocation("2006-01-02", day, loc)
	giorno := d.Format("02/01/2006")
	var txt strings.Builder
	fmt.Fprintf(&txt, "Estratto del registro dei messaggi di posta elettronica certificata\n\n")
	fmt.Fprintf(&txt, "Gestore: %s\n", cfg.Provider.Name)
	fmt.Fprintf(&txt, "Casella: %s\n", mailbox)
	fmt.Fprintf(&txt, "Giorno: %s (ora locale %s)\n", giorno, loc)
	fmt.Fprintf(&txt, "Operazioni registrate: %d\n", len(evs))
	fmt.Fprintf(&txt, "Estratto generato il: %s\n\n", itTime(now, loc))
	fmt.Fprintf(&txt, "Sono riportate tutte le operazioni del giorno in cui la casella è mittente o destinataria.\n")
	fmt.Fprintf(&txt, "Il messaggio è firmato dal gestore; l'allegato registro-%s.json contiene\n", day)
	fmt.Fprintf(&txt, "le stesse righe del registro in formato JSON.\n")
	for i, e := range evs {
		fmt.Fprintf(&txt, "\n%d) %s - %s", i+1, itTime(e.Time, loc), e.Type)
		if p, ok := pointNames[string(e.Point)]; ok {
			fmt.Fprintf(&txt, " (%s)", p)
		} else if e.Point != "" {
			fmt.Fprintf(&txt, " (%s)", e.Point)
		}
		txt.WriteString("\n")
		for _, f := range []struct{ k, v string }{
			{"Identificativo", e.PECID}, {"Message-ID", e.MsgID}, {"Mittente", e.Sender},
			{"Destinatari", strings.Join(e.Recipients, ", ")}, {"Oggetto", e.Subject},
			{"Messaggi correlati", strings.Join(e.Related, ", ")}, {"Gestore", e.Provider}, {"Errore", e.Error},
		} {
			if f.v != "" {
				fmt.Fprintf(&txt, "   %s: %s\n", f.k, strings.ToValidUTF8(f.v, "\uFFFD"))
			}
		}
	}
	if len(evs) == 0 {
		txt.WriteString("\nNessuna operazione registrata per la casella in questo giorno.\n")
	}

	var qp bytes.Buffer
	qw := quotedprintable.NewWriter(&qp)
	if _, err := qw.Write([]byte(txt.String())); err != nil {
		return nil, err
	}
	if err := qw.Close(); err != nil {
		return nil, err
	}
	inner := "mixed-" + randHex(12)
	outer := "signed-" + randHex(12)
	var c bytes.Buffer
	fmt.Fprintf(&c, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", inner)
	fmt.Fprintf(&c, "--%s\r\n", inner)
	c.WriteString("Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	c.Write(crlf(qp.Bytes()))
	fmt.Fprintf(&c, "\r\n--%s\r\n", inner)
	fmt.Fprintf(&c, "Content-Type: application/json; name=\"registro-%s.json\"\r\n", day)
	c.WriteString("Content-Transfer-Encoding: base64\r\n")
	fmt.Fprintf(&c, "Content-Disposition: attachment; filename=\"registro-%s.json\"\r\n\r\n", day)
	smime.WriteBase64(&c, js)
	fmt.Fprintf(&c, "\r\n--%s--\r\n", inner)

	ct, body, err := signer.Sign(c.Bytes(), now, outer)
	if err != nil {
		return nil, err
	}
	fromAddr := "posta-certificata@" + cfg.Provider.Domain
	if len(signer.Cert.EmailAddresses) > 0 {
		fromAddr = signer.Cert.EmailAddresses[0]
	}
	_, dom, _ := strings.Cut(fromAddr, "@")
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: %s\r\n", (&mail.Address{Name: "Registro PEC di " + cfg.Provider.Name, Address: fromAddr}).String())
	fmt.Fprintf(&m, "To: %s\r\n", mailbox)
	fmt.Fprintf(&m, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", "Estratto del registro PEC del "+giorno+" per "+mailbox))
	fmt.Fprintf(&m, "Date: %s\r\n", now.In(loc).Format(time.RFC1123Z))
	fmt.Fprintf(&m, "Message-ID: <estratto-registro.%s@%s>\r\n", randHex(16), dom)
	m.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&m, "Content-Type: %s\r\n\r\n", ct)
	m.Write(body)
	return m.Bytes(), nil
}

// crlf turns lone LF into CRLF.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
