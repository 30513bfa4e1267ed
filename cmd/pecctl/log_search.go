package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/store"
)

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
	typ := fs.String("type", "", "")
	pt := fs.String("point", "", "")
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
	q.Type, q.Point = store.EventType(*typ), store.EventPoint(*pt)
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
		localTime(e.Time, loc), word(string(e.Point)), word(string(e.Type)), word(e.PECID), word(e.MsgID), word(e.Sender),
		list(e.Recipients), word(e.Subject), list(e.Related), word(e.Error))
}
