package daemon

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/store"
)

// HealthEvery is how often a daemon records a health sample in the store:
// twice a minute, so that every minute of service has one even when a
// check is slow. pecctl report counts the minutes with a healthy sample
// (availability) and lists the runs without one (incidents).
const HealthEvery = 30 * time.Second

// recordHealth records, every interval until ctx is done, whether the
// daemon can take mail: the metrics' health check when the endpoint is
// on (store, index, clamd), else a store ping. A sample that cannot be
// written (the store is down) is itself the record of the outage: its
// minute has no healthy sample.
func (d *Daemon) recordHealth(ctx context.Context, every time.Duration) {
	h, ok := d.Store.(store.Health)
	if !ok {
		return
	}
	node := service.NodeName(d.Cfg) + "/" + filepath.Base(os.Args[0])
	failing := false
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		var err error
		if d.Metrics != nil {
			err = d.Metrics.Health()
		} else {
			err = d.Store.Ping()
		}
		s := store.HealthSample{Node: node, At: time.Now(), OK: err == nil}
		if err != nil {
			s.Detail = err.Error()
		}
		if rerr := h.RecordHealth(s); rerr != nil {
			if !failing {
				d.Log.Warn("cannot record the health sample in the store: the minutes until it works again count as unavailable in pecctl report", "error", rerr)
			}
			failing = true
		} else if failing {
			d.Log.Info("health samples recorded again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
