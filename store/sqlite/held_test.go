package sqlite

import (
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/timer"

	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// A held acceptance is not effective: no log row, no receipt to send, no
// timer due; a take-charge arriving before the confirmation is kept; the
// confirmation makes everything effective at once, exactly once.
func TestHeldUntilQueued(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	txn := acceptance(1, at)
	id := txn.Events[0].PECID
	txn.Track = []store.Tracked{{PECID: id, Rcpt: "a@pec.other.example.test", Sent: at, Tx: []byte("{}")}}
	if err := s.HoldUntilQueued("tok1", "4XyZ1", at, txn); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.HeldCount(); n != 1 {
		t.Fatalf("held %d", n)
	}
	if ev, _ := s.Events(store.Query{PECID: id}); len(ev) != 0 {
		t.Fatalf("held acceptance has %d log rows", len(ev))
	}
	if due, _ := s.DuePending(at.Add(time.Hour), 10); len(due) != 0 {
		t.Fatalf("held acceptance receipt is due: %v", due)
	}
	if tm, _ := dueTimers(s, at.Add(30*time.Hour)); len(tm) != 0 {
		t.Fatalf("held timers are due: %v", tm)
	}
	// the other provider's take-charge arrives before Postfix's confirmation
	presa := at.Add(2 * time.Second)
	if err := s.Commit(store.Txn{Marks: []store.Mark{{PECID: id, Rcpt: "a@pec.other.example.test", What: store.MarkPresa, At: presa}}}); err != nil {
		t.Fatal(err)
	}
	found, err := s.ConfirmQueued("tok1")
	if err != nil || !found {
		t.Fatalf("confirm: %v %v", found, err)
	}
	ev, _ := s.Events(store.Query{PECID: id})
	if len(ev) != 2 || ev[0].Type != "accettazione" || !ev[0].Time.Equal(at) {
		t.Fatalf("events after confirmation: %+v", ev)
	}
	if due, _ := s.DuePending(at.Add(time.Hour), 10); len(due) != 1 || due[0].Kind != "accettazione" {
		t.Fatalf("acceptance receipt after confirmation: %+v", due)
	}
	tr, _ := s.Tracking(id)
	if len(tr) != 1 || !tr[0].Presa.Equal(presa) {
		t.Fatalf("tracking %+v: the early take-charge was lost", tr)
	}
	// 12 h timer not due (take-charge came), 24 h due after 24 h
	if tm, _ := dueTimers(s, at.Add(25*time.Hour)); len(tm) != 1 || !tm[0].Final {
		t.Fatalf("timers after confirmation: %+v", tm)
	}
	// twice: harmless
	if found, err := s.ConfirmQueued("tok1"); err != nil || found {
		t.Fatalf("second confirm: %v %v", found, err)
	}
	if ev, _ := s.Events(store.Query{PECID: id}); len(ev) != 2 {
		t.Fatalf("second confirm wrote %d rows", len(ev))
	}
	if n, _ := s.HeldCount(); n != 0 {
		t.Fatalf("held %d after confirmation", n)
	}
	mustVerify(t, s)
}

// Postfix never queued the message: the held transaction and its timer
// rows go, nothing of it ever reaches the log.
func TestDropUnqueued(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	old, young := acceptance(1, at), acceptance(2, at.Add(time.Hour))
	old.Track = []store.Tracked{{PECID: old.Events[0].PECID, Rcpt: "a@pec.other.example.test", Sent: at, Tx: []byte("{}")}}
	if err := s.HoldUntilQueued("old", "Q1", at, old); err != nil {
		t.Fatal(err)
	}
	if err := s.HoldUntilQueued("young", "Q2", at.Add(time.Hour), young); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.DropUnqueued(at.Add(30 * time.Minute))
	if err != nil || len(dropped) != 1 || dropped[0].Token != "old" || dropped[0].QueueID != "Q1" || dropped[0].PECIDs[0] != old.Events[0].PECID {
		t.Fatalf("dropped %+v, %v", dropped, err)
	}
	if tr, _ := s.Tracking(old.Events[0].PECID); len(tr) != 0 {
		t.Fatalf("timer rows of a dropped acceptance remain: %+v", tr)
	}
	if found, _ := s.ConfirmQueued("old"); found {
		t.Fatal("a dropped acceptance was confirmed")
	}
	if n, _ := s.HeldCount(); n != 1 {
		t.Fatalf("held %d, want the young one", n)
	}
	if ev, _ := s.Events(store.Query{}); len(ev) != 0 {
		t.Fatalf("%d log rows", len(ev))
	}
	// an invalid transaction is refused at hold time, not at confirmation
	bad := acceptance(3, at)
	bad.Outbox[0].Rcpts = nil
	if err := s.HoldUntilQueued("bad", "Q3", at, bad); err == nil {
		t.Fatal("held an outgoing message without recipients")
	}
}

// A store of the first release (schema 1, its timer table created apart)
// is upgraded in place and keeps its rows.
func TestUpgradeFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pec.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"PRAGMA journal_mode=WAL", migrations[0], trackingSchema, "PRAGMA user_version = 1",
		`INSERT INTO tracking (pecid, rcpt, sent_ns, tx) VALUES ('p1', 'a@pec.example.test', 1, x'7b7d')`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if tm, err := dueTimers(s, time.Unix(0, 1).Add(25*time.Hour)); err != nil || len(tm) != 1 {
		t.Fatalf("old timer row after the upgrade: %v %v", tm, err)
	}
	if n, err := s.HeldCount(); err != nil || n != 0 {
		t.Fatalf("held %d %v", n, err)
	}
}

// dueTimers lists the open rows whose notice is due at now with 12 h / 24 h
// deadlines (timer.Due over OpenTimers), and whether it is the final one.
func dueTimers(s *Store, now time.Time) ([]dueRow, error) {
	var out []dueRow
	err := timer.EachDue(s, now, 12*time.Hour, 24*time.Hour, 100, func(t store.Timer, n timer.Notice) error {
		out = append(out, dueRow{t, n == timer.Notice24})
		return nil
	})
	return out, err
}

type dueRow struct {
	store.Timer
	Final bool
}
