package metrics

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/store"
)

// The status series read the real SQLite store, the certificates and the
// documents pecctl records (log verify, log archive).
func TestStatusSeries(t *testing.T) {
	st, _ := openStore(t)
	now := time.Now().Add(time.Hour)
	m := New(Options{Log: quiet})
	sign := pki().Issue("Our Provider", "posta-certificata@pec.example.test", now.Add(-time.Hour), now.Add(20*24*time.Hour+time.Hour), true)
	expiring := pki().Issue("Provider X", "posta-certificata@x.example.test", now.Add(-time.Hour), now.Add(10*24*time.Hour+time.Hour), true)
	later := pki().Issue("Provider X", "posta-certificata@x.example.test", now.Add(-time.Hour), now.Add(300*24*time.Hour), true)
	ix, err := index.ParseLDIF(strings.NewReader(string(index.TestLDIF(index.TestProvider{Name: "Provider X", Domains: []string{"x.example.test"},
		Certs: []*x509.Certificate{later.Cert, expiring.Cert}}))))
	if err != nil {
		t.Fatal(err)
	}
	synced := time.Unix(1_800_000_000, 0)
	m.AddStatus(StatusOptions{Store: st, SigningCert: sign.Cert, Index: fakeIndex{ix: ix, at: synced}, Now: func() time.Time { return now }})

	body := scrape(t, m)
	expect(t, body,
		"pec_signing_certificate_days_left 20.04",
		`pec_index_certificate_days_left{provider="Provider X"} 10.04`,
		"pec_index_last_sync_timestamp_seconds 1.8e+09",
		"pec_outbox_oldest_age_seconds 0",
		"pec_timers_due 0",
	)
	// nothing recorded yet: no verify or archive series (the alert on
	// absence catches a timer that never ran)
	absent(t, body, "pec_log_verify_ok ", "pec_log_archive_last_day_timestamp_seconds ")

	// an outbox item queued now, a recipient sent 13 h ago with no receipt
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1)},
		Track: []store.Tracked{{PECID: "opec.1@pec.example.test", Rcpt: "u@x.example.test", Sent: now.Add(-13 * time.Hour), Tx: []byte("{}")}}}); err != nil {
		t.Fatal(err)
	}
	if err := RecordLogVerify(st, LogVerifyStatus{At: synced.Add(time.Minute), OK: false, Detail: "row 7: hash mismatch"}); err != nil {
		t.Fatal(err)
	}
	if err := RecordLogArchive(st, LogArchiveStatus{Day: "2026-11-30", At: synced}); err != nil {
		t.Fatal(err)
	}
	// a re-run of an older day does not move the last day back
	if err := RecordLogArchive(st, LogArchiveStatus{Day: "2026-11-02", At: synced}); err != nil {
		t.Fatal(err)
	}
	body = scrape(t, m)
	if age := value(t, body, "pec_outbox_oldest_age_seconds"); age < 3500 || age > 3700 {
		t.Errorf("pec_outbox_oldest_age_seconds = %v, want about 3600", age)
	}
	expect(t, body,
		"pec_timers_due 1",
		"pec_log_verify_ok 0",
		"pec_log_verify_last_run_timestamp_seconds 1.80000006e+09",
		"pec_log_archive_last_day_timestamp_seconds 1.7959968e+09", // 2026-11-30T00:00Z
	)
	if err := RecordLogVerify(st, LogVerifyStatus{At: synced.Add(2 * time.Minute), OK: true}); err != nil {
		t.Fatal(err)
	}
	expect(t, scrape(t, m), "pec_log_verify_ok 1")
}
