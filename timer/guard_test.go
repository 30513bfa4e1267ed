package timer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/timer"
)

// TestClockOutOfBoundSignsNothing: with the clock guard up, a due notice
// is not signed (its time would be wrong); it is queued at the first pass
// with the clock back within bound.
func TestClockOutOfBoundSignsNothing(t *testing.T) {
	b := newBench(t)
	b.clock = t0.Add(13 * time.Hour)
	problem := "the system clock is not synchronised to UTC"
	r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return b.clock }, ClockProblem: func() string { return problem }}
	n, err := r.RunOnce(context.Background())
	if n != 0 || err == nil || !strings.Contains(err.Error(), problem) {
		t.Fatalf("RunOnce with the clock out of bound = %d, %v; want 0 and an error naming the problem", n, err)
	}
	if d, _ := b.st.OutboxDepth(); d != 0 {
		t.Fatalf("%d items queued with the clock out of bound", d)
	}
	problem = ""
	b.want(b.at(13*time.Hour), false)
}
