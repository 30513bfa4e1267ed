package build_test

import (
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/verify"
)

// originalOfSize is the fixture with an attachment making it about n bytes
// (base64 in 76-column lines, as mail clients send it).
func originalOfSize(n int) string {
	line := strings.Repeat("QUJD", 19) + "\r\n"
	return strings.Replace(original, "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n",
		strings.Repeat(line, n/len(line)), 1)
}

// peak samples the heap while fn runs and returns the highest in-use heap
// above what was in use before.
func peak(fn func()) uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var max atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > max.Load() {
				max.Store(m.HeapInuse - base)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	}()
	fn()
	close(done)
	wg.Wait()
	return max.Load()
}

func benchEnvelope(b *testing.B, size int) {
	f := newFixture(b)
	raw := []byte(originalOfSize(size))
	o, err := build.ParseOriginal(raw)
	if err != nil {
		b.Fatal(err)
	}
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	var worst uint64
	for i := 0; i < b.N; i++ {
		p := peak(func() {
			m, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
			if err != nil {
				b.Fatal(err)
			}
			_ = m.Bytes() // the whole message, as it goes on the wire
		})
		worst = max(worst, p)
	}
	b.ReportMetric(float64(worst)/float64(len(raw)), "peak/size")
}

// Building and signing the transport envelope (one RSA-2048 signature).
func BenchmarkEnvelope10KB(b *testing.B) { benchEnvelope(b, 10<<10) }
func BenchmarkEnvelope1MB(b *testing.B)  { benchEnvelope(b, 1<<20) }
func BenchmarkEnvelope30MB(b *testing.B) { benchEnvelope(b, 30<<20) }

func benchVerify(b *testing.B, size int) {
	f := newFixture(b)
	o, _ := build.ParseOriginal([]byte(originalOfSize(size)))
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
	m, _ := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
	raw := m.Bytes()
	pool := f.pki.Pool()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	var worst uint64
	for i := 0; i < b.N; i++ {
		worst = max(worst, peak(func() {
			if r := verify.Message(raw, pool); !r.Valid() {
				b.Fatal(r.Err)
			}
		}))
	}
	b.ReportMetric(float64(worst)/float64(len(raw)), "peak/size")
}

// Verifying a transport envelope: parse, daticert, CMS, chain.
func BenchmarkVerify10KB(b *testing.B) { benchVerify(b, 10<<10) }
func BenchmarkVerify1MB(b *testing.B)  { benchVerify(b, 1<<20) }
func BenchmarkVerify30MB(b *testing.B) { benchVerify(b, 30<<20) }

// One acceptance: the transport envelope plus the acceptance receipt.
func BenchmarkAcceptance1MB(b *testing.B) {
	f := newFixture(b)
	o, _ := build.ParseOriginal([]byte(originalOfSize(1 << 20)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := o.Tx(f.a.NewIDAt(at), o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
		if _, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.a.Accettazione(at, tx); err != nil {
			b.Fatal(err)
		}
	}
}
