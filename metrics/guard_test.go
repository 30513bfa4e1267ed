package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// TestGuardSeriesAndHealth: the clock and suspension series with an
// injected kernel state and the real store; /healthz fails with the clock
// out of bound and stays 200 while suspended, saying so.
func TestGuardSeriesAndHealth(t *testing.T) {
	st, path := openStore(t)
	kernel := point.ClockState{Synchronized: true, MaxError: 250 * time.Millisecond}
	g := &guard.Guard{
		Clock:   &guard.Clock{Bound: time.Second, Log: quiet, Read: func() (point.ClockState, error) { return kernel, nil }},
		Service: &guard.Service{Store: st, TTL: time.Nanosecond, Log: quiet},
	}
	m := New(Options{Store: st, StorePath: path, Index: fakeIndex{ix: testIndex(t, 1), at: time.Now()}, Log: quiet})
	m.SetGuard(g)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	health := func(wantCode int, want ...string) {
		t.Helper()
		code, body := get(t, srv.URL+"/healthz")
		if code != wantCode {
			t.Errorf("/healthz %d, want %d\n%s", code, wantCode, body)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("/healthz body %q lacks %q", body, w)
			}
		}
	}

	g.Clock.Check()
	expect(t, scrape(t, m), "pec_clock_synchronized 1", "pec_clock_max_error_seconds 0.25", "pec_service_suspended 0")
	health(200, "ok", "service: active")

	kernel = point.ClockState{MaxError: 16 * time.Second} // what an idle kernel reports
	g.Clock.Check()
	expect(t, scrape(t, m), "pec_clock_synchronized 0", "pec_clock_max_error_seconds 16")
	health(503, "clock out of bound", "not synchronised")

	kernel = point.ClockState{Synchronized: true, MaxError: 10 * time.Millisecond}
	g.Clock.Check()
	since := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	if err := st.SetServiceState(store.ServiceState{Suspended: true, Reason: "manutenzione", Since: since, By: "root@node1"},
		store.Event{Time: since, Point: "service", Type: "sospensione-servizio", Sender: "root@node1", Subject: "manutenzione"}); err != nil {
		t.Fatal(err)
	}
	expect(t, scrape(t, m), "pec_service_suspended 1", "pec_clock_synchronized 1")
	health(200, "ok", "service: suspended since 2026-12-01T09:00:00Z by root@node1: manutenzione")
}
