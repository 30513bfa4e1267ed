package sqlite

import (
	"github.com/pecgo/pec/store"

	"bytes"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pec.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func acceptance(i int, at time.Time) store.Txn {
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

// tamper opens the database file directly, as an attacker with the sqlite3
// shell would, drops the append-only triggers and runs stmts.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	all := append([]string{"DROP TRIGGER events_no_update", "DROP TRIGGER events_no_delete"}, stmts...)
	for _, q := range all {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func mustVerify(t *testing.T, s *Store) {
	t.Helper()
	if bad, err := s.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog = %d, %v; want intact", bad, err)
	}
}

func TestCommitReadBack(t *testing.T) {
	s, _ := openTemp(t)
	local := time.FixedZone("CET", 3600)
	txn := acceptance(1, t0.In(local))
	// Bytes that are easy to mangle: invalid UTF-8, NUL, HTML-ish characters, non-ASCII.
	txn.Events[0].Subject = "caf\xe9 \x00 <&> €"
	txn.Events[0].Error = "5.1.1 - Example - indirizzo non valido"
	txn.Events[1].Recipients = []string{"x\xff@example.com"}
	txn.Virus = []store.Quarantined{{Time: t0, PECID: txn.Events[0].PECID, Sender: "s@x", Recipients: []string{"r@y"},
		Signature: "Eicar-Test-Signature", Data: []byte("infected attachment bytes (test data)")}}
	if err := s.Commit(txn); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(store.Query{PECID: txn.Events[0].PECID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	for i := range got {
		want := txn.Events[i]
		want.ID = int64(i + 1)
		want.Time = t0
		if i == 1 {
			want.Recipients = []string{"x\ufffd@example.com"} // JSON text cannot hold invalid UTF-8
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
	if !got[0].Time.Equal(t0) || got[0].Time.Location() != time.UTC {
		t.Errorf("time %v, want %v UTC", got[0].Time, t0)
	}
	mustVerify(t, s)

	q, err := s.DuePending(t0, 10)
	if err != nil || len(q) != 1 {
		t.Fatalf("DuePending = %v, %v", q, err)
	}
	if !reflect.DeepEqual(q[0].Outgoing, txn.Outbox[0]) || q[0].Attempts != 0 || !q[0].NextTry.IsZero() {
		t.Errorf("queued %+v, want %+v", q[0], txn.Outbox[0])
	}
	v, err := s.VirusItems(txn.Events[0].PECID)
	if err != nil || len(v) != 1 || !reflect.DeepEqual(v[0], txn.Virus[0]) {
		t.Errorf("VirusItems = %+v, %v", v, err)
	}

	// Queries.
	for _, c := range []struct {
		q    store.Query
		want int
	}{
		{store.Query{}, 2},
		{store.Query{MsgID: "<orig-1@client>"}, 2},
		{store.Query{Sender: "mario.rossi@PEC.example.test"}, 2},
		{store.Query{Recipient: "A@pec.other.example.test"}, 1},
		{store.Query{Recipient: "nobody@x"}, 0},
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
}

func TestCommitValidation(t *testing.T) {
	s, _ := openTemp(t)
	bad := []store.Txn{
		{Events: []store.Event{{Type: "accettazione"}}},                       // zero time
		{Events: []store.Event{{Time: t0}}},                                   // no type
		{Outbox: []store.Outgoing{{MailFrom: "a@b", Data: []byte("x")}}},      // no recipients
		{Outbox: []store.Outgoing{{MailFrom: "a@b", Rcpts: []string{"c@d"}}}}, // no data
	}
	for i, txn := range bad {
		if err := s.Commit(txn); err == nil {
			t.Errorf("txn %d: Commit succeeded", i)
		}
	}
	if err := s.Commit(store.Txn{}); err != nil {
		t.Errorf("empty txn: %v", err)
	}
}

// A transaction that fails in the database half-way writes nothing.
func TestCommitAtomic(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Commit(acceptance(1, t0)); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	// The virus insert, the last write of Commit, fails.
	if _, err := db.Exec(`CREATE TRIGGER boom BEFORE INSERT ON virus WHEN new.signature = 'boom'
		BEGIN SELECT RAISE(ABORT, 'forced failure'); END`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	headID, headHash, _ := s.LogHead()

	txn := acceptance(2, t0.Add(time.Second))
	txn.Virus = []store.Quarantined{{Time: t0, PECID: "p2", Signature: "boom", Data: []byte("x")}}
	err = s.Commit(txn)
	if err == nil || !strings.Contains(err.Error(), "forced failure") {
		t.Fatalf("Commit = %v, want the forced failure", err)
	}
	if ev, _ := s.Events(store.Query{}); len(ev) != 2 {
		t.Errorf("%d events after failed commit, want 2", len(ev))
	}
	if n, _ := s.OutboxDepth(); n != 1 {
		t.Errorf("outbox depth %d after failed commit, want 1", n)
	}
	if id, h, _ := s.LogHead(); id != headID || !bytes.Equal(h, headHash) {
		t.Errorf("head moved to %d after failed commit", id)
	}
	mustVerify(t, s)

	// The store is still usable and the chain continues from the old head.
	txn.Virus[0].Signature = "Eicar"
	if err := s.Commit(txn); err != nil {
		t.Fatal(err)
	}
	if id, _, _ := s.LogHead(); id != 4 {
		t.Errorf("head %d, want 4", id)
	}
	mustVerify(t, s)
}

func TestAppendOnlyTriggers(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Commit(acceptance(1, t0)); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("UPDATE events SET subject = 'x' WHERE id = 1"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("UPDATE: %v, want refused", err)
	}
	if _, err := db.Exec("DELETE FROM events WHERE id = 2"); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Errorf("DELETE: %v, want refused", err)
	}
	mustVerify(t, s)
}

// fiveRows makes a store whose log holds rows 1..5, one minute apart.
func fiveRows(t *testing.T) (*Store, string) {
	s, path := openTemp(t)
	for i := 0; i < 5; i++ {
		txn := acceptance(i, t0.Add(time.Duration(i)*time.Minute))
		txn.Events = txn.Events[:1]
		if err := s.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	mustVerify(t, s)
	return s, path
}

func TestVerifyLogDetects(t *testing.T) {
	for _, c := range []struct {
		name    string
		stmts   []string
		wantBad int64
		wantMsg string
	}{
		{"changed field", []string{"UPDATE events SET subject = 'Fattura 99' WHERE id = 3"}, 3, "row 3 was changed"},
		{"changed time", []string{"UPDATE events SET time_ns = time_ns + 1 WHERE id = 2"}, 2, "row 2 was changed"},
		{"changed list", []string{`UPDATE events SET recipients = '["a@pec.other.example.test"]' WHERE id = 4`}, 4, "row 4 was changed"},
		{"deleted row", []string{"DELETE FROM events WHERE id = 3"}, 4, "rows 3..3 removed"},
		{"deleted first row", []string{"DELETE FROM events WHERE id = 1"}, 2, "rows 1..1 removed"},
		{"deleted last row", []string{"DELETE FROM events WHERE id = 5"}, 5, "truncated"},
		{"swapped rows", []string{
			"UPDATE events SET id = -3 WHERE id = 3",
			"UPDATE events SET id = 3 WHERE id = 4",
			"UPDATE events SET id = 4 WHERE id = -3",
		}, 3, "reordered"},
		{"changed hash", []string{"UPDATE events SET hash = randomblob(32) WHERE id = 2"}, 2, "row 2 was changed"},
		{"anchor changed", []string{"UPDATE chain SET anchor_hash = randomblob(32)"}, 1, "purge anchor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, path := fiveRows(t)
			tamper(t, path, c.stmts...)
			bad, err := s.VerifyLog()
			if bad != c.wantBad || err == nil || !strings.Contains(err.Error(), c.wantMsg) {
				t.Errorf("VerifyLog = %d, %v; want %d, %q", bad, err, c.wantBad, c.wantMsg)
			}
		})
	}
}

// A row rewritten with a self-consistent hash breaks the link to the next row.
func TestVerifyLogRewrittenRow(t *testing.T) {
	s, path := fiveRows(t)
	ev, err := s.Events(store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	e := ev[1] // row 2
	var prev []byte
	db, _ := sql.Open("sqlite3", path)
	if err := db.QueryRow("SELECT prev_hash FROM events WHERE id = 2").Scan(&prev); err != nil {
		t.Fatal(err)
	}
	db.Close()
	e.Subject = "forged"
	h := store.RowHash(prev, &e)
	tamper(t, path, fmt.Sprintf("UPDATE events SET subject = 'forged', hash = x'%x' WHERE id = 2", h))
	bad, err := s.VerifyLog()
	if bad != 3 || err == nil || !strings.Contains(err.Error(), "does not link to row 2") {
		t.Errorf("VerifyLog = %d, %v; want 3, broken link", bad, err)
	}
}

func TestPurge(t *testing.T) {
	s, _ := openTemp(t)
	cut := t0.Add(time.Hour)
	times := []time.Time{t0, cut.Add(-time.Nanosecond), cut, cut.Add(time.Nanosecond)}
	for i, at := range times {
		txn := acceptance(i, at)
		txn.Events = txn.Events[:1]
		txn.Virus = []store.Quarantined{{Time: at, PECID: txn.Events[0].PECID, Signature: "Eicar", Data: []byte("v")}}
		if err := s.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	ne, nv, err := s.Purge(cut)
	if err != nil || ne != 2 || nv != 2 {
		t.Fatalf("Purge = %d, %d, %v; want 2, 2", ne, nv, err)
	}
	ev, _ := s.Events(store.Query{})
	if len(ev) != 2 || !ev[0].Time.Equal(cut) || ev[0].ID != 3 {
		t.Fatalf("after purge: %+v", ev)
	}
	for i, at := range times {
		v, _ := s.VirusItems(fmt.Sprintf("opec-%04d@pec.example.test", i))
		if kept := !at.Before(cut); (len(v) == 1) != kept {
			t.Errorf("virus item at %v: kept=%v, want %v", at, len(v) == 1, kept)
		}
	}
	mustVerify(t, s)

	// Purging again with the same cutoff is a no-op; the chain continues.
	if ne, nv, err := s.Purge(cut); ne != 0 || nv != 0 || err != nil {
		t.Errorf("second Purge = %d, %d, %v", ne, nv, err)
	}
	if err := s.Commit(acceptance(9, cut.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)

	// Purge everything: the log is empty and still verifies, and grows on.
	if ne, _, err := s.Purge(cut.Add(24 * time.Hour)); ne != 4 || err != nil {
		t.Errorf("full Purge = %d, %v; want 4", ne, err)
	}
	mustVerify(t, s)
	if err := s.Commit(acceptance(10, cut.Add(48*time.Hour))); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)
	if ev, _ := s.Events(store.Query{}); len(ev) != 2 || ev[0].ID != 7 {
		t.Errorf("after full purge and commit: %+v", ev)
	}
}

// Rows are purged as a prefix: an old row written after a newer one waits.
func TestPurgeOutOfOrderTimes(t *testing.T) {
	s, _ := openTemp(t)
	cut := t0.Add(time.Hour)
	for i, at := range []time.Time{t0, cut.Add(time.Minute), t0.Add(time.Minute)} {
		txn := acceptance(i, at)
		txn.Events = txn.Events[:1]
		if err := s.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	if ne, _, err := s.Purge(cut); ne != 1 || err != nil {
		t.Fatalf("Purge = %d, %v; want 1", ne, err)
	}
	mustVerify(t, s)
}

func TestPurgeOutbox(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 3; i++ {
		if err := s.Commit(acceptance(i, t0)); err != nil {
			t.Fatal(err)
		}
	}
	q, _ := s.DuePending(t0, 10)
	if err := s.MarkSent(q[0].ID, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(q[1].ID, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Purge(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM outbox").Scan(&n); err != nil || n != 2 {
		t.Errorf("outbox rows after purge = %d, %v; want 2 (sent late + pending)", n, err)
	}
	if d, _ := s.OutboxDepth(); d != 1 {
		t.Errorf("depth %d, want 1", d)
	}
}

func TestOutbox(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 3; i++ {
		if err := s.Commit(acceptance(i, t0)); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := s.OutboxDepth(); n != 3 {
		t.Fatalf("depth %d, want 3", n)
	}
	q, err := s.DuePending(t0, 10)
	if err != nil || len(q) != 3 {
		t.Fatalf("DuePending = %d, %v", len(q), err)
	}
	for i := 1; i < len(q); i++ {
		if q[i].ID <= q[i-1].ID {
			t.Errorf("not oldest first: %d after %d", q[i].ID, q[i-1].ID)
		}
	}
	if q, _ := s.DuePending(t0, 2); len(q) != 2 {
		t.Errorf("limit: got %d", len(q))
	}

	// Retry the first item in 5 minutes: it leaves the due list until then.
	first := q[0]
	if err := s.MarkRetry(first.ID, "451 try later", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	due, _ := s.DuePending(t0.Add(5*time.Minute-time.Nanosecond), 10)
	if len(due) != 2 || due[0].ID != q[1].ID {
		t.Errorf("before retry time: %d due (first %d), want 2 without %d", len(due), due[0].ID, first.ID)
	}
	due, _ = s.DuePending(t0.Add(5*time.Minute), 10)
	if len(due) != 3 || due[0].ID != first.ID || due[0].Attempts != 1 || !due[0].NextTry.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("at retry time: %+v", due)
	}

	// MarkSent removes it from the due list and logs a "sent" event.
	sentAt := t0.Add(6 * time.Minute)
	if err := s.MarkSent(first.ID, sentAt); err != nil {
		t.Fatal(err)
	}
	due, _ = s.DuePending(t0.Add(time.Hour), 10)
	if len(due) != 2 || due[0].ID == first.ID {
		t.Errorf("after MarkSent: %d due", len(due))
	}
	if n, _ := s.OutboxDepth(); n != 2 {
		t.Errorf("depth %d, want 2", n)
	}
	if err := s.MarkSent(first.ID, sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("second MarkSent = %v, want ErrNotPending", err)
	}
	if err := s.MarkRetry(first.ID, "x", sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("MarkRetry of a sent item = %v, want ErrNotPending", err)
	}
	if err := s.MarkSent(999, sentAt); !errors.Is(err, store.ErrNotPending) {
		t.Errorf("MarkSent(999) = %v, want ErrNotPending", err)
	}
	ev, _ := s.Events(store.Query{From: sentAt})
	want := store.Event{ID: 7, Time: sentAt, Point: "outbox", Type: "sent", Sender: first.MailFrom, Recipients: first.Rcpts, Related: []string{first.MessageID}}
	if len(ev) != 1 || !reflect.DeepEqual(ev[0], want) {
		t.Errorf("sent event = %+v, want %+v", ev, want)
	}
	mustVerify(t, s)
}

func TestDurableAcrossReopen(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Commit(acceptance(1, t0)); err != nil {
		t.Fatal(err)
	}
	q, _ := s.DuePending(t0, 10)
	if err := s.MarkRetry(q[0].ID, "down", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	id, h, _ := s.LogHead()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if id2, h2, _ := s2.LogHead(); id2 != id || !bytes.Equal(h, h2) {
		t.Errorf("head %d after reopen, want %d", id2, id)
	}
	if ev, _ := s2.Events(store.Query{}); len(ev) != 2 {
		t.Errorf("%d events after reopen", len(ev))
	}
	due, _ := s2.DuePending(t0.Add(time.Minute), 10)
	if len(due) != 1 || due[0].Attempts != 1 {
		t.Errorf("outbox after reopen: %+v", due)
	}
	mustVerify(t, s2)
	if err := s2.Commit(acceptance(2, t0)); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s2)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, path, want string
	}{
		{"empty", "", "empty database path"},
		{"no dir", filepath.Join(dir, "missing", "pec.db"), "does not exist"},
		{"is dir", dir, "is a directory"},
	} {
		if _, err := Open(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Open = %v, want %q", c.name, err, c.want)
		}
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, bytes.Repeat([]byte("not a database "), 100), 0o600)
	if _, err := Open(junk); err == nil || !strings.Contains(err.Error(), "not a SQLite database") {
		t.Errorf("junk: Open = %v", err)
	}
	if os.Geteuid() != 0 { // root ignores permissions
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o500)
		if _, err := Open(filepath.Join(ro, "pec.db")); err == nil || !strings.Contains(err.Error(), "user running the service") {
			t.Errorf("read-only dir: Open = %v", err)
		}
	}
	// A store from a newer program is refused.
	newer := filepath.Join(dir, "newer.db")
	s, err := Open(newer)
	if err != nil {
		t.Fatal(err)
	}
	s.db.Exec("PRAGMA user_version = 99")
	s.Close()
	if _, err := Open(newer); err == nil || !strings.Contains(err.Error(), "newer than this program") {
		t.Errorf("newer: Open = %v", err)
	}
	// Odd characters in the path.
	odd := filepath.Join(dir, "a?b#c%d.db")
	if s, err := Open(odd); err != nil {
		t.Errorf("odd path: %v", err)
	} else {
		s.Close()
		if _, err := os.Stat(odd); err != nil {
			t.Errorf("odd path not created as named: %v", err)
		}
	}
}

func TestConcurrentCommits(t *testing.T) {
	s, _ := openTemp(t)
	const n = 40
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) { errs <- s.Commit(acceptance(i, t0)) }(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if id, _, _ := s.LogHead(); id != 2*n {
		t.Errorf("head %d, want %d", id, 2*n)
	}
	mustVerify(t, s)
}

func BenchmarkCommit(b *testing.B) {
	s, _ := openTemp(b)
	txn := acceptance(1, t0)
	txn.Outbox[0].Data = bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 20*1024/74)
	b.SetBytes(int64(len(txn.Outbox[0].Data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Commit(txn); err != nil {
			b.Fatal(err)
		}
	}
}
