// Package storetest is the behaviour suite every store backend passes
// (store/sqlite, store/postgres): the same calls, the same answers, the
// same hash chain byte for byte. A backend's tests call Run.
package storetest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/timer"
)

// Backend opens stores for the suite.
type Backend struct {
	// New creates an empty store and returns a function that opens a
	// handle on it: each call is another process or node sharing it.
	// Handles are closed by the suite.
	New func(t *testing.T) (open func() store.Store)
}

var t0 = time.Date(2026, 11, 23, 9, 30, 0, 123456789, time.UTC)

// Run runs every behaviour test against b.
func Run(t *testing.T, b Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func() store.Store)
	}{
		{"CommitReadBack", testCommitReadBack},
		{"GoldenChain", testGoldenChain},
		{"CommitValidation", testCommitValidation},
		{"CommitAtomic", testCommitAtomic},
		{"Outbox", testOutbox},
		{"ClaimsDisjointAndTakenOver", testClaims},
		{"TimersAndMarks", testTimers},
		{"HeldUntilQueued", testHeld},
		{"DropUnqueuedOnce", testDropOnce},
		{"PurgeAndLinks", testPurge},
		{"Leases", testLeases},
		{"Shared", testShared},
		{"ConcurrentNodes", testConcurrentNodes},
		{"DeliveriesClaimAndSettle", testDeliveries},
		{"DeliveryClaimedByOneNode", testDeliveryRace},
		{"ServiceState", testServiceState},
		{"Records", testRecords},
		{"Health", testHealth},
		{"Mailboxes", testMailboxes},
		{"MailboxRegisteredOnce", testMailboxRace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			open := b.New(t)
			tc.fn(t, func() store.Store {
				s := open()
				t.Cleanup(func() { s.Close() })
				return s
			})
		})
	}
}

// Acceptance is a typical access-point transaction: two log rows and the
// acceptance receipt in the outbox.
func Acceptance(i int, at time.Time) store.Txn {
	id := fmt.Sprintf("opec-%04d@pec.example.test", i)
	return store.Txn{
		Events: []store.Event{
			{Time: at, Point: "access", Type: "accettazione", PECID: id, MsgID: fmt.Sprintf("<orig-%d@client>", i),
				Sender: "Mario.Rossi@pec.example.test", Recipients: []string{"a@pec.other.example.test", "b@example.com"},
				Subject: fmt.Sprintf("Fattura %d", i), Related: []string{"<ack-" + id + ">"}, Provider: "Example PEC S.p.A.", QueueID: "4XyZ1"},
			{Time: at, Point: "access", Type: "posta-certificata", PECID: id, MsgID: fmt.Sprintf("<orig-%d@client>", i),
				Sender: "Mario.Rossi@pec.example.test", Recipients: []string{"a@pec.other.example.test", "b@example.com"},
				Subject: fmt.Sprintf("Fattura %d", i), Related: []string{"<" + id + ">"}, Provider: "Example PEC S.p.A."},
		},
		Outbox: []store.Outgoing{{MailFrom: "posta-certificata@pec.example.test", Rcpts: []string{"mario.rossi@pec.example.test"},
			Data: []byte("Subject: ACCETTAZIONE: Fattura\r\n\r\nbody\r\n"), MessageID: "<ack-" + id + ">", Kind: "accettazione"}},
	}
}

func mustVerify(t *testing.T, s store.Store) {
	t.Helper()
	if bad, err := s.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog = %d, %v; want intact", bad, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func testCommitReadBack(t *testing.T, open func() store.Store) {
	s := open()
	txn := Acceptance(1, t0.In(time.FixedZone("CET", 3600)))
	// bytes that are easy to mangle: invalid UTF-8, NUL, markup, non-ASCII
	txn.Events[0].Subject = "caf\xe9 \x00 <&> €"
	txn.Events[0].Error = "5.1.1 - Example - indirizzo non valido"
	txn.Events[1].Recipients = []string{"x\xff@example.com"}
	txn.Events[1].Sender = "Ünïcode@PEC.example.test"
	txn.Virus = []store.Quarantined{{Time: t0, PECID: txn.Events[0].PECID, Sender: "s\xff@x", Recipients: []string{"r@y"},
		Signature: "Eicar-Test-Signature", Data: []byte("infected attachment bytes (test data)")}}
	must(t, s.Commit(txn))
	got, err := s.Events(store.Query{PECID: txn.Events[0].PECID})
	if err != nil || len(got) != 2 {
		t.Fatalf("Events = %d rows, %v; want 2", len(got), err)
	}
	for i := range got {
		want := txn.Events[i]
		want.ID, want.Time = int64(i+1), t0
		if i == 1 {
			want.Recipients = []string{"x\ufffd@example.com"} // JSON text cannot hold invalid UTF-8
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
	if got[0].Time.Location() != time.UTC {
		t.Errorf("time read back in %v, want UTC", got[0].Time.Location())
	}
	mustVerify(t, s)
	q, err := s.DuePending(t0, 10)
	if err != nil || len(q) != 1 || !reflect.DeepEqual(q[0].Outgoing, txn.Outbox[0]) || q[0].Attempts != 0 || !q[0].NextTry.IsZero() {
		t.Fatalf("DuePending = %+v, %v; want the receipt", q, err)
	}
	v, err := s.VirusItems(txn.Events[0].PECID)
	if err != nil || len(v) != 1 || !reflect.DeepEqual(v[0], txn.Virus[0]) {
		t.Errorf("VirusItems = %+v, %v", v, err)
	}
	if n, err := s.CountVirus(t0, t0.Add(time.Nanosecond)); n != 1 || err != nil {
		t.Errorf("CountVirus = %d, %v", n, err)
	}
	for _, c := range []struct {
		q    store.Query
		want int
	}{
		{store.Query{}, 2},
		{store.Query{MsgID: "<orig-1@client>"}, 2},
		{store.Query{Sender: "mario.rossi@PEC.example.test"}, 1},
		{store.Query{Sender: "Ünïcode@pec.EXAMPLE.test"}, 1},
		{store.Query{Sender: "ünïcode@pec.example.test"}, 0}, // ASCII folding only, as SQLite's NOCASE
		{store.Query{Recipient: "A@pec.other.example.test"}, 1},
		{store.Query{Recipient: "nobody@x"}, 0},
		{store.Query{Type: "accettazione"}, 1},
		{store.Query{Point: "access", Type: "posta-certificata"}, 1},
		{store.Query{From: t0, To: t0.Add(time.Nanosecond)}, 2},
		{store.Query{From: t0.Add(time.Nanosecond)}, 0},
		{store.Query{To: t0}, 0},
		{store.Query{Limit: 1}, 1},
	} {
		got, err := s.Events(c.q)
		if err != nil || len(got) != c.want {
			t.Errorf("Events(%+v) = %d rows, %v; want %d", c.q, len(got), err, c.want)
		}
	}
	if n, err := s.CountEvents(t0, t0.Add(time.Second)); n != 2 || err != nil {
		t.Errorf("CountEvents = %d, %v", n, err)
	}
}

// goldenHead is the chain head after goldenTxns: the same on every
// backend (the legal row encoding of package store).
const goldenHead = "32b0dd9d4a13f8b77befc495cf7c63e57f4b722f7e76ebd8f176f9f443433cae"

func goldenTxns() []store.Txn {
	a := Acceptance(7, t0)
	a.Events[0].Subject = "caf\xe9 \x00 €"
	return []store.Txn{a, Acceptance(8, t0.Add(time.Second))}
}

func testGoldenChain(t *testing.T, open func() store.Store) {
	s := open()
	txns := goldenTxns()
	prev := store.ZeroHash
	for _, txn := range txns {
		must(t, s.Commit(txn))
		for _, e := range txn.Events {
			n, err := store.NormalizeEvent(e)
			must(t, err)
			prev = store.RowHash(prev, &n)
		}
	}
	id, head, err := s.LogHead()
	must(t, err)
	if id != 4 || string(head) != string(prev) {
		t.Fatalf("LogHead = %d %x; want 4 %x (RowHash over the normalised events)", id, head, prev)
	}
	if got := hex.EncodeToString(head); got != goldenHead {
		t.Fatalf("chain head %s, want %s: the legal row encoding changed", got, goldenHead)
	}
	// every row's stored link is the chain recomputed
	prev = store.ZeroHash
	for i := int64(1); i <= 4; i++ {
		p, h, ok, err := s.EventLink(i)
		if err != nil || !ok || string(p) != string(prev) {
			t.Fatalf("EventLink(%d) = %x %x %v %v", i, p, h, ok, err)
		}
		prev = h
	}
	if _, _, ok, err := s.EventLink(5); ok || err != nil {
		t.Errorf("EventLink(5) = %v, %v; want not found", ok, err)
	}
}

func testCommitValidation(t *testing.T, open func() store.Store) {
	s := open()
	for name, txn := range map[string]store.Txn{
		"zero time":     {Events: []store.Event{{Type: "x"}}},
		"empty type":    {Events: []store.Event{{Time: t0}}},
		"no recipients": {Outbox: []store.Outgoing{{Data: []byte("x")}}},
		"empty data":    {Outbox: []store.Outgoing{{Rcpts: []string{"a@b"}}}},
		"virus no time": {Virus: []store.Quarantined{{PECID: "x"}}},
		"track no time": {Track: []store.Tracked{{PECID: "x", Rcpt: "a@b"}}},
		"unknown mark":  {Marks: []store.Mark{{PECID: "x", Rcpt: "a@b", What: "bogus", At: t0}}},
	} {
		if err := s.Commit(txn); err == nil {
			t.Errorf("%s: Commit accepted it", name)
		}
	}
	if ev, _ := s.Events(store.Query{}); len(ev) != 0 {
		t.Errorf("%d rows written by refused commits", len(ev))
	}
	if n, _ := s.OutboxDepth(); n != 0 {
		t.Errorf("%d outbox items written by refused commits", n)
	}
	must(t, s.Commit(store.Txn{})) // empty: nothing to do
}

func testCommitAtomic(t *testing.T, open func() store.Store) {
	s := open()
	must(t, s.Commit(Acceptance(1, t0)))
	bad := Acceptance(2, t0)
	bad.Marks = []store.Mark{{PECID: "x", Rcpt: "a@b", What: "bogus", At: t0}}
	if err := s.Commit(bad); err == nil {
		t.Fatal("a transaction with a bad mark was committed")
	}
	if ev, _ := s.Events(store.Query{}); len(ev) != 2 {
		t.Errorf("%d rows after a failed commit, want 2", len(ev))
	}
	if n, _ := s.OutboxDepth(); n != 1 {
		t.Errorf("outbox depth %d after a failed commit, want 1", n)
	}
	must(t, s.Commit(Acceptance(3, t0)))
	if id, _, _ := s.LogHead(); id != 4 {
		t.Errorf("head %d after a failed commit and a good one, want 4 (ids stay contiguous)", id)
	}
	mustVerify(t, s)
}

func testOutbox(t *testing.T, open func() store.Store) {
	s := open()
	for i := 0; i < 3; i++ {
		must(t, s.Commit(Acceptance(i, t0)))
	}
	q, err := s.DuePending(t0, 10)
	if err != nil || len(q) != 3 || q[0].ID >= q[1].ID || q[1].ID >= q[2].ID {
		t.Fatalf("DuePending = %+v, %v; want 3 oldest first", q, err)
	}
	first := q[0]
	must(t, s.MarkRetry(first.ID, "451 try later", t0.Add(5*time.Minute)))
	if due, _ := s.DuePending(t0.Add(5*time.Minute-time.Nanosecond), 10); len(due) != 2 {
		t.Errorf("before the retry time: %d due, want 2", len(due))
	}
	due, _ := s.DuePending(t0.Add(5*time.Minute), 10)
	if len(due) != 3 || due[0].ID != first.ID || due[0].Attempts != 1 || !due[0].NextTry.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("at the retry time: %+v", due)
	}
	p, err := s.Pending(0)
	if err != nil || len(p) != 3 || p[0].LastError != "451 try later" || p[0].Attempts != 1 {
		t.Errorf("Pending = %+v, %v", p, err)
	}
	sentAt := t0.Add(6 * time.Minute)
	must(t, s.MarkSent(first.ID, sentAt))
	if n, _ := s.OutboxDepth(); n != 2 {
		t.Errorf("depth %d after MarkSent, want 2", n)
	}
	if err := s.MarkSent(first.ID, sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("second MarkSent = %v, want ErrNotPending", err)
	}
	if err := s.MarkRetry(first.ID, "x", sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("MarkRetry of a sent item = %v, want ErrNotPending", err)
	}
	if err := s.MarkSent(999999, sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("MarkSent of an unknown item = %v, want ErrNotPending", err)
	}
	ev, _ := s.Events(store.Query{From: sentAt})
	want := store.Event{ID: 7, Time: sentAt, Point: "outbox", Type: "sent", Sender: first.MailFrom, Recipients: first.Rcpts, Related: []string{first.MessageID}}
	if len(ev) != 1 || !reflect.DeepEqual(ev[0], want) {
		t.Errorf("sent row = %+v, want %+v", ev, want)
	}
	// RetryAll brings a scheduled retry forward
	must(t, s.MarkRetry(q[1].ID, "down", t0.Add(time.Hour)))
	if n, err := s.RetryAll(t0.Add(7 * time.Minute)); n != 1 || err != nil {
		t.Errorf("RetryAll = %d, %v; want 1", n, err)
	}
	if due, _ := s.DuePending(t0.Add(7*time.Minute), 10); len(due) != 2 {
		t.Errorf("after RetryAll: %d due, want 2", len(due))
	}
	mustVerify(t, s)
}

func testClaims(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open() // two nodes
	for i := 0; i < 4; i++ {
		must(t, s1.Commit(Acceptance(i, t0)))
	}
	dead := store.ClaimOwner{Host: "mx1", PID: 4242, Instance: "pecmilter-1", Proc: "boot ns 17"}
	live := store.ClaimOwner{Host: "mx2", PID: 4343, Instance: "pecdeliver-1"}
	const lease = 10 * time.Minute
	d, err := s1.Claim(dead, t0, lease, 3)
	if err != nil || len(d) != 3 {
		t.Fatalf("Claim = %d, %v", len(d), err)
	}
	if l, err := s2.Claim(live, t0, lease, 3); err != nil || len(l) != 1 || l[0].ID != d[2].ID+1 {
		t.Fatalf("the other node's Claim = %+v, %v; want the one unclaimed item", l, err)
	}
	must(t, s1.MarkSent(d[0].ID, t0.Add(time.Second)))
	must(t, s1.MarkRetry(d[1].ID, "451", t0.Add(time.Hour)))
	h, err := s2.ClaimHolders()
	if err != nil || len(h) != 2 || h[0].ClaimOwner != dead || h[0].Items != 1 || !h[0].Until.Equal(t0.Add(lease)) ||
		h[1].ClaimOwner != live || h[1].Items != 1 {
		t.Fatalf("ClaimHolders = %+v, %v; want one item each", h, err)
	}
	// before the lease ends nobody else gets the dead node's item
	if got, _ := s2.Claim(live, t0.Add(lease-time.Second), lease, 10); len(got) != 0 {
		t.Fatalf("claimed %+v while the leases run", got)
	}
	// the lease ends: the other node takes the item over
	later := t0.Add(lease)
	taken, err := s2.Claim(live, later, lease, 10)
	if err != nil || len(taken) != 2 {
		t.Fatalf("Claim after the lease = %+v, %v; want the dead node's item and its own expired one", taken, err)
	}
	if n, _ := s1.ReleaseClaimsOf(dead, later); n != 0 {
		t.Errorf("released %d items of an owner whose claims were taken over", n)
	}
	if h, _ := s1.ClaimHolders(); len(h) != 1 || h[0].ClaimOwner != live || h[0].Items != 2 {
		t.Errorf("ClaimHolders after takeover = %+v", h)
	}
	if n, err := s1.ReleaseClaimsOf(live, later); n != 2 || err != nil {
		t.Errorf("ReleaseClaimsOf = %d, %v; want 2", n, err)
	}
	if due, _ := s1.DuePending(later, 10); len(due) != 2 {
		t.Errorf("%d due after the release, want 2", len(due))
	}
	must(t, s1.Release([]int64{taken[0].ID}, later))

	// many claimers at once on two handles never share an item
	for i := 10; i < 40; i++ {
		must(t, s1.Commit(Acceptance(i, t0)))
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := []store.Store{s1, s2}[w%2]
			o := store.ClaimOwner{Host: "mx", PID: w, Instance: fmt.Sprint("w", w)}
			for {
				got, err := st.Claim(o, later, lease, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, q := range got {
					seen[q.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 32 {
		t.Errorf("%d items claimed, want 32", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("item %d claimed %d times", id, n)
		}
	}
}

func testTimers(t *testing.T, open func() store.Store) {
	s := open()
	const warn, final = 12 * time.Hour, 23 * time.Hour
	rcpts := []string{"A@pec.b.example.test", "b@pec.b.example.test", "c@pec.b.example.test"}
	var track []store.Tracked
	for _, r := range rcpts {
		track = append(track, store.Tracked{PECID: "p1", Rcpt: r, Sent: t0, Tx: []byte(`{"id":"p1"}`)})
	}
	must(t, s.Commit(store.Txn{Track: track}))
	must(t, s.Commit(store.Txn{Track: track[:1]})) // again: ignored
	must(t, s.Commit(store.Txn{Marks: []store.Mark{
		{PECID: "p1", Rcpt: "B@PEC.B.EXAMPLE.TEST", What: store.MarkPresa, At: t0.Add(time.Hour)},
		{PECID: "p1", Rcpt: "c@pec.b.example.test", What: store.MarkConsegna, At: t0.Add(2 * time.Hour)},
		{PECID: "unknown", Rcpt: "x@y", What: store.MarkConsegna, At: t0}, // ignored
	}}))
	if due, err := dueAt(s, t0.Add(warn-time.Second), warn, final); err != nil || len(due) != 0 {
		t.Fatalf("due before 12 h: %+v, %v", due, err)
	}
	due, err := dueAt(s, t0.Add(warn), warn, final)
	if err != nil || len(due) != 1 || due[0].Rcpt != "a@pec.b.example.test" || due[0].Final || !due[0].Sent.Equal(t0) || string(due[0].Tx) != `{"id":"p1"}` {
		t.Fatalf("due at 12 h: %+v, %v; want the 12 h notice of a@ only", due, err)
	}
	notice := store.Txn{
		Events: []store.Event{{Time: t0.Add(warn), Point: "timer", Type: "preavviso-errore-consegna", PECID: "p1"}},
		Marks:  []store.Mark{{PECID: "p1", Rcpt: due[0].Rcpt, What: store.MarkNotice12, At: t0.Add(warn), Once: true}},
	}
	must(t, s.Commit(notice))
	if err := s.Commit(notice); !errors.Is(err, store.ErrMarked) {
		t.Fatalf("the same notice again: %v, want ErrMarked", err)
	}
	if ev, _ := s.Events(store.Query{Type: "preavviso-errore-consegna"}); len(ev) != 1 {
		t.Fatalf("%d notice rows, want 1: a commit refused with ErrMarked wrote its rows", len(ev))
	}
	due, _ = dueAt(s, t0.Add(final), warn, final)
	if len(due) != 2 || !due[0].Final || !due[1].Final || due[0].Rcpt != "a@pec.b.example.test" || due[1].Rcpt != "b@pec.b.example.test" {
		t.Fatalf("due at 23 h: %+v; want the final notice of a@ and b@", due)
	}
	must(t, s.Commit(store.Txn{Marks: []store.Mark{{PECID: "p1", Rcpt: "a@pec.b.example.test", What: store.MarkNotice24, At: t0.Add(final), Once: true},
		{PECID: "p1", Rcpt: "b@pec.b.example.test", What: store.MarkErrore, At: t0.Add(final)}}}))
	if due, _ := dueAt(s, t0.Add(48*time.Hour), warn, final); len(due) != 0 {
		t.Fatalf("due after the outcomes: %+v", due)
	}
	st, err := s.Tracking("p1")
	if err != nil || len(st) != 3 {
		t.Fatalf("Tracking = %+v, %v", st, err)
	}
	if st[0].Rcpt != "a@pec.b.example.test" || !st[0].Notice12.Equal(t0.Add(warn)) || !st[0].Notice24.Equal(t0.Add(final)) ||
		st[1].Outcome != store.MarkErrore || !st[1].Presa.Equal(t0.Add(time.Hour)) ||
		st[2].Outcome != store.MarkConsegna || !st[2].OutcomeAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("Tracking = %+v", st)
	}
}

func testHeld(t *testing.T, open func() store.Store) {
	s := open()
	txn := Acceptance(1, t0)
	txn.Track = []store.Tracked{{PECID: txn.Events[0].PECID, Rcpt: "a@pec.other.example.test", Sent: t0, Tx: []byte("{}")}}
	must(t, s.HoldUntilQueued("tok1", "4XyZ1", t0, txn))
	if ev, _ := s.Events(store.Query{}); len(ev) != 0 {
		t.Fatal("a held transaction wrote log rows")
	}
	if n, _ := s.OutboxDepth(); n != 0 {
		t.Fatal("a held transaction queued its receipt")
	}
	if n, _ := s.HeldCount(); n != 1 {
		t.Fatalf("HeldCount = %d, want 1", n)
	}
	if due, _ := dueAt(s, t0.Add(48*time.Hour), 12*time.Hour, 23*time.Hour); len(due) != 0 {
		t.Fatal("the timers saw a held row")
	}
	// a take-charge arriving before the confirmation still finds the row
	must(t, s.Commit(store.Txn{Marks: []store.Mark{{PECID: txn.Events[0].PECID, Rcpt: "a@pec.other.example.test", What: store.MarkPresa, At: t0}}}))
	if err := s.HoldUntilQueued("tok1", "4XyZ1", t0, txn); err == nil {
		t.Error("a token held twice")
	}
	found, err := s.ConfirmQueued("tok1")
	if !found || err != nil {
		t.Fatalf("ConfirmQueued = %v, %v", found, err)
	}
	if found, err := s.ConfirmQueued("tok1"); found || err != nil {
		t.Fatalf("second ConfirmQueued = %v, %v; want not found, no error", found, err)
	}
	ev, _ := s.Events(store.Query{})
	if len(ev) != 2 || ev[0].PECID != txn.Events[0].PECID {
		t.Fatalf("rows after confirmation: %+v", ev)
	}
	if n, _ := s.OutboxDepth(); n != 1 {
		t.Fatal("the confirmed acceptance is not in the outbox")
	}
	if due, _ := dueAt(s, t0.Add(48*time.Hour), 12*time.Hour, 23*time.Hour); len(due) != 1 {
		t.Fatalf("timers after confirmation: %+v", due)
	}
	if st, _ := s.Tracking(txn.Events[0].PECID); len(st) != 1 || !st[0].Presa.Equal(t0) {
		t.Fatalf("tracking after confirmation: %+v (the early take-charge is kept)", st)
	}
	mustVerify(t, s)
}

func testDropOnce(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open()
	for i := 0; i < 10; i++ {
		txn := Acceptance(i, t0)
		txn.Track = []store.Tracked{{PECID: txn.Events[0].PECID, Rcpt: "a@x", Sent: t0, Tx: []byte("{}")}}
		must(t, s1.HoldUntilQueued(fmt.Sprint("tok", i), "Q", t0.Add(time.Duration(i)*time.Second), txn))
	}
	var wg sync.WaitGroup
	got := make([][]store.HeldItem, 4)
	for w := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			got[w], err = []store.Store{s1, s2}[w%2].DropUnqueued(t0.Add(5 * time.Second))
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	var tokens []string
	for _, g := range got {
		for _, h := range g {
			tokens = append(tokens, h.Token)
			if h.QueueID != "Q" || len(h.PECIDs) != 2 {
				t.Errorf("dropped item %+v", h)
			}
		}
	}
	sort.Strings(tokens)
	if fmt.Sprint(tokens) != "[tok0 tok1 tok2 tok3 tok4]" {
		t.Fatalf("dropped %v; want tok0..tok4, each once", tokens)
	}
	if n, _ := s1.HeldCount(); n != 5 {
		t.Errorf("HeldCount = %d, want 5", n)
	}
	if st, _ := s1.Tracking(Acceptance(0, t0).Events[0].PECID); len(st) != 0 {
		t.Errorf("the timer row of a dropped hold stays: %+v", st)
	}
	if found, _ := s2.ConfirmQueued("tok0"); found {
		t.Error("a dropped hold was confirmed")
	}
	if found, _ := s2.ConfirmQueued("tok9"); !found {
		t.Error("a live hold was not confirmed")
	}
}

func testPurge(t *testing.T, open func() store.Store) {
	s := open()
	for i := 0; i < 5; i++ {
		txn := Acceptance(i, t0.Add(time.Duration(i)*time.Hour))
		txn.Virus = []store.Quarantined{{Time: t0.Add(time.Duration(i) * time.Hour), PECID: txn.Events[0].PECID, Data: []byte("v")}}
		must(t, s.Commit(txn))
	}
	q, _ := s.DuePending(t0, 10)
	must(t, s.MarkSent(q[0].ID, t0.Add(30*time.Minute))) // row 11
	var linked []store.LinkedEvent
	must(t, s.EachLinkedEvent(t0, t0.Add(2*time.Hour), func(le store.LinkedEvent) error {
		linked = append(linked, le)
		return nil
	}))
	if len(linked) != 5 || linked[0].ID != 1 || string(linked[0].PrevHash) != string(store.ZeroHash) ||
		string(linked[1].PrevHash) != string(linked[0].Hash) || string(linked[0].Event.ChainHash(linked[0].PrevHash)) != string(linked[0].Hash) {
		t.Fatalf("EachLinkedEvent: %d rows %+v", len(linked), linked)
	}
	ev, vi, err := s.Purge(t0.Add(2 * time.Hour))
	if ev != 4 || vi != 2 || err != nil {
		t.Fatalf("Purge = %d, %d, %v; want 4 rows, 2 virus items", ev, vi, err)
	}
	anchor, ah, err := s.LogAnchor()
	if anchor != 4 || err != nil || string(ah) != string(linked[3].Hash) {
		t.Fatalf("LogAnchor = %d %x, %v; want row 4's hash", anchor, ah, err)
	}
	mustVerify(t, s)
	if n, _ := s.CountEvents(time.Time{}.Add(1), t0.Add(100*time.Hour)); n != 7 {
		t.Errorf("%d rows left, want 7", n)
	}
	// the sent item goes with a later purge, pending ones never
	if _, _, err := s.Purge(t0.Add(10 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.OutboxDepth(); n != 4 {
		t.Errorf("depth %d after purging, want 4 (pending items are kept)", n)
	}
	if id, _, _ := s.LogAnchor(); id != 11 {
		t.Errorf("anchor %d after purging everything, want 11", id)
	}
	mustVerify(t, s)
	must(t, s.Commit(Acceptance(9, t0.Add(11*time.Hour))))
	mustVerify(t, s)
}

func testLeases(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open()
	held, st, err := s1.Lease("index", "node1", t0, time.Minute)
	if !held || err != nil || st.Holder != "node1" || !st.Until.Equal(t0.Add(time.Minute)) {
		t.Fatalf("first Lease = %v %+v %v", held, st, err)
	}
	if held, st, _ := s2.Lease("index", "node2", t0.Add(30*time.Second), time.Minute); held || st.Holder != "node1" {
		t.Fatalf("node2 took a running lease: %+v", st)
	}
	if held, st, _ := s1.Lease("index", "node1", t0.Add(50*time.Second), time.Minute); !held || !st.Until.Equal(t0.Add(110*time.Second)) {
		t.Fatalf("renewal: %v %+v", held, st)
	}
	if held, _, _ := s2.Lease("index", "node2", t0.Add(110*time.Second), time.Minute); !held {
		t.Fatal("node2 did not take an ended lease")
	}
	must(t, s2.Unlease("index", "node2"))
	if held, _, _ := s1.Lease("index", "node1", t0.Add(111*time.Second), time.Minute); !held {
		t.Fatal("node1 did not take a given-up lease")
	}
	// work done once: a finished lease is never taken again
	if held, _, _ := s1.Lease("archive/2026-11-22", "node1", t0, time.Hour); !held {
		t.Fatal("archive lease")
	}
	if err := s2.Finish("archive/2026-11-22", "node2", t0, "x"); err == nil {
		t.Error("a non-holder finished the lease")
	}
	must(t, s1.Finish("archive/2026-11-22", "node1", t0.Add(time.Minute), "/var/lib/pec/archive/x"))
	held, st, err = s2.Lease("archive/2026-11-22", "node2", t0.Add(48*time.Hour), time.Hour)
	if held || err != nil || st.Done.IsZero() || st.Holder != "node1" || st.Note != "/var/lib/pec/archive/x" {
		t.Fatalf("Lease of finished work = %v %+v %v", held, st, err)
	}
	if held, _, _ := s1.Lease("archive/2026-11-22", "node1", t0.Add(48*time.Hour), time.Hour); held {
		t.Fatal("the holder took its finished lease again")
	}
	// many nodes at once: one winner
	var wins int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			held, _, err := []store.Store{s1, s2}[w%2].Lease("race", fmt.Sprint("n", w), t0, time.Minute)
			if err != nil {
				t.Error(err)
			}
			if held {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d holders of one lease", wins)
	}
}

func testShared(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open()
	if _, _, ok, err := s1.GetShared("index"); ok || err != nil {
		t.Fatalf("GetShared of nothing = %v, %v", ok, err)
	}
	must(t, s1.PutShared("index", []byte("v1\x00\xff"), t0))
	must(t, s1.PutShared("index", []byte("v2\x00\xff"), t0.Add(time.Hour)))
	data, at, ok, err := s2.GetShared("index")
	if !ok || err != nil || string(data) != "v2\x00\xff" || !at.Equal(t0.Add(time.Hour)) {
		t.Fatalf("GetShared = %q %v %v %v", data, at, ok, err)
	}
}

// testConcurrentNodes: writers on two handles (two nodes) append to one
// chain; it verifies while they write and after, with contiguous ids.
func testConcurrentNodes(t *testing.T, open func() store.Store) {
	s1, s2, verifier := open(), open(), open()
	const writers, each = 4, 15
	var wg sync.WaitGroup
	stop := make(chan struct{})
	verified := 0
	var verr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if bad, err := verifier.VerifyLog(); bad != 0 || err != nil {
				verr = fmt.Errorf("VerifyLog while writing = %d, %v", bad, err)
				return
			}
			verified++
		}
	}()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := []store.Store{s1, s2}[w%2]
			for i := 0; i < each; i++ {
				txn := Acceptance(w*1000+i, t0.Add(time.Duration(i)*time.Millisecond))
				if i%3 == 0 {
					q, _ := st.Claim(store.ClaimOwner{Host: "h", PID: w, Instance: "x"}, t0.Add(time.Hour), time.Minute, 1)
					for _, it := range q {
						if err := st.MarkSent(it.ID, t0.Add(time.Hour)); err != nil {
							t.Error(err)
						}
					}
				}
				if err := st.Commit(txn); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	if verr != nil {
		t.Fatal(verr)
	}
	if verified == 0 {
		t.Log("the verifier finished no walk while writers ran")
	}
	mustVerify(t, s1)
	// the per-mailbox hourly limit counts on any node (cmd/pecmilter,
	// with a COUNT where the backend has one): every node's acceptances
	// are in it
	for _, st := range []store.Store{s1, s2} {
		ev, _ := st.Events(store.Query{Sender: "mario.rossi@pec.example.test", Type: "accettazione", From: t0, Limit: 1000})
		if len(ev) != writers*each {
			t.Fatalf("%d acceptances of the sender counted, want %d from both nodes", len(ev), writers*each)
		}
		if n, err := st.CountSenderEvents("MARIO.rossi@pec.example.test", "accettazione", t0); n != writers*each || err != nil {
			t.Fatalf("CountSenderEvents = %d, %v; want %d", n, err, writers*each)
		}
		if n, _ := st.CountSenderEvents("mario.rossi@pec.example.test", "accettazione", t0.Add(time.Hour)); n != 0 {
			t.Fatalf("CountSenderEvents after the last row = %d", n)
		}
	}
	id, _, _ := s1.LogHead()
	all, _ := s1.Events(store.Query{})
	if int64(len(all)) != id || all[len(all)-1].ID != id {
		t.Fatalf("head %d, %d rows: ids not contiguous", id, len(all))
	}
}

func testDeliveries(t *testing.T, open func() store.Store) {
	s := open()
	me := store.DeliveryOwner{ID: "inst/1", PID: 4242}
	const key = "opec-1@pec.example.test"
	must(t, s.ClaimDeliveries(key, []string{"Luigi@pec.example.test", "carla@pec.example.test"}, me, t0))
	got, err := s.Deliveries(key, []string{"luigi@pec.example.test", "carla@PEC.example.test", "ugo@pec.example.test"})
	if err != nil || len(got) != 2 || got["luigi@pec.example.test"].State != store.DeliveryPending || got["carla@pec.example.test"].Owner != me ||
		!got["carla@pec.example.test"].At.Equal(t0) || got["carla@pec.example.test"].Key != key {
		t.Fatalf("after claim: %+v, %v", got, err)
	}
	// a second claim of a recipient with a row records nothing at all
	err = s.ClaimDeliveries(key, []string{"ugo@pec.example.test", "luigi@pec.example.test"}, store.DeliveryOwner{ID: "other/1", PID: 1}, t0)
	if !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("second claim: %v, want ErrDeliveryConflict", err)
	}
	if got, _ := s.Deliveries(key, []string{"ugo@pec.example.test"}); len(got) != 0 {
		t.Fatalf("a failed claim left %+v", got)
	}
	// the outcome moves the rows with the receipts, atomically
	must(t, s.Commit(store.Txn{
		Events:     []store.Event{{Time: t0, Point: "delivery", Type: "avvenuta-consegna", PECID: key}},
		Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "luigi@pec.example.test", From: store.DeliveryPending, Owner: me.ID, To: store.DeliveryStored, At: t0}},
	}))
	// another owner cannot settle carla's row: nothing of its Txn is written
	bad := store.Txn{
		Events:     []store.Event{{Time: t0, Point: "delivery", Type: "avvenuta-consegna", PECID: key, Recipients: []string{"carla"}}},
		Outbox:     Acceptance(1, t0).Outbox,
		Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "carla@pec.example.test", From: store.DeliveryPending, Owner: "other/1", To: store.DeliveryStored, At: t0}},
	}
	if err := s.Commit(bad); !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("foreign settle: %v, want ErrDeliveryConflict", err)
	}
	if ev, _ := s.Events(store.Query{PECID: key}); len(ev) != 1 {
		t.Fatalf("the refused Txn wrote %d rows", len(ev)-1)
	}
	if n, _ := s.OutboxDepth(); n != 0 {
		t.Fatal("the refused Txn queued its receipt")
	}
	// a temporary failure removes the row: the next attempt starts over
	must(t, s.Commit(store.Txn{Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "carla@pec.example.test", From: store.DeliveryPending, Owner: me.ID, At: t0}}}))
	// a permanent refusal at RCPT (no intent) is recorded once
	fail := store.Txn{Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "ugo@pec.example.test", To: store.DeliveryFailed, At: t0}}}
	must(t, s.Commit(fail))
	if err := s.Commit(fail); !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("second insert: %v, want ErrDeliveryConflict", err)
	}
	got, _ = s.Deliveries(key, []string{"luigi@pec.example.test", "carla@pec.example.test", "ugo@pec.example.test"})
	if got["luigi@pec.example.test"].State != store.DeliveryStored || got["ugo@pec.example.test"].State != store.DeliveryFailed || len(got) != 2 {
		t.Fatalf("final rows: %+v", got)
	}
	// settled rows go with the log's retention; pending ones stay
	must(t, s.ClaimDeliveries("k2", []string{"x@pec.example.test"}, me, t0))
	if _, _, err := s.Purge(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Deliveries(key, []string{"luigi@pec.example.test"}); len(got) != 0 {
		t.Fatalf("purge kept %+v", got)
	}
	if got, _ := s.Deliveries("k2", []string{"x@pec.example.test"}); len(got) != 1 {
		t.Fatal("purge removed a pending row")
	}
}

// testDeliveryRace: two nodes' delivery points receiving the same envelope
// for the same recipient at once (Postfix retried on the other node):
// exactly one records the intent, so the mailbox gets one copy.
func testDeliveryRace(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open()
	for i := 0; i < 10; i++ {
		key := fmt.Sprintf("race-%d@pec.example.test", i)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for n := 0; n < 4; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := []store.Store{s1, s2}[n%2].ClaimDeliveries(key, []string{"luigi@pec.example.test"}, store.DeliveryOwner{ID: fmt.Sprint("o", n), PID: n}, t0)
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrDeliveryConflict):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%s: %d claims succeeded, want 1", key, wins.Load())
		}
	}
}

// dueRow is an open tracked recipient whose notice is due.
type dueRow struct {
	store.Timer
	Final bool // the 24 h notice (else the 12 h one)
}

// dueAt is what a timer runner finds due at now: the store's open rows
// (OpenTimers, read a page of two at a time to walk the cursor) judged by
// the timer package's rule (timer.EachDue).
func dueAt(s store.Store, now time.Time, warn, final time.Duration) ([]dueRow, error) {
	var out []dueRow
	err := timer.EachDue(s, now, warn, final, 2, func(t store.Timer, n timer.Notice) error {
		out = append(out, dueRow{t, n == timer.Notice24})
		return nil
	})
	return out, err
}
