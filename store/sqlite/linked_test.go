package sqlite

import (
	"github.com/pecgo/pec/store"

	"bytes"
	"testing"
	"time"
)

// The read-only helpers for archives and pecctl: chain values as stored,
// ChainHash as VerifyLog computes it, anchor, counts.
func TestLinkedEvents(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 4; i++ {
		if err := s.Commit(acceptance(i, t0.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Commit(store.Txn{Virus: []store.Quarantined{{Time: t0.Add(time.Hour), PECID: "v", Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	var got []store.LinkedEvent
	err := s.EachLinkedEvent(t0.Add(time.Hour), t0.Add(3*time.Hour), func(le store.LinkedEvent) error {
		got = append(got, le)
		return nil
	})
	if err != nil || len(got) != 4 || got[0].ID != 3 || got[3].ID != 6 {
		t.Fatalf("EachLinkedEvent: %d rows, %v", len(got), err)
	}
	for i, le := range got {
		if !bytes.Equal(le.ChainHash(le.PrevHash), le.Hash) {
			t.Errorf("row %d: ChainHash differs from the stored hash", le.ID)
		}
		if i > 0 && !bytes.Equal(le.PrevHash, got[i-1].Hash) {
			t.Errorf("row %d does not link", le.ID)
		}
		prev, h, ok, err := s.EventLink(le.ID)
		if !ok || err != nil || !bytes.Equal(prev, le.PrevHash) || !bytes.Equal(h, le.Hash) {
			t.Errorf("EventLink(%d) = %v, %v", le.ID, ok, err)
		}
	}
	// a changed field changes the hash; the time zone does not
	e := got[0]
	e.Time = e.Time.In(time.FixedZone("CET", 3600))
	if !bytes.Equal(e.ChainHash(e.PrevHash), e.Hash) {
		t.Error("ChainHash depends on the time zone")
	}
	e.Subject += "!"
	if bytes.Equal(e.ChainHash(e.PrevHash), e.Hash) {
		t.Error("ChainHash ignores the subject")
	}
	if n, err := s.CountEvents(t0, t0.Add(2*time.Hour)); n != 4 || err != nil {
		t.Errorf("CountEvents = %d, %v", n, err)
	}
	if n, err := s.CountVirus(t0, t0.Add(time.Hour)); n != 0 || err != nil {
		t.Errorf("CountVirus before = %d, %v", n, err)
	}
	if n, err := s.CountVirus(t0.Add(time.Hour), t0.Add(2*time.Hour)); n != 1 || err != nil {
		t.Errorf("CountVirus = %d, %v", n, err)
	}
	if id, h, err := s.LogAnchor(); id != 0 || !bytes.Equal(h, store.ZeroHash) || err != nil {
		t.Errorf("LogAnchor of a new log = %d, %x, %v", id, h, err)
	}
	if _, _, err := s.Purge(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if id, h, err := s.LogAnchor(); id != 2 || !bytes.Equal(h, got[0].PrevHash) || err != nil {
		t.Errorf("LogAnchor after purge = %d, %v", id, err)
	}
	if _, _, ok, err := s.EventLink(1); ok || err != nil {
		t.Errorf("EventLink of a purged row: %v, %v", ok, err)
	}
}
