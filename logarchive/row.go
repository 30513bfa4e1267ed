package logarchive

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/pecgo/pec/store"
)

// Row is one event log row in JSON: the archive's lines, and what pecctl
// prints for log search --json and puts in a signed extract.
//
// JSON strings are UTF-8, and encoding/json would replace invalid bytes;
// the archive must reproduce every row byte for byte (its hash covers the
// bytes), so a field that is not valid UTF-8 is also given, base64, in
// Binary under its name ("subject", "recipients.2", ...).
type Row struct {
	ID         int64     `json:"id"`
	Time       time.Time `json:"time"`
	Point      string    `json:"point"`
	Type       string    `json:"type"`
	PECID      string    `json:"pecid"`
	MsgID      string    `json:"msgid"`
	Sender     string    `json:"sender"`
	Recipients []string  `json:"recipients"`
	Subject    string    `json:"subject"`
	Related    []string  `json:"related"`
	Provider   string    `json:"provider"`
	Error      string    `json:"error"`
	QueueID    string    `json:"queue_id"`

	Binary   map[string]string `json:"binary,omitempty"`
	PrevHash string            `json:"prev_hash,omitempty"` // hex; archives only
	Hash     string            `json:"hash,omitempty"`      // hex; archives only
}

// RowOf converts an event, with its time in loc (UTC when nil).
func RowOf(e store.Event, loc *time.Location) Row {
	if loc == nil {
		loc = time.UTC
	}
	r := Row{ID: e.ID, Time: e.Time.In(loc), Point: string(e.Point), Type: string(e.Type), PECID: e.PECID, MsgID: e.MsgID,
		Sender: e.Sender, Recipients: append([]string{}, e.Recipients...), Subject: e.Subject,
		Related: append([]string{}, e.Related...), Provider: e.Provider, Error: e.Error, QueueID: e.QueueID}
	bin := func(name, v string) {
		if !utf8.ValidString(v) {
			if r.Binary == nil {
				r.Binary = map[string]string{}
			}
			r.Binary[name] = base64.StdEncoding.EncodeToString([]byte(v))
		}
	}
	for _, f := range r.fields() {
		bin(f.name, *f.p)
	}
	return r
}

// linkedRowOf is RowOf for an archive: UTC, with the chain values.
func linkedRowOf(le store.LinkedEvent) Row {
	r := RowOf(le.Event, time.UTC)
	r.PrevHash = hex.EncodeToString(le.PrevHash)
	r.Hash = hex.EncodeToString(le.Hash)
	return r
}

type field struct {
	name string
	p    *string
}

func (r *Row) fields() []field {
	f := []field{{"point", &r.Point}, {"type", &r.Type}, {"pecid", &r.PECID}, {"msgid", &r.MsgID}, {"sender", &r.Sender},
		{"subject", &r.Subject}, {"provider", &r.Provider}, {"error", &r.Error}, {"queue_id", &r.QueueID}}
	for i := range r.Recipients {
		f = append(f, field{"recipients." + strconv.Itoa(i), &r.Recipients[i]})
	}
	for i := range r.Related {
		f = append(f, field{"related." + strconv.Itoa(i), &r.Related[i]})
	}
	return f
}

// Event converts back, restoring the fields given in Binary.
func (r Row) Event() (store.Event, error) {
	r.Recipients = append([]string(nil), r.Recipients...)
	r.Related = append([]string(nil), r.Related...)
	if len(r.Binary) > 0 {
		known := map[string]*string{}
		for _, f := range r.fields() {
			known[f.name] = f.p
		}
		for name, b64 := range r.Binary {
			p, ok := known[name]
			if !ok {
				return store.Event{}, fmt.Errorf("row %d: binary value for unknown field %q", r.ID, name)
			}
			b, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return store.Event{}, fmt.Errorf("row %d: binary value of %s: %v", r.ID, name, err)
			}
			*p = string(b)
		}
	}
	return store.Event{ID: r.ID, Time: r.Time.UTC(), Point: store.EventPoint(r.Point), Type: store.EventType(r.Type), PECID: r.PECID, MsgID: r.MsgID,
		Sender: r.Sender, Recipients: nilIfEmpty(r.Recipients), Subject: r.Subject, Related: nilIfEmpty(r.Related),
		Provider: r.Provider, Error: r.Error, QueueID: r.QueueID}, nil
}

func nilIfEmpty(l []string) []string {
	if len(l) == 0 {
		return nil
	}
	return l
}
