// Package load measures the access point under load through the real
// chain (Postfix submission with SASL, pecmilter, clamd, outbox,
// re-injection): run with
//
//	go test -run '^$' -bench . -benchtime 300x ./integration/load
//
// Each iteration submits one message; the benchmark ends when every
// envelope and acceptance receipt has reached the sink (bounded: it stops
// by itself after b.N messages or fails after a timeout).
package load

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/testenv"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
)

func BenchmarkSubmission(b *testing.B) { submission(b, "") }

// BenchmarkSubmissionPostgres is BenchmarkSubmission with the store in a
// local PostgreSQL (fsync and synchronous_commit on) instead of SQLite.
func BenchmarkSubmissionPostgres(b *testing.B) {
	testenv.NeedPostgres(b)
	testenv.Need(b, "postfix", "dovecot", "clamd")
	testenv.NeedRoot(b, "Postfix runs only as root")
	pg := testenv.StartPostgresWith(b, true)
	submission(b, pg.NewDatabase(b))
}

func submission(b *testing.B, storeURL string) {
	w := pectest.NewWorld(b, "pec-a.example.test", "pec-b.example.test")
	sink := pectest.StartSink(b)
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}, SinkAll: sink,
		Extra: "\n[limits]\nmessages_per_hour = 1000000\n", StoreURL: storeURL})
	w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", IndexOnly: true})
	w.Start()
	body := "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n" + strings.Repeat(strings.Repeat("0123456789", 7)+"\r\n", 280) // 20 KB
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				raw := fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: load %d\r\nMessage-ID: <load-%d@client.example.test>\r\n%s", mario, luigi, i, i, body)
				if err := a.Send(mario, []string{luigi}, []byte(raw)); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	accepted := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d submissions failed, first: %v\n%s", failed.Load(), firstErr.Load(), a.ProcLog("pecmilter"))
	}
	sink.Wait(b, 2*b.N, time.Duration(b.N)*time.Second+30*time.Second, nil)
	all := time.Since(start)
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted/s")
	b.ReportMetric(float64(b.N)/all.Seconds(), "delivered+receipt/s")
}
