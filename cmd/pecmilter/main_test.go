package main

import (
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// rows is a log that can only return rows.
type rows struct {
	n     int
	asked store.Query
}

func (r *rows) Events(q store.Query) ([]store.Event, error) {
	r.asked = q
	return make([]store.Event, min(r.n, q.Limit)), nil
}

// counting is a log that can also count.
type counting struct {
	rows
	sender, typ string
}

func (c *counting) CountSenderEvents(sender, typ string, since time.Time) (int, error) {
	c.sender, c.typ = sender, typ
	return c.n, nil
}

// The rate limit counts the mailbox's acceptances with one COUNT where the
// store has it, else reads the rows up to one past the limit.
func TestSentCounter(t *testing.T) {
	since := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	c := &counting{rows: rows{n: 5000}}
	if n, err := sentCounter(c, 1000)("mario@pec.example.test", since); err != nil || n != 5000 {
		t.Errorf("count: %d, %v", n, err)
	}
	if c.sender != "mario@pec.example.test" || c.typ != "accettazione" || c.asked.Sender != "" {
		t.Errorf("asked count(%q, %q), rows %+v", c.sender, c.typ, c.asked)
	}
	r := &rows{n: 5000}
	if n, err := sentCounter(r, 1000)("mario@pec.example.test", since); err != nil || n != 1001 {
		t.Errorf("rows: %d, %v", n, err)
	}
	if r.asked != (store.Query{Sender: "mario@pec.example.test", Type: "accettazione", From: since, Limit: 1001}) {
		t.Errorf("rows asked %+v", r.asked)
	}
}
