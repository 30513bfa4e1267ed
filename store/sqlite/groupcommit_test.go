package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// Writes that wait while another is being committed are committed together,
// in one transaction; a write that fails is rolled back alone and gets its
// own error, the others are kept.
func TestGroupCommit(t *testing.T) {
	s := openScratch(t)
	const writers, failing = 10, 3
	errFail := errors.New("this write fails")
	var mu sync.Mutex
	txs := map[*sql.Tx]bool{}
	results := make([]error, writers)
	s.mu.Lock() // a batch in progress: the writers below wait for it
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = s.write(func(tx *sql.Tx) error {
				mu.Lock()
				txs[tx] = true
				mu.Unlock()
				if _, err := tx.Exec("INSERT INTO scratch (n) VALUES (?)", i); err != nil {
					return err
				}
				if i == failing {
					return errFail
				}
				return nil
			})
		}()
	}
	waitForWriters(t, s, writers)
	s.mu.Unlock()
	wg.Wait()
	if len(txs) != 1 {
		t.Fatalf("the %d waiting writes ran in %d transactions, want 1", writers, len(txs))
	}
	for i, err := range results {
		if i == failing && !errors.Is(err, errFail) || i != failing && err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	var rows, bad int
	if err := s.db.QueryRow("SELECT COUNT(*), COUNT(CASE WHEN n = ? THEN 1 END) FROM scratch", failing).Scan(&rows, &bad); err != nil {
		t.Fatal(err)
	}
	if rows != writers-1 || bad != 0 {
		t.Fatalf("%d rows, %d of the failed write: want %d and 0", rows, bad, writers-1)
	}
}

// Commits from many goroutines of one process keep the log's chain whole
// (the batch runs them one after the other in one transaction).
func TestGroupCommitKeepsChain(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				if err := s.Commit(storetest.Acceptance(g*100+i, at)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if bad, err := s.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog = %d, %v", bad, err)
	}
	n, err := s.Events(store.Query{})
	if err != nil || len(n) != 16*20*2 {
		t.Fatalf("%d events, %v; want %d", len(n), err, 16*20*2)
	}
}

// BenchmarkConcurrentCommits: 16 goroutines of one process committing an
// acceptance each (go test -run '^$' -bench ConcurrentCommits ./store/sqlite):
// what group commit saves under the load of 16 concurrent sessions.
func BenchmarkConcurrentCommits(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "pec.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	b.SetParallelism(8) // 16 goroutines on 2 cores
	var next sync.Mutex
	i := 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			i++
			n := i
			next.Unlock()
			if err := s.Commit(storetest.Acceptance(n, at)); err != nil {
				b.Error(fmt.Errorf("commit %d: %w", n, err))
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

// More writers waiting than one batch takes: every one is committed, in
// batches of at most maxBatch, and none waits for ever.
func TestGroupCommitManyWaiting(t *testing.T) {
	s := openScratch(t)
	writers := 2*maxBatch + 5
	var mu sync.Mutex
	txs := map[*sql.Tx]bool{}
	s.mu.Lock()
	done := make(chan error, writers)
	for i := range writers {
		go func() {
			done <- s.write(func(tx *sql.Tx) error {
				mu.Lock()
				txs[tx] = true
				mu.Unlock()
				_, err := tx.Exec("INSERT INTO scratch (n) VALUES (?)", i)
				return err
			})
		}()
	}
	waitForWriters(t, s, writers)
	s.mu.Unlock()
	timeout := time.After(30 * time.Second)
	for range writers {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("writes still waiting after 30 s")
		}
	}
	var rows int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM scratch").Scan(&rows); err != nil || rows != writers {
		t.Fatalf("%d rows (%v), want %d", rows, err, writers)
	}
	if len(txs) != 3 {
		t.Fatalf("%d writes in %d transactions, want 3 (batches of %d)", writers, len(txs), maxBatch)
	}
}

// A write whose fn panics (a programming error) does not leave the others
// of its batch waiting nor the store locked: they get an error, the panic
// goes on in the goroutine that ran the batch, and later writes commit.
func TestGroupCommitPanic(t *testing.T) {
	s := openScratch(t)
	insert := func(n int) func(tx *sql.Tx) error {
		return func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT INTO scratch (n) VALUES (?)", n)
			return err
		}
	}
	type outcome struct {
		err      error
		panicked bool
	}
	call := func(fn func(tx *sql.Tx) error, out chan<- outcome) {
		defer func() {
			if r := recover(); r != nil {
				out <- outcome{panicked: true}
			}
		}()
		out <- outcome{err: s.write(fn)}
	}
	s.mu.Lock()
	out := make(chan outcome, 2)
	go call(func(tx *sql.Tx) error {
		insert(1)(tx)
		panic("bug in a write")
	}, out)
	go call(insert(2), out)
	waitForWriters(t, s, 2)
	s.mu.Unlock()
	panics := 0
	for range 2 {
		select {
		case o := <-out:
			if o.panicked {
				panics++
			} else if o.err == nil {
				t.Fatal("a write of the batch that panicked reported committed")
			}
		case <-time.After(15 * time.Second):
			t.Fatal("a write of the batch is still waiting 15 s after the panic")
		}
	}
	if panics != 1 {
		t.Fatalf("the panic surfaced %d times, want once", panics)
	}
	if err := s.write(insert(3)); err != nil {
		t.Fatalf("a write after the panic: %v", err)
	}
	var rows int
	if err := s.db.QueryRow("SELECT COUNT(*) FROM scratch").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows (%v), want only the write after the panic", rows, err)
	}
}

// openScratch opens a store with a table the tests' writes insert into.
func openScratch(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if _, err := s.db.Exec("CREATE TABLE scratch (n INTEGER)"); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitForWriters waits until n writes wait for the batch in progress.
func waitForWriters(t *testing.T, s *Store, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		s.waitingMu.Lock()
		waiting := len(s.waiting)
		s.waitingMu.Unlock()
		if waiting == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writes waiting", waiting, n)
		}
	}
}
