package service

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
)

// On each sync the services write the Postfix smtp_tls_policy_maps
// source (Aruba §7.3.3): "DOMAIN encrypt" for every domain of the index,
// sorted; Postfix's postmap builds its table from it and answers
// "encrypt" for each provider's domain and nothing for others.
func TestTLSPolicyMapForPostfix(t *testing.T) {
	testenv.Need(t, "postmap")
	postmap, _ := exec.LookPath("postmap")
	// a Postfix sandbox (its main.cf is what postmap reads) configured as
	// postfix-examples/main.cf.pec says
	dir := t.TempDir()
	ldif := filepath.Join(dir, "providers.ldif")
	pki := testpki.New("example.test")
	cert := func(name string) []*x509.Certificate {
		return []*x509.Certificate{pki.Issue(name, "posta-certificata@"+strings.ToLower(name)+".example.test", time.Time{}, time.Time{}, true).Cert}
	}
	write := func(ps ...index.TestProvider) {
		if err := os.WriteFile(ldif, index.TestLDIF(ps...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := index.TestProvider{Name: "Zeta", Domains: []string{"pec.zeta.example.test", "legal.zeta.example.test"}, Certs: cert("Zeta")}
	b := index.TestProvider{Name: "Alfa", Domains: []string{"pec.alfa.example.test"}, Certs: cert("Alfa")}
	write(a, b)
	cfg := &config.Config{Index: config.Index{LDIF: ldif, CacheDir: filepath.Join(dir, "cache")},
		Store: config.Store{Path: filepath.Join(dir, "pec.db")}}
	path := TLSPolicyPath(cfg)
	if path != filepath.Join(dir, "cache", "tls_policy") {
		t.Fatalf("default path %s", path)
	}
	pf := testenv.StartPostfix(t, testenv.PostfixConfig{Main: []string{"smtp_tls_policy_maps = hash:" + path}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := OpenIndex(ctx, cfg, time.Hour, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no TLS policy map after the first sync: %v", err)
	}
	var lines []string
	for _, ln := range strings.Split(strings.TrimSpace(string(got)), "\n") {
		if !strings.HasPrefix(ln, "#") {
			lines = append(lines, ln)
		}
	}
	want := []string{"legal.zeta.example.test encrypt", "pec.alfa.example.test encrypt", "pec.zeta.example.test encrypt"}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("TLS policy map:\n%s\nwant (sorted):\n%s", got, strings.Join(want, "\n"))
	}

	lookup := func(domain string) (string, int) {
		t.Helper()
		out, err := exec.Command(postmap, "-c", pf.ConfDir, "-q", domain, "hash:"+path).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out)), code
	}
	run := func() {
		t.Helper()
		if out, err := exec.Command(postmap, "-c", pf.ConfDir, "hash:"+path).CombinedOutput(); err != nil {
			t.Fatalf("postmap hash:%s: %v\n%s", path, err, out)
		}
	}
	run()
	for _, d := range []string{"pec.alfa.example.test", "legal.zeta.example.test", "pec.zeta.example.test"} {
		if v, code := lookup(d); v != "encrypt" || code != 0 {
			t.Errorf("postmap -q %s: %q (exit %d), want encrypt", d, v, code)
		}
	}
	if v, code := lookup("mail.example.org"); code != 1 || v != "" {
		t.Errorf("postmap -q of a domain outside the index: %q (exit %d), want not found (exit 1)", v, code)
	}

	// a provider leaves the index: the next sync rewrites the file
	// (renamed into place: no temporary file is left)
	write(b)
	if _, err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	run()
	if _, code := lookup("pec.zeta.example.test"); code != 1 {
		t.Errorf("a provider gone from the index still has a TLS policy (exit %d)", code)
	}
	if v, _ := lookup("pec.alfa.example.test"); v != "encrypt" {
		t.Errorf("pec.alfa.example.test: %q after the resync", v)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tls_policy") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}

	// "off": no file written
	cfg.Index.TLSPolicyMap = "off"
	if p := TLSPolicyPath(cfg); p != "" {
		t.Errorf("off: path %q", p)
	}
}
