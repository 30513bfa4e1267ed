package lmtp_test

import (
	"sync/atomic"
	"testing"

	"github.com/pecgo/pec/lmtp"
)

// TestServerClockOutOfBound: with the clock guard up, nothing reaches
// Dovecot and no receipt is signed; Postfix gets a 451 and its retry,
// with the clock back within bound, is delivered with its receipt.
func TestServerClockOutOfBound(t *testing.T) {
	var problem atomic.Value // the server reads it in its own goroutine
	problem.Store("the system clock is not synchronised to UTC")
	r := newRig(t, 0, func(s *lmtp.Server) { s.ClockProblem = func() string { return problem.Load().(string) } })
	raw := r.b.Envelope(t, r.b.A, "", luigi)
	if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 451 {
		t.Fatalf("with the clock out of bound: %d, want 451", c[luigi])
	}
	if data, stored := r.dc.counts(); data != 0 || stored != 0 {
		t.Fatalf("Dovecot began %d DATA and stored %d, want none", data, stored)
	}
	if got := r.receipts(t); len(got) != 0 {
		t.Fatalf("receipts %v signed with the clock out of bound", got)
	}
	problem.Store("")
	if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 250 {
		t.Fatalf("with the clock back: %d", c[luigi])
	}
	if got := r.receipts(t); got[luigi] != 1 {
		t.Fatalf("receipts %v, want one for %s", got, luigi)
	}
}
