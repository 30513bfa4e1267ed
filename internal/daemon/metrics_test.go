package daemon

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
)

// A daemon's metrics endpoint exports the status series (monitoring, Aruba
// §6.6): our signing certificate's and the index providers' days left,
// the outbox's oldest item, the timer backlog; and the sync writes the
// Postfix TLS policy map (Aruba §7.3.3).
func TestDaemonStatusMetrics(t *testing.T) {
	dir := t.TempDir()
	pki := testpki.New("pec.example.test", "pec.other.test")
	us := pki.Issue("Example PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, true)
	other := pki.Issue("Other PEC S.r.l.", "posta-certificata@pec.other.test", time.Time{}, time.Time{}, true)
	root, cert, key := pki.WriteFiles(dir, us)
	ldif := filepath.Join(dir, "providers.ldif")
	if err := os.WriteFile(ldif, index.TestLDIF(
		index.TestProvider{Name: "Example PEC S.p.A.", Domains: []string{"pec.example.test"}, Certs: []*x509.Certificate{us.Cert}},
		index.TestProvider{Name: "Other PEC S.r.l.", Domains: []string{"pec.other.test"}, Certs: []*x509.Certificate{other.Cert}},
	), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfgPath := filepath.Join(dir, "pec.toml")
	conf := fmt.Sprintf(`[provider]
name = "Example PEC S.p.A."
domain = "pec.example.test"
[signing]
certificate = %q
key = %q
trusted_roots = [%q]
[milter]
metrics = %q
[reinject]
address = "unix:%s"
[store]
path = %q
[index]
ldif = %q
`, cert, key, root, addr, filepath.Join(dir, "reinject.sock"), filepath.Join(dir, "pec.db"), ldif)
	if err := os.WriteFile(cfgPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := Start(ctx, cfgPath, func(c *config.Config) string { return c.Milter.Metrics }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var body string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics endpoint: %v", err)
		}
	}
	days := time.Until(us.Cert.NotAfter).Hours() / 24
	if v, ok := seriesValue(body, "pec_signing_certificate_days_left"); !ok || v > days+0.02 || v < days-0.02 {
		t.Errorf("pec_signing_certificate_days_left = %v (present %v), want about %.2f", v, ok, days)
	}
	for _, want := range []string{
		`pec_index_certificate_days_left{provider="Other PEC S.r.l."} `,
		"pec_index_last_sync_timestamp_seconds ",
		"pec_outbox_oldest_age_seconds 0",
		"pec_timers_due 0",
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "index", "tls_policy")); err != nil || !strings.Contains(string(b), "\npec.other.test encrypt\n") {
		t.Errorf("TLS policy map after start: %q, %v", b, err)
	}
}

func seriesValue(body, name string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}
