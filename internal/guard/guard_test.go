package guard

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

func TestFromTimex(t *testing.T) {
	cases := []struct {
		name   string
		state  int
		status int64
		want   bool
	}{
		{"synchronised", unix.TIME_OK, unix.STA_PLL, true},
		{"STA_UNSYNC set", unix.TIME_OK, unix.STA_PLL | unix.STA_UNSYNC, false},
		{"TIME_ERROR (an idle machine: no NTP daemon)", unix.TIME_ERROR, unix.STA_UNSYNC, false},
		{"TIME_ERROR without the bit", unix.TIME_ERROR, 0, false},
	}
	for _, c := range cases {
		st := FromTimex(c.state, c.status, 16000000, 500)
		if st.Synchronized != c.want || st.MaxError != 16*time.Second || st.EstError != 500*time.Microsecond {
			t.Errorf("%s: %+v", c.name, st)
		}
	}
}

// TestKernel reads the real kernel: whatever it says, in read-only mode
// and without privileges, without an error.
func TestKernel(t *testing.T) {
	st, err := Kernel()
	if err != nil {
		t.Fatal(err)
	}
	if st.MaxError < 0 || st.EstError < 0 {
		t.Fatalf("%+v", st)
	}
	t.Logf("kernel clock state: %+v", st)
}

func TestClockVerdictAndLog(t *testing.T) {
	var buf bytes.Buffer
	st := point.ClockState{Synchronized: true, MaxError: 200 * time.Millisecond}
	var err error
	reads := 0
	c := &Clock{Bound: time.Second, Log: slog.New(slog.NewTextHandler(&buf, nil)),
		Read: func() (point.ClockState, error) { reads++; return st, err }}
	if p := c.Problem(); p != "" || reads != 1 {
		t.Fatalf("synchronised: %q after %d reads", p, reads)
	}
	if c.Problem(); reads != 1 {
		t.Fatal("Problem read the kernel again: only Check (the periodic goroutine) does")
	}
	st = point.ClockState{MaxError: 16 * time.Second}
	if p := c.Check(); !strings.Contains(p, "not synchronised") || c.Problem() != p {
		t.Fatalf("unsynchronised: %q", p)
	}
	c.Check() // still out: logged once
	if n := strings.Count(buf.String(), "clock out of bound"); n != 1 {
		t.Fatalf("%d log lines for one episode:\n%s", n, &buf)
	}
	if got, _ := c.State(); got != st {
		t.Fatalf("State = %+v, want %+v", got, st)
	}
	st, err = point.ClockState{}, errors.New("operation not permitted")
	if p := c.Check(); !strings.Contains(p, "operation not permitted") {
		t.Fatalf("unreadable: %q", p)
	}
	st, err = point.ClockState{Synchronized: true, MaxError: 10 * time.Millisecond}, nil
	if p := c.Check(); p != "" || !strings.Contains(buf.String(), "clock back within bound") {
		t.Fatalf("back: %q\n%s", p, &buf)
	}
	off := &Clock{Read: func() (point.ClockState, error) { return point.ClockState{MaxError: 16 * time.Second}, nil }}
	if p := off.Problem(); p != "" {
		t.Fatalf("guard off: %q", p)
	}
	if s, _ := off.State(); s.MaxError != 16*time.Second {
		t.Fatalf("guard off still reads the state for the metrics: %+v", s)
	}
}

type fakeService struct {
	st    store.ServiceState
	err   error
	reads int
}

func (f *fakeService) ServiceState() (store.ServiceState, error) { f.reads++; return f.st, f.err }
func (f *fakeService) SetServiceState(st store.ServiceState, _ store.Event) error {
	f.st = st
	return nil
}

func TestServiceCache(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	f := &fakeService{}
	g := &Guard{Clock: &Clock{}, Service: &Service{Store: f, TTL: 3 * time.Second, Now: func() time.Time { return now }}}
	if s, _, err := g.Suspended(); s || err != nil || f.reads != 1 {
		t.Fatalf("active: %v %v after %d reads", s, err, f.reads)
	}
	f.st = store.ServiceState{Suspended: true, Reason: "manutenzione", Since: now}
	now = now.Add(2 * time.Second)
	if s, _, _ := g.Suspended(); s || f.reads != 1 {
		t.Fatalf("within the TTL the cached state is used: %v, %d reads", s, f.reads)
	}
	now = now.Add(time.Second)
	if s, why, _ := g.Suspended(); !s || why != "manutenzione" || f.reads != 2 {
		t.Fatalf("after the TTL: %v %q, %d reads", s, why, f.reads)
	}
	// a failed read is not cached, and fails closed
	now = now.Add(3 * time.Second)
	f.err = errors.New("database is locked")
	if _, _, err := g.Suspended(); err == nil {
		t.Fatal("a failed read gave no error")
	}
	f.err = nil
	f.st = store.ServiceState{}
	if s, _, err := g.Suspended(); s || err != nil || f.reads != 4 {
		t.Fatalf("after the failure: %v %v, %d reads", s, err, f.reads)
	}
}
