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
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

const logExportUsage = `usage: pecctl log export --mailbox ADDR (--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD)
                        [--pecid ID] [--msgid ID] [--counterpart ADDR] [--subject TEXT]
                        [--dir ARCHIVES] [-o FILE] [-config FILE]

Writes a signed extract of the log for a mailbox holder (RFC 6109 §2.3): every
event of the days --from to --to (or the one day --date, provider's time
zone) where ADDR is the sender or a recipient, narrowed by the filters, as
one S/MIME multipart/signed message signed with the sealing key of
[log] (the PEC key, with a warning, while [log] has none). The rows
come from the live store and from the daily archives in ARCHIVES, so that
days already purged from the store come out too; an archive is used only
after its signature and chain verify. The signed part holds an Italian
summary (text/plain, UTF-8), the rows as a JSON attachment, and a copy of
each receipt or notice we generated for those rows while the store still
keeps it (the outbox keeps them until the retention purge). Check it with:
  openssl smime -verify -in FILE -CAfile ROOT.pem -purpose any
(ROOT.pem: the CA of the sealing certificate)

  --pecid ID          only the transaction with this PEC id
  --msgid ID          only the message with this Message-ID
  --counterpart ADDR  only rows where ADDR is the sender or a recipient too
  --subject TEXT      only rows whose subject contains TEXT (any case)
  --dir ARCHIVES      the daily archives (default: "archive" next to the store)
  -o FILE             write there (mode 0600) instead of standard output
`

// exportFilter selects a holder's rows.
type exportFilter struct {
	Mailbox     string `json:"mailbox"`
	PECID       string `json:"pecid,omitempty"`
	MsgID       string `json:"msgid,omitempty"`
	Counterpart string `json:"counterpart,omitempty"`
	Subject     string `json:"subject,omitempty"`
}

func (f exportFilter) match(e store.Event) bool {
	party := func(a string) bool {
		if strings.EqualFold(e.Sender, a) {
			return true
		}
		for _, r := range e.Recipients {
			if strings.EqualFold(r, a) {
				return true
			}
		}
		return false
	}
	return party(f.Mailbox) &&
		(f.PECID == "" || e.PECID == f.PECID) &&
		(f.MsgID == "" || e.MsgID == f.MsgID) &&
		(f.Counterpart == "" || party(f.Counterpart)) &&
		(f.Subject == "" || strings.Contains(strings.ToLower(e.Subject), strings.ToLower(f.Subject)))
}

func logExport(args []string, stdout, stderr io.Writer) int {
	const cmd = "log export"
	fs, cfgPath := newFlags(cmd, logExportUsage, stderr)
	mailbox := fs.String("mailbox", "", "")
	date := fs.String("date", "", "")
	fromS := fs.String("from", "", "")
	toS := fs.String("to", "", "")
	var flt exportFilter
	fs.StringVar(&flt.PECID, "pecid", "", "")
	fs.StringVar(&flt.MsgID, "msgid", "", "")
	fs.StringVar(&flt.Counterpart, "counterpart", "", "")
	fs.StringVar(&flt.Subject, "subject", "", "")
	dir := fs.String("dir", "", "")
	out := fs.String("o", "", "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logExportUsage, "unexpected argument %q", pos[0])
	}
	if *date != "" && (*fromS != "" || *toS != "") {
		return usageErr(stderr, cmd, logExportUsage, "--date excludes --from and --to")
	}
	if *date != "" {
		*fromS, *toS = *date, *date
	}
	if *mailbox == "" || *fromS == "" || *toS == "" {
		return usageErr(stderr, cmd, logExportUsage, "--mailbox and --date (or --from and --to) are required")
	}
	if !strings.Contains(*mailbox, "@") {
		return usageErr(stderr, cmd, logExportUsage, "--mailbox %q is not an e-mail address", *mailbox)
	}
	if flt.Counterpart != "" && !strings.Contains(flt.Counterpart, "@") {
		return usageErr(stderr, cmd, logExportUsage, "--counterpart %q is not an e-mail address", flt.Counterpart)
	}
	if flt.MsgID != "" && !strings.HasPrefix(flt.MsgID, "<") {
		flt.MsgID = "<" + flt.MsgID + ">"
	}
	flt.Mailbox = strings.ToLower(*mailbox)
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	from, to, err := parseDayRange(*fromS, *toS, loc)
	if err != nil {
		return usageErr(stderr, cmd, logExportUsage, "%v", err)
	}
	if *dir == "" {
		*dir = filepath.Join(cfg.Store.Dir, "archive")
	}
	signer, err := sealingSigner(cfg, cmd, stderr) // [log] sealing key (Aruba §8.1)
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the extract is signed with the sealing key", err))
	}
	roots, err := cfg.SealingRoots() // [signing] and [log] trusted_roots: archives are sealed with the [log] key
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: archived days are read only after their signature verifies against [signing] and [log] trusted_roots", err))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	evs, archived, missing, err := exportEvents(st, roots, *dir, flt, *fromS, *toS, from, to, loc)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	for _, d := range missing {
		fmt.Fprintf(stderr, "pecctl log export: warning: day %s is neither in the store (rows up to then were purged) nor archived in %s: the extract lacks it\n", d, *dir)
	}
	var copies []store.Generated
	if rec, ok := st.(store.Records); ok {
		var ids []string
		for _, e := range evs {
			// log rows name generated messages by id, the outbox by
			// Message-ID field (in angle brackets): ask for both
			for _, r := range e.Related {
				ids = append(ids, r)
				if !strings.HasPrefix(r, "<") {
					ids = append(ids, "<"+r+">")
				}
			}
		}
		if len(ids) > 0 {
			if copies, err = rec.GeneratedByMessageID(ids); err != nil {
				return fail(stderr, cmd, err)
			}
		}
	}
	req := exportRequest{Filter: flt, FromDay: *fromS, ToDay: *toS, ArchivedDays: archived, MissingDays: missing}
	msg, err := buildExport(cfg, signer, req, evs, copies, time.Now())
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
	fmt.Fprintf(stderr, "pecctl log export: %d events of %s from %s to %s (%d archived days read), %d copies of generated messages, written to %s\n",
		len(evs), *mailbox, *fromS, *toS, len(archived), len(copies), *out)
	return 0
}

// exportEvents returns the rows in [from, to) matching flt, from the store
// and from the verified archives of the days fromDay..toDay in dir, by id
// without duplicates; the days read from an archive; and the days that
// may have rows neither source holds (purged and not archived).
func exportEvents(st store.Store, roots *smime.Roots, dir string, flt exportFilter, fromDay, toDay string, from, to time.Time, loc *time.Location) ([]store.Event, []string, []string, error) {
	byID := map[int64]store.Event{}
	bySender, err := st.Events(store.Query{Sender: flt.Mailbox, From: from, To: to})
	if err != nil {
		return nil, nil, nil, err
	}
	byRcpt, err := st.Events(store.Query{Recipient: flt.Mailbox, From: from, To: to})
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range append(bySender, byRcpt...) {
		if flt.match(e) {
			byID[e.ID] = e
		}
	}
	// the first row the store still holds: days before it were purged
	var firstLive time.Time
	if anchor, _, err := st.LogAnchor(); err != nil {
		return nil, nil, nil, err
	} else if anchor > 0 {
		first, err := st.Events(store.Query{Limit: 1})
		if err != nil {
			return nil, nil, nil, err
		}
		firstLive = time.Now()
		if len(first) > 0 {
			firstLive = first[0].Time
		}
	}
	var archived, missing []string
	d, _, _ := parseDay(fromDay, loc)
	last, _, _ := parseDay(toDay, loc)
	for ; !d.After(last); d = time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc) {
		day := d.Format("2006-01-02")
		if !exists(logarchive.PathsFor(dir, day).Data) {
			if !firstLive.IsZero() && d.Before(firstLive) {
				missing = append(missing, day)
			}
			continue
		}
		_, err := logarchive.VerifyEach(dir, day, roots, func(r logarchive.Row) error {
			e, err := r.Event()
			if err != nil {
				return err
			}
			if flt.match(e) {
				if _, ok := byID[e.ID]; !ok {
					byID[e.ID] = e
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("the archive of %s does not verify, so it cannot go into a signed extract: %v; check it with pecctl log archive --verify --day %s", day, err, day)
		}
		archived = append(archived, day)
	}
	out := make([]store.Event, 0, len(byID))
	for _, e := range byID {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, archived, missing, nil
}

// exportRequest is what the holder asked for.
type exportRequest struct {
	Filter         exportFilter
	FromDay, ToDay string
	ArchivedDays   []string
	MissingDays    []string
}

// exportCopy describes one attached copy of a generated message.
type exportCopy struct {
	File      string    `json:"file"`
	MessageID string    `json:"message_id"`
	Kind      string    `json:"kind"`
	Created   time.Time `json:"created"`
	Sent      time.Time `json:"sent,omitzero"`
}

// exportJSON is the JSON attachment of an extract.
type exportJSON struct {
	Mailbox      string           `json:"mailbox"`
	Day          string           `json:"day,omitempty"` // a one-day extract
	FromDay      string           `json:"from_day"`
	ToDay        string           `json:"to_day"`
	Filters      exportFilter     `json:"filters"`
	TimeZone     string           `json:"time_zone"`
	From         time.Time        `json:"from"`
	To           time.Time        `json:"to"`
	Provider     string           `json:"provider"`
	Generated    time.Time        `json:"generated"`
	ArchivedDays []string         `json:"archived_days"`
	MissingDays  []string         `json:"missing_days"`
	Rows         []logarchive.Row `json:"rows"`
	Copies       []exportCopy     `json:"copies"`
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

func itDay(day string, loc *time.Location) string {
	d, _ := time.ParseInLocation("2006-01-02", day, loc)
	return d.Format("02/01/2006")
}

func buildExport(cfg *config.Config, signer *smime.Signer, req exportRequest, evs []store.Event, copies []store.Generated, now time.Time) ([]byte, error) {
	loc := cfg.Location()
	mailbox := req.Filter.Mailbox
	from, to, err := parseDayRange(req.FromDay, req.ToDay, loc)
	if err != nil {
		return nil, err
	}
	rows := make([]logarchive.Row, 0, len(evs))
	for _, e := range evs {
		rows = append(rows, logarchive.RowOf(e, loc))
	}
	oneDay := req.FromDay == req.ToDay
	name := req.FromDay
	if !oneDay {
		name += "_" + req.ToDay
	}
	cps := make([]exportCopy, 0, len(copies))
	for i, g := range copies {
		cps = append(cps, exportCopy{File: fmt.Sprintf("copia-%03d-%s.eml", i+1, safeName(g.Kind)), MessageID: g.MessageID, Kind: g.Kind,
			Created: g.Created.In(loc), Sent: g.Sent.In(loc)})
		if g.Sent.IsZero() {
			cps[i].Sent = time.Time{}
		}
	}
	hdr := exportJSON{Mailbox: mailbox, FromDay: req.FromDay, ToDay: req.ToDay, Filters: req.Filter, TimeZone: loc.String(), From: from, To: to,
		Provider: cfg.Provider.Name, Generated: now.In(loc).Truncate(time.Second),
		ArchivedDays: append([]string{}, req.ArchivedDays...), MissingDays: append([]string{}, req.MissingDays...), Rows: rows, Copies: cps}
	if oneDay {
		hdr.Day = req.FromDay
	}
	js, err := json.MarshalIndent(hdr, "", "  ")
	if err != nil {
		return nil, err
	}
	js = append(js, '\n')

	periodo := itDay(req.FromDay, loc)
	if !oneDay {
		periodo += " - " + itDay(req.ToDay, loc)
	}
	var txt strings.Builder
	fmt.Fprintf(&txt, "Estratto del registro dei messaggi di posta elettronica certificata\n\n")
	fmt.Fprintf(&txt, "Gestore: %s\n", cfg.Provider.Name)
	fmt.Fprintf(&txt, "Casella: %s\n", mailbox)
	if oneDay {
		fmt.Fprintf(&txt, "Giorno: %s (ora locale %s)\n", periodo, loc)
	} else {
		fmt.Fprintf(&txt, "Periodo: %s (ora locale %s)\n", periodo, loc)
	}
	for _, f := range []struct{ k, v string }{{"Identificativo", req.Filter.PECID}, {"Message-ID", req.Filter.MsgID},
		{"Controparte", req.Filter.Counterpart}, {"Oggetto contenente", req.Filter.Subject}} {
		if f.v != "" {
			fmt.Fprintf(&txt, "Filtro - %s: %s\n", f.k, strings.ToValidUTF8(f.v, "\uFFFD"))
		}
	}
	fmt.Fprintf(&txt, "Operazioni registrate: %d\n", len(evs))
	fmt.Fprintf(&txt, "Copie di ricevute e avvisi allegate: %d\n", len(copies))
	fmt.Fprintf(&txt, "Estratto generato il: %s\n\n", itTime(now, loc))
	if oneDay {
		fmt.Fprintf(&txt, "Sono riportate tutte le operazioni del giorno in cui la casella è mittente o destinataria")
	} else {
		fmt.Fprintf(&txt, "Sono riportate tutte le operazioni del periodo in cui la casella è mittente o destinataria")
	}
	if req.Filter.PECID != "" || req.Filter.MsgID != "" || req.Filter.Counterpart != "" || req.Filter.Subject != "" {
		txt.WriteString(", secondo i filtri indicati")
	}
	txt.WriteString(".\n")
	if len(req.ArchivedDays) > 0 {
		fmt.Fprintf(&txt, "Per %d giorni le righe sono state lette anche dagli archivi giornalieri firmati del registro.\n", len(req.ArchivedDays))
	}
	if len(req.MissingDays) > 0 {
		fmt.Fprintf(&txt, "ATTENZIONE: per i giorni %s il registro non è più disponibile (conservazione scaduta e nessun archivio).\n", strings.Join(req.MissingDays, ", "))
	}
	fmt.Fprintf(&txt, "Il messaggio è firmato dal gestore; l'allegato registro-%s.json contiene\n", name)
	fmt.Fprintf(&txt, "le stesse righe del registro in formato JSON; gli allegati copia-*.eml sono le\n")
	fmt.Fprintf(&txt, "copie delle ricevute e degli avvisi emessi dal gestore ancora conservate.\n")
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
		if oneDay {
			txt.WriteString("\nNessuna operazione registrata per la casella in questo giorno.\n")
		} else {
			txt.WriteString("\nNessuna operazione registrata per la casella in questo periodo.\n")
		}
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
	fmt.Fprintf(&c, "Content-Type: application/json; name=\"registro-%s.json\"\r\n", name)
	c.WriteString("Content-Transfer-Encoding: base64\r\n")
	fmt.Fprintf(&c, "Content-Disposition: attachment; filename=\"registro-%s.json\"\r\n\r\n", name)
	smime.WriteBase64(&c, js)
	for i, g := range copies {
		// base64 keeps the copy byte for byte (its own signature covers it)
		fmt.Fprintf(&c, "\r\n--%s\r\n", inner)
		fmt.Fprintf(&c, "Content-Type: application/octet-stream; name=\"%s\"\r\n", cps[i].File)
		c.WriteString("Content-Transfer-Encoding: base64\r\n")
		fmt.Fprintf(&c, "Content-Disposition: attachment; filename=\"%s\"\r\n", cps[i].File)
		fmt.Fprintf(&c, "Content-Description: %s\r\n\r\n", mime.QEncoding.Encode("utf-8", "copia di "+g.MessageID))
		smime.WriteBase64(&c, g.Data)
	}
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
	subj := "Estratto del registro PEC del " + periodo + " per " + mailbox
	if !oneDay {
		subj = "Estratto del registro PEC dal " + itDay(req.FromDay, loc) + " al " + itDay(req.ToDay, loc) + " per " + mailbox
	}
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: %s\r\n", (&mail.Address{Name: "Registro PEC di " + cfg.Provider.Name, Address: fromAddr}).String())
	fmt.Fprintf(&m, "To: %s\r\n", mailbox)
	fmt.Fprintf(&m, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", subj))
	fmt.Fprintf(&m, "Date: %s\r\n", now.In(loc).Format(time.RFC1123Z))
	fmt.Fprintf(&m, "Message-ID: <estratto-registro.%s@%s>\r\n", randHex(16), dom)
	m.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&m, "Content-Type: %s\r\n\r\n", ct)
	m.Write(body)
	return m.Bytes(), nil
}

// safeName keeps letters, digits and '-' of s for a file name.
func safeName(s string) string {
	b := []byte(s)
	out := b[:0]
	for _, c := range b {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "messaggio"
	}
	return string(out)
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
