package sqlite

import (
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// The count agrees with the rows Events returns for the same question:
// one sender whatever its case, one type, from a time on.
func TestCountSenderEvents(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 5; i++ {
		if err := s.Commit(acceptance(i, t0.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	other := acceptance(9, t0.Add(10*time.Minute))
	for i := range other.Events {
		other.Events[i].Sender = "luigi@pec.example.test"
	}
	if err := s.Commit(other); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sender string
		typ    store.EventType
		since  time.Time
	}{
		{"mario.rossi@pec.example.test", "accettazione", t0},
		{"MARIO.ROSSI@pec.example.test", "accettazione", t0.Add(2 * time.Minute)},
		{"mario.rossi@pec.example.test", "posta-certificata", t0.Add(4*time.Minute + time.Second)},
		{"luigi@pec.example.test", "accettazione", t0},
		{"nobody@pec.example.test", "accettazione", t0},
	} {
		n, err := s.CountSenderEvents(c.sender, c.typ, c.since)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := s.Events(store.Query{Sender: c.sender, Type: c.typ, From: c.since})
		if err != nil {
			t.Fatal(err)
		}
		if n != len(rows) {
			t.Errorf("%s %s since %v: count %d, Events %d rows", c.sender, c.typ, c.since, n, len(rows))
		}
	}
	if n, _ := s.CountSenderEvents("mario.rossi@pec.example.test", "accettazione", t0); n != 5 {
		t.Errorf("count %d, want 5", n)
	}
}
