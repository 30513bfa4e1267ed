package daemon

import (
	"context"
	"log/slog"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/store"
)

// startGuard starts the clock guard, reading the kernel's state every
// guard.ClockPeriod until ctx is done, and the service state's cache.
func startGuard(ctx context.Context, cfg *config.Config, st store.Service, log *slog.Logger) *guard.Guard {
	bound, _ := cfg.Signing.ClockBound() // checked at load
	g := &guard.Guard{
		Clock:   &guard.Clock{Bound: bound, Log: log},
		Service: &guard.Service{Store: st, Log: log},
	}
	if bound == 0 {
		log.Warn("[signing] clock_max_error = \"off\": the clock guard is off and receipts may carry a wrong time; only for test machines")
	}
	g.Clock.Check() // the first verdict before any message
	go g.Clock.Run(ctx, guard.ClockPeriod)
	return g
}
