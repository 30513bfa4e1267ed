package storetest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// BenchCommits measures commit throughput: each operation is one access
// point transaction (two log rows and a 20 KB receipt in the outbox),
// committed by writers handles at once (one handle = one node, or one
// process on one machine). open opens a handle on one shared store.
func BenchCommits(b *testing.B, writers int, open func() store.Store) {
	handles := make([]store.Store, writers)
	for i := range handles {
		handles[i] = open()
		b.Cleanup(func() { handles[i].Close() })
	}
	txn := Acceptance(1, time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC))
	txn.Outbox[0].Data = bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 20*1024/74)
	b.SetBytes(int64(len(txn.Outbox[0].Data)))
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, h := range handles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := h.Commit(txn); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
	if bad, err := handles[0].VerifyLog(); bad != 0 || err != nil {
		b.Fatalf("VerifyLog after the benchmark = %d, %v", bad, err)
	}
}
