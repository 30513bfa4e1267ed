package daemon

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

// A daemon records health samples in its store until it stops; a store
// that fails the check gives unhealthy samples naming why.
func TestRecordHealth(t *testing.T) {
	dir := t.TempDir()
	st, err := sqlite.Open(filepath.Join(dir, "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	d := &Daemon{Cfg: &config.Config{Store: config.Store{Dir: dir}}, Store: st, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	done := make(chan struct{})
	go func() { d.recordHealth(ctx, 20*time.Millisecond); close(done) }()
	time.Sleep(150 * time.Millisecond)
	cancel()
	<-done
	got, err := st.HealthSamples(start, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 3 {
		t.Fatalf("%d samples in 150 ms at 20 ms", len(got))
	}
	for _, s := range got {
		if !s.OK || !strings.Contains(s.Node, ":"+dir+"/") {
			t.Errorf("sample %+v: want healthy, node host:%s/program", s, dir)
		}
	}
	n := len(got)
	time.Sleep(60 * time.Millisecond)
	if got, _ := st.HealthSamples(start, time.Now()); len(got) != n {
		t.Errorf("samples recorded after the daemon stopped: %d, then %d", n, len(got))
	}
	var _ store.Health = st
}
