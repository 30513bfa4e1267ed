package metrics

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

const (
	rulesFile     = "../packaging/prometheus/pec.rules.yml"
	dashboardFile = "../packaging/grafana/pec.json"
)

// externalNames are the series other parts of the project export (the
// clock guard and the suspended-service switch); the rules and the
// dashboard may name them.
var externalNames = []string{"pec_clock_max_error_seconds", "pec_clock_synchronized", "pec_service_suspended"}

// registeredNames returns the pec_ metric names a pecmilter endpoint with
// every source set exports (the vectors fed once so they appear), with
// the _bucket, _sum and _count series of histograms.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	st, path := openStore(t)
	m := New(Options{Store: st, StorePath: path, Index: fakeIndex{ix: testIndex(t, 1), at: time.Now()},
		Clamd: fakeClamd{version: "ClamAV 1.0.7/27479/Sat Nov 21 12:00:00 2026"}, Log: quiet})
	ix := testIndex(t, 2)
	m.AddStatus(StatusOptions{Store: st, SigningCert: pki().Issue("Our", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, true).Cert,
		Index: fakeIndex{ix: ix, at: time.Now()}})
	if err := RecordLogVerify(st, LogVerifyStatus{At: time.Now(), OK: true}); err != nil {
		t.Fatal(err)
	}
	if err := RecordLogArchive(st, LogArchiveStatus{Day: "2026-11-30", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	m.ObserveMilter(PointAccess, point.Decision{Txn: store.Txn{Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1)}}}, time.Millisecond)
	m.ObserveDelivery(lmtp.Report{Rcpts: []lmtp.RcptReport{{Outcome: "delivered"}}})
	m.NoticeUndeliverable("bounce", "avvenuta-consegna")
	m.OutboxResult(nil)
	m.ClamdError(nil)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType().String() == "HISTOGRAM" {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\bpec_[a-z0-9_]+`)

// checkExprs checks that every expression names at least one pec_ series
// and only series the code registers (or the external names).
func checkExprs(t *testing.T, what string, exprs []string) {
	t.Helper()
	names := registeredNames(t)
	if len(exprs) == 0 {
		t.Fatalf("%s: no expressions found", what)
	}
	for _, e := range exprs {
		used := metricName.FindAllString(e, -1)
		if len(used) == 0 {
			t.Errorf("%s: expression %q names no pec_ series", what, e)
		}
		for _, n := range used {
			if !names[n] && !slices.Contains(externalNames, n) {
				t.Errorf("%s: expression %q uses %s, which no collector registers", what, e, n)
			}
		}
	}
}

// Every panel of the Grafana dashboard queries series the code exports.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	checkExprs(t, dashboardFile, exprs)
	// the panels an operator looks at (issue: messages, latency,
	// receipts, outbox, timers, clamd, clock, certificates)
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"pec_messages_total", "pec_processing_seconds_bucket", "pec_receipts_total", "pec_outbox_depth",
		"pec_timers_due", "pec_clamd_up", "pec_clock_max_error_seconds", "pec_signing_certificate_days_left"} {
		if !strings.Contains(all, want) {
			t.Errorf("dashboard has no panel on %s", want)
		}
	}
}

// rulesExprs reads the expr: lines of the rules file (one line each).
func rulesExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(l), "expr:"); ok {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

func TestAlertRulesMetricsExist(t *testing.T) {
	checkExprs(t, rulesFile, rulesExprs(t))
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus)")
	}
	return p
}

// promtool accepts the rules, and its rule unit tests show the alerts
// firing on the series the exporter gives and staying quiet otherwise.
func TestAlertRulesPromtool(t *testing.T) {
	pt := promtool(t)
	if out, err := exec.Command(pt, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	abs, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := `rule_files:
  - ` + abs + `
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'pec_clamd_up{instance="mx1"}'
        values: '1 1 0 0 0 0 0'
      - series: 'pec_clamd_signatures_age_seconds{instance="mx1"}'
        values: '21000+60x30'
      - series: 'pec_signing_certificate_days_left{instance="mx1"}'
        values: '29.5x30'
      - series: 'pec_outbox_oldest_age_seconds{instance="mx1"}'
        values: '0 0 60+60x30'
      - series: 'pec_timers_due{instance="mx1"}'
        values: '0 0 3x30'
      - series: 'pec_service_suspended{instance="mx1"}'
        values: '0 0 1x30'
      - series: 'pec_log_verify_ok{instance="mx1"}'
        values: '1 1 0x30'
      - series: 'pec_clock_synchronized{instance="mx1"}'
        values: '1x30'
      - series: 'pec_clock_max_error_seconds{instance="mx1"}'
        values: '0.01 0.01 0.01 2 2 2'
      - series: 'pec_notices_undeliverable_total{instance="mx1",stage="bounce",kind="avvenuta-consegna"}'
        values: '0 0 0 1 1 1'
    alert_rule_test:
      - eval_time: 1m
        alertname: PecClamdDown
        exp_alerts: []
      - eval_time: 5m
        alertname: PecClamdDown
        exp_alerts:
          - exp_labels: {severity: critical, instance: mx1}
            exp_annotations:
              summary: "clamd does not answer on mx1"
              description: "Every message is tempfailed while clamd is down. Check systemctl status clamav-daemon and [clamd] address of pec.toml."
      - eval_time: 5m
        alertname: PecAntivirusDatabaseOld
        exp_alerts: []
      - eval_time: 30m
        alertname: PecSigningCertificateExpiring
        exp_alerts:
          - exp_labels: {severity: warning, instance: mx1}
            exp_annotations:
              summary: "our PEC signing certificate expires in 29.5 days"
              description: "Request the new certificate from the CA, install it in [signing] and publish its hash in the providers' index (pecctl index entry) before the old one expires."
      - eval_time: 10m
        alertname: PecOutboxStuck
        exp_alerts: []
      - eval_time: 30m
        alertname: PecOutboxStuck
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "an outbox item waits for 29m 0s"
              description: "Receipts and notices are not reaching Postfix's re-injection listener: pecctl outbox list shows the last error; check [reinject] address and Postfix."
      - eval_time: 10m
        alertname: PecTimerBacklog
        exp_alerts: []
      - eval_time: 20m
        alertname: PecTimerBacklog
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "3 delivery-timer notices are overdue"
              description: "The 12 h / 24 h notices run in pecmilter each minute: check that pecmilter runs and its log for timer errors."
      - eval_time: 1m
        alertname: PecUndeliverableReceipts
        exp_alerts: []
      - eval_time: 5m
        alertname: PecUndeliverableReceipts
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "1 receipts or notices could not be delivered in the last hour"
              description: "pecctl log search --type undeliverable lists them with the reason."
      - eval_time: 5m
        alertname: PecServiceSuspended
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: "the PEC service is suspended"
              description: "Submissions get non-acceptances and incoming mail is tempfailed until pecctl service resume."
      - eval_time: 3m
        alertname: PecLogVerifyFailed
        exp_alerts:
          - exp_labels: {severity: critical}
            exp_annotations:
              summary: "pecctl log verify found the event log damaged"
              description: "Do not repair the log in place: keep the copy, compare with the daily signed archives (pecctl log archive --verify) and backups, and report the incident."
      - eval_time: 2m
        alertname: PecClockUnsynchronized
        exp_alerts: []
      - eval_time: 5m
        alertname: PecClockUnsynchronized
        exp_alerts:
          - exp_labels: {severity: critical, instance: mx1}
            exp_annotations:
              summary: "the clock of mx1 is not within 1 s of UTC"
              description: "The points refuse to sign while the clock is off. Check chronyc tracking (or ntpq -p) and the network path to the time servers."
`
	dir := t.TempDir()
	tf := filepath.Join(dir, "pec.rules.test.yml")
	if err := os.WriteFile(tf, []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pt, "test", "rules", tf).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
