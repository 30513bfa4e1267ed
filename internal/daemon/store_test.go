package daemon

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/testenv"
)

// TestOpenStoreWaitsForPostgres: a node started before its database waits
// for it (logging why mail is tempfailed) instead of exiting, which would
// make systemd give up after a few restarts; a refusal that waiting does
// not cure (no such database) is returned at once.
func TestOpenStoreWaitsForPostgres(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	pg.Stop()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		st, err := openStore(context.Background(), config.Store{URL: url}, log)
		if err == nil {
			st.Close()
		}
		done <- err
	}()
	time.Sleep(1500 * time.Millisecond)
	pg.Start(t)
	if err := <-done; err != nil {
		t.Fatalf("openStore: %v", err)
	}
	if time.Since(start) < time.Second || !strings.Contains(logs.String(), "store unreachable at start-up") {
		t.Fatalf("opened after %v without waiting; log:\n%s", time.Since(start), logs)
	}
	start = time.Now()
	if _, err := openStore(context.Background(), config.Store{URL: pg.URL("nosuchdb")}, log); err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("missing database: %v after %v, want an error at once", err, time.Since(start))
	}
}
