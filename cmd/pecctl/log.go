package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
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

const logUsage = `usage: pecctl log SUBCOMMAND [OPTIONS]

The PEC event log (RFC 6109 §2.3) in the store named by the configuration.

subcommands:
  verify   check the hash chain of the whole log
  search   list events by PEC id, Message-ID, sender, recipient, day or time range
  export   a signed extract of one mailbox's events of one day, for its holder
  purge    delete events and virus items older than the retention period
  archive  write (or --verify) the signed daily archive of one day

Run "pecctl log SUBCOMMAND -h" for its options. Every subcommand takes
-config FILE (default ` + config.DefaultPath + `).
`

func cmdLog(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, logUsage)
		return 2
	}
	switch args[0] {
	case "verify":
		return logVerify(args[1:], stdout, stderr)
	case "search":
		return logSearch(args[1:], stdout, stderr)
	case "export":
		return logExport(args[1:], stdout, stderr)
	case "purge":
		return logPurge(args[1:], stdout, stderr)
	case "archive":
		return logArchive(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, logUsage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl log: unknown subcommand %q\n%s", args[0], logUsage)
	return 2
}

// ---- verify ----

const logVerifyUsage = `usage: pecctl log verify [-config FILE]

Walks the event log from the purge anchor to the head and recomputes every
row's hash and link. Prints "log intact: N rows, head ID HASH" and exits 0,
or names the first bad row and what is wrong and exits 1.
`

func logVerify(args []string, stdout, stderr io.Writer) int {
	fs, cfgPath := newFlags("log verify", logVerifyUsage, stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, "log verify", logVerifyUsage, "unexpected argument %q", pos[0])
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, "log verify", err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, "log verify", err)
	}
	defer st.Close()
	bad, verr := st.VerifyLog()
	if verr != nil && bad == 0 {
		return fail(stderr, "log verify", verr)
	}
	if verr != nil {
		fmt.Fprintf(stdout, "log DAMAGED at row %d: %v\n", bad, verr)
		fmt.Fprintln(stdout, "The log must not be repaired in place: keep this copy for the investigation, compare it with the daily signed archives (pecctl log archive --verify) and backups, and report the incident.")
		return 1
	}
	anchor, _, err := st.LogAnchor()
	if err != nil {
		return fail(stderr, "log verify", err)
	}
	head, hash, err := st.LogHead()
	if err != nil {
		return fail(stderr, "log verify", err)
	}
	fmt.Fprintf(stdout, "log intact: %d rows, head %d %s\n", head-anchor, head, hex.EncodeToString(hash))
	if anchor > 0 {
		fmt.Fprintf(stdout, "rows 1..%d were purged (retention)\n", anchor)
	}
	return 0
}

// ---- search ----

const logSearchUsage = `usage: pecctl log search [-config FILE] [--pecid ID] [--msgid ID] [--sender ADDR] [--rcpt ADDR]
                        [--day YYYY-MM-DD | --from RFC3339 --to RFC3339] [--type TYPE] [--point POINT]
                        [--limit N] [--json]

Lists the events matching every given option, oldest first, one per line:
time in the provider's zone, point, type, pecid, msgid, sender, recipients,
subject, related messages, error; with --json one JSON object per line.

  --pecid ID       the transaction's identificativo (X-Riferimento-Message-ID / daticert)
  --msgid ID       the original Message-ID, with angle brackets: '<abc@example.test>'
  --sender ADDR    the sender (case-insensitive)
  --rcpt ADDR      one of the recipients (case-insensitive)
  --day DAY        the whole day in the provider's time zone ([provider] time_zone)
  --from, --to     a time range, RFC 3339 (2024-03-02T10:00:00+01:00); from
                   inclusive, to exclusive; either may be given alone
  --type, --point  event type (accettazione, avvenuta-consegna, ...) and point
                   (access, incoming, delivery, timer, outbox)
  --limit N        at most N events
`

func logSearch(args []string, stdout, stderr io.Writer) int {
	const cmd = "log search"
	fs, cfgPath := newFlags(cmd, logSearchUsage, stderr)
	var q store.Query
	fs.StringVar(&q.PECID, "pecid", "", "")
	fs.StringVar(&q.MsgID, "msgid", "", "")
	fs.StringVar(&q.Sender, "sender", "", "")
	fs.StringVar(&q.Recipient, "rcpt", "", "")
	fs.StringVar(&q.Type, "type", "", "")
	fs.StringVar(&q.Point, "point", "", "")
	fs.IntVar(&q.Limit, "limit", 0, "")
	day := fs.String("day", "", "")
	from := fs.String("from", "", "")
	to := fs.String("to", "", "")
	asJSON := fs.Bool("json", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logSearchUsage, "unexpected argument %q", pos[0])
	}
	if *day != "" && (*from != "" || *to != "") {
		return usageErr(stderr, cmd, logSearchUsage, "--day and --from/--to exclude each other")
	}
	if q.Limit < 0 {
		return usageErr(stderr, cmd, logSearchUsage, "--limit must be positive")
	}
	for _, v := range []struct {
		name string
		s    string
		t    *time.Time
	}{{"--from", *from, &q.From}, {"--to", *to, &q.To}} {
		if v.s == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v.s)
		if err != nil {
			return usageErr(stderr, cmd, logSearchUsage, "%s %q: want RFC 3339, e.g. 2024-03-02T10:00:00+01:00", v.name, v.s)
		}
		*v.t = t
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return usageErr(stderr, cmd, logSearchUsage, "--to must be after --from")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	if *day != "" {
		if q.From, q.To, err = parseDay(*day, loc); err != nil {
			return usageErr(stderr, cmd, logSearchUsage, "--day: %v", err)
		}
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	evs, err := st.Events(q)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for _, e := range evs {
		if *asJSON {
			if err := enc.Encode(logarchive.RowOf(e, loc)); err != nil {
				return fail(stderr, cmd, err)
			}
			continue
		}
		printEvent(stdout, e, loc)
	}
	return 0
}

func printEvent(w io.Writer, e store.Event, loc *time.Location) {
	fmt.Fprintf(w, "%s %s %s pecid=%s msgid=%s sender=%s rcpt=%s subject=%s related=%s error=%s\n",
		localTime(e.Time, loc), word(e.Point), word(e.Type), word(e.PECID), word(e.MsgID), word(e.Sender),
		list(e.Recipients), word(e.Subject), list(e.Related), word(e.Error))
}

// ---- export ----

const logExportUsage = `usage: pecctl log export --mailbox ADDR --date YYYY-MM-DD [-o FILE] [-config FILE]

Writes a signed extract of the log for a mailbox holder: every event of that
day (provider's time zone) where ADDR is the sender or a recipient, as an
S/MIME multipart/signed message signed with the provider key. The signed
part holds an Italian summary (text/plain, UTF-8) and the rows as a JSON
attachment. Check it with:
  openssl smime -verify -in FILE -CAfile ROOT.pem -purpose any

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
	signer, err := cfg.Signer()
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the extract is signed with the provider key", err))
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
func mailboxEvents(st *store.Store, mailbox string, from, to time.Time) ([]store.Event, error) {
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
		if p, ok := pointNames[e.Point]; ok {
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

// ---- purge ----

const logPurgeUsage = `usage: pecctl log purge [--before RFC3339] [--force] [-config FILE]

Deletes the event rows and virus store items older than --before, and sent
outbox items; by default --before is now minus [store] retention (30
months). Deleted rows leave the log as a prefix, so the chain still
verifies. Archive every day first (pecctl log archive): a purged row
survives only in its archive.

  --force   allow a cutoff younger than the retention period (the law wants
            30 months; use only to correct a misconfiguration)
`

func logPurge(args []string, stdout, stderr io.Writer) int {
	const cmd = "log purge"
	fs, cfgPath := newFlags(cmd, logPurgeUsage, stderr)
	beforeS := fs.String("before", "", "")
	force := fs.Bool("force", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logPurgeUsage, "unexpected argument %q", pos[0])
	}
	var before time.Time
	if *beforeS != "" {
		if before, err = time.Parse(time.RFC3339Nano, *beforeS); err != nil {
			return usageErr(stderr, cmd, logPurgeUsage, "--before %q: want RFC 3339, e.g. 2024-01-01T00:00:00+01:00", *beforeS)
		}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	limit := time.Now().Add(-cfg.Store.Retention.Duration)
	if before.IsZero() {
		before = limit
	} else if before.After(limit) && !*force {
		return fail(stderr, cmd, fmt.Errorf("--before %s is inside the retention period ([store] retention %s: nothing younger than %s may be purged); pass --force if you really mean it",
			before.Format(time.RFC3339), cfg.Store.Retention.Duration, limit.Format(time.RFC3339)))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	ev, vi, err := st.Purge(before)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	anchor, _, err := st.LogAnchor()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "purged %d event rows and %d virus items older than %s (log now starts after row %d)\n",
		ev, vi, before.In(cfg.Location()).Format(time.RFC3339), anchor)
	return 0
}

// ---- archive ----

const logArchiveUsage = `usage: pecctl log archive --day YYYY-MM-DD|yesterday [--dir DIR] [--tsa URL] [--force] [-config FILE]
       pecctl log archive --verify --day YYYY-MM-DD [--dir DIR] [-config FILE]

Writes the day's rows (provider's time zone; only rows of that day) to
DIR/pec-log-DAY.jsonl.gz with a detached CMS signature made with the
provider key (.p7s, DER), and with --tsa an RFC 3161 time-stamp of the
signature (.tsq request, .tsr reply). Run it daily after midnight, e.g.
from cron with --day yesterday.

With --verify it checks an archive: signature and chain to [signing]
trusted_roots, every row's hash and link, the day's bounds, the time-stamp
if any, and, while the store still holds the rows, that they match.

  --dir DIR   archive directory (default: "archive" next to the store)
  --tsa URL   time-stamp authority (HTTP POST application/timestamp-query;
              default: [store] tsa_url of the configuration);
              on an existing archive without a time-stamp, only time-stamps it
  --force     rewrite an existing archive (a new signature; the old
              time-stamp is removed)
  --verify    check instead of writing
`

func logArchive(args []string, stdout, stderr io.Writer) int {
	const cmd = "log archive"
	fs, cfgPath := newFlags(cmd, logArchiveUsage, stderr)
	day := fs.String("day", "", "")
	dir := fs.String("dir", "", "")
	tsa := fs.String("tsa", "", "")
	force := fs.Bool("force", false, "")
	verify := fs.Bool("verify", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logArchiveUsage, "unexpected argument %q", pos[0])
	}
	if *day == "" {
		return usageErr(stderr, cmd, logArchiveUsage, "--day is required")
	}
	if *verify && (*tsa != "" || *force) {
		return usageErr(stderr, cmd, logArchiveUsage, "--verify does not take --tsa or --force")
	}
	if *tsa != "" && !strings.HasPrefix(*tsa, "http://") && !strings.HasPrefix(*tsa, "https://") {
		return usageErr(stderr, cmd, logArchiveUsage, "--tsa %q: want an http:// or https:// URL", *tsa)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if *tsa == "" && !*verify {
		*tsa = cfg.Store.TSAURL // [store] tsa_url
	}
	loc := cfg.Location()
	if *day == "yesterday" {
		y := time.Now().In(loc)
		*day = time.Date(y.Year(), y.Month(), y.Day()-1, 12, 0, 0, 0, loc).Format("2006-01-02")
	}
	if _, _, err := parseDay(*day, loc); err != nil {
		return usageErr(stderr, cmd, logArchiveUsage, "--day: %v", err)
	}
	if *dir == "" {
		*dir = filepath.Join(filepath.Dir(cfg.Store.Path), "archive")
	}
	if *verify {
		return archiveVerify(cfg, *dir, *day, stdout, stderr)
	}
	signer, err := cfg.Signer()
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the archive is signed with the provider key", err))
	}
	roots, _ := cfg.Roots() // only to check a TSA's chain; nil is fine
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	files := logarchive.PathsFor(*dir, *day)
	a := &logarchive.Archiver{Store: st, Signer: signer, Location: loc, Provider: cfg.Provider.Name}
	res, err := a.Write(*dir, *day, *force)
	switch {
	case errors.Is(err, logarchive.ErrExists) && *tsa != "" && !exists(files.Reply):
		// a time-stamp that failed before: add it to the signed archive
		if _, err := logarchive.Verify(*dir, *day, roots); err != nil {
			return fail(stderr, cmd, fmt.Errorf("the existing archive does not verify, not time-stamping it: %v", err))
		}
		fmt.Fprintf(stdout, "archive of %s exists without a time-stamp: time-stamping it\n", *day)
	case errors.Is(err, logarchive.ErrExists):
		return fail(stderr, cmd, fmt.Errorf("%v: check it with --verify, or pass --force to rewrite it", err))
	case errors.Is(err, logarchive.ErrDayNotOver):
		return fail(stderr, cmd, fmt.Errorf("%v: archive it after midnight", err))
	case err != nil:
		return fail(stderr, cmd, err)
	default:
		t := res.Trailer
		fmt.Fprintf(stdout, "archived %s (%s, %s .. %s): %d rows", *day, res.Header.TimeZone,
			res.Header.From.Format(time.RFC3339), res.Header.To.Format(time.RFC3339), t.Rows)
		if t.Rows > 0 {
			fmt.Fprintf(stdout, " (ids %d..%d", t.FirstID, t.LastID)
			if len(t.Gaps) > 0 {
				fmt.Fprintf(stdout, ", %d gaps of rows of other days", len(t.Gaps))
			}
			fmt.Fprint(stdout, ")")
		}
		fmt.Fprintf(stdout, "\n  %s\n  %s\n", res.Data, res.Signature)
	}
	if *tsa == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, warn, err := logarchive.Timestamp(ctx, nil, *tsa, *dir, *day, roots.Pool())
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the archive is written and signed but not time-stamped; run the same command again (with --tsa) to time-stamp it", err))
	}
	fmt.Fprintf(stdout, "  %s\n  time-stamped at %s (serial %v)\n", files.Reply, ts.GenTime.Format(time.RFC3339), ts.Serial)
	for _, w := range warn {
		fmt.Fprintf(stderr, "pecctl log archive: warning: %s\n", w)
	}
	return 0
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func archiveVerify(cfg *config.Config, dir, day string, stdout, stderr io.Writer) int {
	const cmd = "log archive --verify"
	roots, err := cfg.Roots()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	// Compare with the store while it still holds the rows. A store that
	// cannot be opened (e.g. checking on another machine) is skipped.
	st, serr := openStore(cfg)
	if st != nil {
		defer st.Close()
	}
	var matched, purged int
	var mismatch error
	check := func(r logarchive.Row) error {
		if st == nil {
			return nil
		}
		_, h, ok, err := st.EventLink(r.ID)
		if err != nil {
			return err
		}
		if !ok {
			purged++
			return nil
		}
		if hex.EncodeToString(h) != r.Hash {
			if mismatch == nil {
				mismatch = fmt.Errorf("row %d in the archive differs from row %d in the store", r.ID, r.ID)
			}
			return nil
		}
		matched++
		return nil
	}
	rep, err := logarchive.VerifyEach(dir, day, roots, check)
	if err != nil {
		fmt.Fprintf(stdout, "archive %s INVALID: %v\n", day, err)
		return 1
	}
	t := rep.Trailer
	fmt.Fprintf(stdout, "archive %s valid: %d rows", day, t.Rows)
	if t.Rows > 0 {
		fmt.Fprintf(stdout, " (ids %d..%d)", t.FirstID, t.LastID)
	}
	fmt.Fprintf(stdout, ", %s .. %s (%s)\n", rep.Header.From.Format(time.RFC3339), rep.Header.To.Format(time.RFC3339), rep.Header.TimeZone)
	fmt.Fprintf(stdout, "  signed by %s at %s\n", rep.Signer.Subject.String(), rep.SigningTime.Format(time.RFC3339))
	if t.Rows > 0 {
		fmt.Fprintf(stdout, "  first prev_hash %s\n  last hash       %s\n", t.FirstPrevHash, t.LastHash)
	}
	if ts := rep.Timestamp; ts != nil {
		who := "unknown TSA"
		if ts.Signer != nil {
			who = ts.Signer.Subject.String()
		}
		fmt.Fprintf(stdout, "  time-stamped at %s by %s\n", ts.GenTime.Format(time.RFC3339), who)
	} else {
		fmt.Fprintln(stdout, "  no time-stamp (.tsr)")
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	if st == nil {
		fmt.Fprintf(stdout, "  store not compared: %v\n", serr)
		return 0
	}
	if mismatch != nil {
		fmt.Fprintf(stdout, "archive %s does NOT match the store: %v; run pecctl log verify\n", day, mismatch)
		return 1
	}
	n, err := st.CountEvents(rep.Header.From, rep.Header.To)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "  store: %d rows match, %d purged\n", matched, purged)
	if n > matched {
		fmt.Fprintf(stdout, "archive %s is INCOMPLETE: the store holds %d rows of that day, the archive %d (rows written after the archive was made); rewrite it with --force\n", day, n, matched)
		return 1
	}
	return 0
}
