package index

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pecgo/pec/smime"
)

// slapd is a throwaway OpenLDAP server on 127.0.0.1 holding o=postacert
// with the RFC 6109 schema (testdata/rfc6109.schema).
type slapd struct {
	URL    string
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{}
}

const (
	slapdRootDN = "cn=admin,o=postacert"
	slapdRootPW = "secret"
)

func findFirst(paths ...string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// startSlapd loads seed with slapadd and starts slapd; it is stopped (by
// its PID) in Cleanup. The test is skipped only if slapd is not installed.
func startSlapd(t *testing.T, seed []byte) *slapd {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		bin = findFirst("/usr/sbin/slapd", "/usr/local/libexec/slapd", "/usr/libexec/slapd")
	}
	if bin == "" {
		t.Skip("slapd not installed")
	}
	slapadd, err := exec.LookPath("slapadd")
	if err != nil {
		slapadd = findFirst(filepath.Join(filepath.Dir(bin), "slapadd"), "/usr/sbin/slapadd")
	}
	if slapadd == "" {
		t.Fatal("slapd is installed but slapadd is not")
	}
	core := findFirst("/etc/ldap/schema/core.schema", "/etc/openldap/schema/core.schema", "/usr/local/etc/openldap/schema/core.schema")
	if core == "" {
		t.Fatal("slapd is installed but core.schema was not found")
	}
	schema, err := filepath.Abs("testdata/rfc6109.schema")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	var modules string
	if mp := findFirst("/usr/lib/ldap/back_mdb.la", "/usr/lib/ldap/back_mdb.so"); mp != "" {
		modules = "modulepath " + filepath.Dir(mp) + "\nmoduleload back_mdb\n"
	}
	conf := filepath.Join(dir, "slapd.conf")
	confText := fmt.Sprintf(`include %s
include %s
%spidfile %s/slapd.pid
argsfile %s/slapd.args
database mdb
maxsize 10485760
suffix "o=postacert"
rootdn "%s"
rootpw %s
directory %s/data
index objectClass eq
index managedDomains,providerCertificateHash eq
`, core, schema, modules, dir, dir, slapdRootDN, slapdRootPW, dir)
	if err := os.WriteFile(conf, []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	seedPath := filepath.Join(dir, "seed.ldif")
	if err := os.WriteFile(seedPath, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapadd, "-f", conf, "-l", seedPath).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &slapd{URL: "ldap://" + addr, exited: make(chan struct{})}
	// -d 0 keeps slapd in the foreground, so cmd.Process is slapd itself.
	s.cmd = exec.Command(bin, "-f", conf, "-h", "ldap://"+addr+"/", "-d", "0")
	s.cmd.Stdout = &s.stderr
	s.cmd.Stderr = &s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("slapd exited: %s", s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd not listening on %s after 10 s: %s", addr, s.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop terminates slapd by its PID and waits for it.
func (s *slapd) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func ldapSeed(f *fixture) []byte {
	sec := TestProvider{Name: "Alpha PEC S.p.A.", Unit: "Ambiente Secondario", MailReceipt: "ricevute@sec.alpha.example.test",
		Domains: []string{"sec.alpha.example.test"}, Certs: []*x509.Certificate{f.alphaNew.Cert}}
	return TestLDIF(f.alpha, sec, f.betaP)
}

// FetchLDAP against a real slapd: every provider comes back with its
// certificates (providerCertificate;binary) and hashes.
func TestFetchLDAP(t *testing.T) {
	f := getFixture(t)
	srv := startSlapd(t, ldapSeed(f))
	ctx := context.Background()

	for _, cfg := range []LDAPConfig{
		{URL: srv.URL, Timeout: 5 * time.Second},
		{URL: srv.URL, BaseDN: "o=postacert", BindDN: slapdRootDN, Password: slapdRootPW, Timeout: 5 * time.Second},
	} {
		ix, err := FetchLDAP(ctx, cfg)
		if err != nil {
			t.Fatalf("FetchLDAP(bind %q): %v\nslapd: %s", cfg.BindDN, err, srv.stderr.String())
		}
		if ix.Len() != 3 || len(ix.Warnings()) != 0 {
			t.Fatalf("Len = %d, warnings %q", ix.Len(), ix.Warnings())
		}
		if ix.LDIFLocationURL() != "https://igpec.example.test/igpec.ldif.p7m" {
			t.Errorf("root LDIFLocationURL = %q", ix.LDIFLocationURL())
		}
		alpha, ok := ix.ByDomain("x@PEC.alpha.example.test")
		if !ok || alpha.Unit != "" || len(alpha.Certificates) != 2 || len(alpha.CertHashes) != 2 {
			t.Fatalf("alpha = %+v", alpha)
		}
		for i, c := range []*x509.Certificate{f.alphaOld.Cert, f.alphaNew.Cert} {
			if !alpha.Certificates[i].Equal(c) && !alpha.Certificates[1-i].Equal(c) {
				t.Errorf("alpha certificate %d missing", i)
			}
			if p, err := ix.ByCertificate(c); err != nil || p.Name != "Alpha PEC S.p.A." || p.Unit != "" {
				t.Errorf("ByCertificate(alpha %d) = %+v, %v", i, p, err)
			}
		}
		sec, ok := ix.ByDomain("sec.alpha.example.test")
		if !ok || sec.Unit != "Ambiente Secondario" || sec.MailReceipt != "ricevute@sec.alpha.example.test" {
			t.Errorf("secondary = %+v", sec)
		}
		beta, err := ix.ByCertificate(f.beta.Cert)
		if err != nil || beta.CertHashes[0] != smime.CertSHA1(f.beta.Cert) || !beta.Certificates[0].Equal(f.beta.Cert) {
			t.Errorf("beta = %+v, %v", beta, err)
		}
	}

	if _, err := FetchLDAP(ctx, LDAPConfig{URL: srv.URL, BindDN: slapdRootDN, Password: "wrong", Timeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), "bind") {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := FetchLDAP(ctx, LDAPConfig{URL: srv.URL, BaseDN: "o=elsewhere", Timeout: 5 * time.Second}); err == nil {
		t.Error("wrong base: no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := FetchLDAP(cctx, LDAPConfig{URL: srv.URL}); err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("cancelled context: %v", err)
	}
}

// Syncer over LDAP: the first sync caches the LDAP-fetched index as LDIF
// (certificates included); with slapd stopped the sync fails and Load
// still serves the last good index.
func TestSyncerLDAP(t *testing.T) {
	f := getFixture(t)
	srv := startSlapd(t, ldapSeed(f))
	s, logs := newSyncer(t, LDAPSource{LDAPConfig{URL: srv.URL, Timeout: 3 * time.Second}}, time.Date(2026, 5, 4, 3, 0, 0, 0, time.UTC))

	ix, lines, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "provider added: Alpha PEC S.p.A. (") ||
		!strings.HasPrefix(lines[1], "provider added: Alpha PEC S.p.A. [Ambiente Secondario]") ||
		!strings.HasPrefix(lines[2], "provider added: Beta Posta S.r.l.") {
		t.Fatalf("diff lines = %q", lines)
	}
	cached, _, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if d := Diff(ix, cached); len(d) != 0 || cached.Len() != 3 {
		t.Fatalf("cache differs from the fetched index: %q", d)
	}
	if _, err := cached.ByCertificate(f.alphaOld.Cert); err != nil {
		t.Errorf("cached index cannot check signatures: %v", err)
	}

	srv.stop()
	if _, _, err := s.Sync(context.Background()); err == nil {
		t.Fatal("Sync with slapd stopped succeeded")
	}
	cached, at, err := s.Load()
	if err != nil || cached.Len() != 3 || !at.Equal(time.Date(2026, 5, 4, 3, 0, 0, 0, time.UTC)) {
		t.Fatalf("Load after failure = %v, %v, %v", cached, at, err)
	}
	if _, err := cached.ByCertificate(f.beta.Cert); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("failure not logged:\n%s", logs)
	}
}
