package clamd

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
)

// StreamLimitAtLeast tells, without sending the data, whether clamd takes
// a stream of a given size; clamd stays usable after the probe.
func TestStreamLimitAtLeast(t *testing.T) {
	t.Parallel()
	c := testenv.StartClamdWith(t, testenv.ClamdOptions{StreamMaxLength: "1M"})
	ctx := context.Background()
	for _, cl := range clients(c) {
		for n, want := range map[int64]bool{1 << 20: true, 1<<20 + 1: false, 100 << 20: false} {
			start := time.Now()
			got, err := cl.StreamLimitAtLeast(ctx, n, 500*time.Millisecond)
			if err != nil || got != want {
				t.Errorf("%s: %d bytes: %v, %v; want %v", cl.Network, n, got, err, want)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("%s: %d bytes: probe took %v", cl.Network, n, time.Since(start))
			}
		}
		if res, err := cl.Scan(ctx, bytes.NewReader([]byte("clean"))); err != nil || res.Infected {
			t.Errorf("%s: scan after the probes: %+v %v", cl.Network, res, err)
		}
	}
	// nothing listening: an error, never "big enough"
	down := &Client{Network: "tcp", Addr: "127.0.0.1:1", Timeout: time.Second}
	if ok, err := down.StreamLimitAtLeast(ctx, 10, time.Second); ok || err == nil {
		t.Errorf("clamd down: %v %v", ok, err)
	}
}

func TestSignatureDate(t *testing.T) {
	at, ok := SignatureDate("ClamAV 1.0.7/27479/Sat Dec  7 09:37:56 2024")
	if !ok || !at.Equal(time.Date(2024, 12, 7, 9, 37, 56, 0, time.Local)) {
		t.Errorf("official database: %v %v", at, ok)
	}
	for _, v := range []string{"ClamAV 1.4.6", "ClamAV 1.0.7/27479", "ClamAV 1.0.7/27479/yesterday"} {
		if _, ok := SignatureDate(v); ok {
			t.Errorf("%q: a date read from nothing", v)
		}
	}
}
