// Package guard reads the provider-wide state that stops the points from
// signing (point.Gate): the kernel's clock synchronisation, read on a
// short period, and the service state (suspended or active, Aruba manual
// §9.7.7) in the store, read through a short cache so that `pecctl
// service suspend|resume` takes effect on every process and node without
// a restart.
package guard

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// ClockPeriod is how often the daemons read the kernel's clock state.
const ClockPeriod = 5 * time.Second

// ServiceTTL is how long a read of the service state is used: a suspend
// or resume takes effect everywhere within it.
const ServiceTTL = 3 * time.Second

func micro(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// Clock is the clock guard: the last kernel state read and its verdict
// (point.ClockProblem).
type Clock struct {
	// Read reads the kernel's state; nil is Kernel. Tests inject states.
	Read func() (point.ClockState, error)
	// Bound is the largest maximum error that may sign; <= 0 turns the
	// guard off (the state is still read and exported).
	Bound time.Duration
	Log   *slog.Logger

	mu      sync.Mutex
	read    bool
	st      point.ClockState
	err     error
	problem string
}

// Check reads the state now, keeps it, and logs each change of verdict.
func (c *Clock) Check() string {
	read := c.Read
	if read == nil {
		read = Kernel
	}
	st, err := read()
	p := point.ClockProblem(st, err, c.Bound)
	c.mu.Lock()
	first, was := !c.read, c.problem
	c.read, c.st, c.err, c.problem = true, st, err, p
	c.mu.Unlock()
	switch {
	case p != "" && (first || was == ""):
		c.log().Error("clock out of bound: the points refuse to sign (SMTP tempfail, no receipt) until it is back",
			"problem", p, "synchronized", st.Synchronized, "max_error", st.MaxError, "est_error", st.EstError, "bound", c.Bound)
	case p == "" && was != "":
		c.log().Info("clock back within bound: signing again", "max_error", st.MaxError, "bound", c.Bound)
	}
	return p
}

// Run checks every period (default ClockPeriod) until ctx is done.
func (c *Clock) Run(ctx context.Context, period time.Duration) {
	if period <= 0 {
		period = ClockPeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		c.Check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Problem is the verdict of the last read ("" when the clock may sign);
// the first call reads the state.
func (c *Clock) Problem() string {
	c.mu.Lock()
	read, p := c.read, c.problem
	c.mu.Unlock()
	if !read {
		return c.Check()
	}
	return p
}

// State is the last state read (read now on the first call).
func (c *Clock) State() (point.ClockState, error) {
	c.Problem()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st, c.err
}

func (c *Clock) log() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// Service is the service state read through a cache of TTL.
type Service struct {
	Store store.Service
	TTL   time.Duration    // default ServiceTTL
	Now   func() time.Time // default time.Now
	Log   *slog.Logger

	mu   sync.Mutex
	at   time.Time
	st   store.ServiceState
	seen bool
}

// State returns the service state, read from the store at most once per
// TTL. A failed read is not cached: the caller fails closed and the next
// call asks again.
func (s *Service) State() (store.ServiceState, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	ttl := s.TTL
	if ttl <= 0 {
		ttl = ServiceTTL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen && now.Sub(s.at) < ttl && !now.Before(s.at) {
		return s.st, nil
	}
	st, err := s.Store.ServiceState()
	if err != nil {
		return store.ServiceState{}, err
	}
	if (s.seen && st.Suspended != s.st.Suspended) || (!s.seen && st.Suspended) {
		if st.Suspended {
			s.log().Warn("service suspended: the access point issues only non-acceptances, the incoming point tempfails every message",
				"reason", st.Reason, "since", st.Since, "by", st.By)
		} else {
			s.log().Info("service resumed", "since", st.Since, "by", st.By)
		}
	}
	s.st, s.at, s.seen = st, now, true
	return st, nil
}

func (s *Service) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Guard is both guards; it implements point.Gate.
type Guard struct {
	Clock   *Clock
	Service *Service
}

// ClockProblem implements point.Gate.
func (g *Guard) ClockProblem() string { return g.Clock.Problem() }

// Suspended implements point.Gate.
func (g *Guard) Suspended() (bool, string, error) {
	st, err := g.Service.State()
	return st.Suspended, st.Reason, err
}

// ClockState is the last kernel state read.
func (g *Guard) ClockState() (point.ClockState, error) { return g.Clock.State() }

// ServiceState is the service state (cached).
func (g *Guard) ServiceState() (store.ServiceState, error) { return g.Service.State() }
