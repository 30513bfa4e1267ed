package service

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/store/sqlite"
)

type countingSource struct {
	n    atomic.Int32
	ldif []byte
	fail atomic.Bool
}

func (s *countingSource) Fetch(ctx context.Context) (*index.Index, error) {
	s.n.Add(1)
	time.Sleep(20 * time.Millisecond) // a slow source: the others arrive meanwhile
	if s.fail.Load() {
		return nil, errors.New("source down")
	}
	return index.ParseLDIF(bytes.NewReader(s.ldif))
}

// TestClusterIndexFetchedOnce: nodes of a cluster asking for the index at
// the same time get it from one fetch of the source; after a day one
// fetch refreshes it for all; a failed fetch leaves the copy and lets
// another node try.
func TestClusterIndexFetchedOnce(t *testing.T) {
	pki := testpki.New("pec-a.example.test")
	id := pki.Issue("Provider A", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	src := &countingSource{ldif: index.TestLDIF(index.TestProvider{Name: "Provider A", Domains: []string{"pec-a.example.test"}, Certs: []*x509.Certificate{id.Cert}})}
	path := filepath.Join(t.TempDir(), "pec.db")
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	nodes := make([]*ClusterSource, 4)
	for i := range nodes {
		st, err := sqlite.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		nodes[i] = &ClusterSource{Source: src, Store: st, Holder: string(rune('a' + i)),
			Now: func() time.Time { return time.Unix(0, clock.Load()) }}
	}
	fetchAll := func() (ok int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ix, err := n.Fetch(context.Background())
				if err == nil && ix.Len() == 1 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return ok
	}
	fetchAll()
	if n := src.n.Load(); n != 1 {
		t.Fatalf("source fetched %d times by 4 nodes, want 1", n)
	}
	if ok := fetchAll(); ok != 4 {
		t.Fatalf("%d nodes got the cluster's copy, want 4", ok)
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("source fetched %d times, want still 1", n)
	}
	clock.Add(int64(25 * time.Hour))
	if ok := fetchAll(); ok != 4 {
		t.Fatalf("%d nodes got the index after a day, want 4", ok)
	}
	if n := src.n.Load(); n != 2 {
		t.Fatalf("source fetched %d times after a day, want 2", n)
	}
	// the source down: the day-old copy is still served, and each node in
	// turn may try the source (the lease is given back after a failure)
	src.fail.Store(true)
	clock.Add(int64(25 * time.Hour))
	for _, n := range nodes {
		if ix, err := n.Fetch(context.Background()); err == nil {
			t.Fatalf("fetch with the source down and the copy old gave %v, want the error (the Syncer keeps its copy)", ix.Len())
		}
	}
	if n := src.n.Load(); n != 6 {
		t.Fatalf("source tried %d times, want 6 (each node once)", n)
	}
}
