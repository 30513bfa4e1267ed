package sqlite

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// BenchmarkCommits: commit throughput with one writer and with two
// processes writing one file (go test -run '^$' -bench Commits ./store/sqlite).
func BenchmarkCommits(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(map[int]string{1: "writers=1", 2: "writers=2"}[w], func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "pec.db")
			storetest.BenchCommits(b, w, func() store.Store {
				s, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}

// BenchmarkOutboxCycle: one generated message through the outbox as the
// sender sees it: committed with its log row, claimed, marked sent
// (go test -run '^$' -bench OutboxCycle ./store/sqlite). The size is the
// message's: a complete delivery receipt carries the whole original.
func BenchmarkOutboxCycle(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		b.Run(map[int]string{10 << 10: "size=10KB", 1 << 20: "size=1MB"}[size], func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "pec.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([]byte, size)
			for i := range data {
				data[i] = 'a' + byte(i%26)
			}
			owner := store.ClaimOwner{Host: "bench", PID: 1, Instance: "1", Proc: "bench"}
			t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				at := t0.Add(time.Duration(i) * time.Second)
				id := fmt.Sprintf("<r%d@pec.example.test>", i)
				if err := s.Commit(store.Txn{Events: []store.Event{{Time: at, Point: store.AtAccess, Type: store.TypeAccettazione, PECID: id, Related: []string{id}}},
					Outbox: []store.Outgoing{{MailFrom: "posta-certificata@pec.example.test", Rcpts: []string{"mario@pec.example.test"}, Data: data, MessageID: id, Kind: "accettazione"}}}); err != nil {
					b.Fatal(err)
				}
				items, err := s.Claim(owner, at, time.Minute, 10)
				if err != nil || len(items) != 1 || len(items[0].Data) != size {
					b.Fatalf("claim: %v, %d items", err, len(items))
				}
				if err := s.MarkSent(items[0].ID, at); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
