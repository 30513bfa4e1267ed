package metrics

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeClamd struct {
	down    bool
	version string
}

func (f fakeClamd) Ping(context.Context) error {
	if f.down {
		return errors.New("clamd at unix:/run/clamav/clamd.ctl unreachable")
	}
	return nil
}

func (f fakeClamd) Version(context.Context) (string, error) { return f.version, nil }

// /healthz and the scrape ask clamd: down is unhealthy, and the age of
// the signatures is exported when VERSION tells it.
func TestClamdHealthAndGauges(t *testing.T) {
	st, path := openStore(t)
	loaded := fakeIndex{ix: testIndex(t, 1), at: time.Now()}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.Local)
	m := New(Options{Store: st, StorePath: path, Index: loaded, Log: quiet, Now: func() time.Time { return now }})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Fatalf("no clamd set (pecdeliver): /healthz %d", code)
	}
	absent(t, scrape(t, m), "pec_clamd_up")

	m.SetClamd(fakeClamd{version: "ClamAV 1.0.7/27479/Sat Nov 21 12:00:00 2026"})
	if code, body := get(t, srv.URL+"/healthz"); code != 200 {
		t.Fatalf("clamd up: /healthz %d %s", code, body)
	}
	body := scrape(t, m)
	expect(t, body, "pec_clamd_up 1", "pec_clamd_signatures_age_seconds 172800")

	m.SetClamd(fakeClamd{version: "ClamAV 1.4.6"}) // local signatures only: no date
	body = scrape(t, m)
	expect(t, body, "pec_clamd_up 1")
	absent(t, body, "pec_clamd_signatures_age_seconds")

	m.SetClamd(fakeClamd{down: true})
	code, hb := get(t, srv.URL+"/healthz")
	if code != 503 || !strings.Contains(hb, "clamd not available") || !strings.Contains(hb, "unreachable") {
		t.Fatalf("clamd down: /healthz %d %q", code, hb)
	}
	expect(t, scrape(t, m), "pec_clamd_up 0")
}

func TestNoticeUndeliverableCounter(t *testing.T) {
	m := New(Options{Log: quiet})
	m.NoticeUndeliverable("bounce", "avvenuta-consegna")
	m.NoticeUndeliverable("reinject", "accettazione")
	m.NoticeUndeliverable("reinject", "something-else")
	expect(t, scrape(t, m),
		`pec_notices_undeliverable_total{kind="avvenuta-consegna",stage="bounce"} 1`,
		`pec_notices_undeliverable_total{kind="accettazione",stage="reinject"} 1`,
		`pec_notices_undeliverable_total{kind="ordinaria",stage="reinject"} 1`)
}
