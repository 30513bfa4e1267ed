package store

import (
	"math"
	"testing"
	"time"
)

// A zero bound is open: no start, no end, not the zero time's undefined
// UnixNano.
func TestNSBounds(t *testing.T) {
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		from, to time.Time
		lo, hi   int64
	}{
		{time.Time{}, time.Time{}, math.MinInt64, math.MaxInt64},
		{at, time.Time{}, at.UnixNano(), math.MaxInt64},
		{time.Time{}, at, math.MinInt64, at.UnixNano()},
		{at, at.Add(time.Hour), at.UnixNano(), at.Add(time.Hour).UnixNano()},
	} {
		if lo, hi := NSBounds(c.from, c.to); lo != c.lo || hi != c.hi {
			t.Errorf("NSBounds(%v, %v) = %d, %d; want %d, %d", c.from, c.to, lo, hi, c.lo, c.hi)
		}
	}
}
