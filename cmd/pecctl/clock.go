package main

import (
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/point"
)

// checkClock is config check's report on the clock guard: the kernel's
// state against [signing] clock_max_error, as the daemons judge it.
func checkClock(cfg *config.Config, ok, warn func(string, ...any)) {
	bound, _ := cfg.Signing.ClockBound() // checked at load
	st, err := guard.Kernel()
	switch p := point.ClockProblem(st, err, bound); {
	case p != "":
		warn("clock: %s; until then the points refuse to sign", p)
	case bound == 0 && err != nil:
		warn("clock guard off ([signing] clock_max_error = \"off\"); the kernel's clock state cannot be read here: %v", err)
	case bound == 0:
		warn("clock guard off ([signing] clock_max_error = \"off\"; kernel: synchronised %v, maximum error %v): test machines only", st.Synchronized, st.MaxError)
	default:
		ok("clock synchronised, maximum error %v (bound %v)", st.MaxError, bound)
	}
}
