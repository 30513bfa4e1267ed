package index

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
)

// A validly signed but older LDIF (a replayed copy) must not replace a
// newer one: it could bring back a revoked certificate.
func TestSyncerRefusesRollback(t *testing.T) {
	pki := testpki.New("pec.example.test")
	signer := pki.Issue("Index Publisher", "indice@pec.example.test", time.Time{}, time.Time{}, false)
	prov := pki.Issue("Provider A", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	sign := func(domains ...string) []byte {
		der, err := SignLDIF(TestLDIF(TestProvider{Name: "Provider A", Domains: domains, Certs: []*x509.Certificate{prov.Cert}}), signer.Key, signer.Cert, signer.Chain)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	older := sign("pec.example.test")
	time.Sleep(1100 * time.Millisecond) // the CMS signing time has one-second resolution
	newer := sign("pec.example.test", "nuovo.example.test")

	dir := t.TempDir()
	file := filepath.Join(dir, "index.p7m")
	s := &Syncer{Source: FileSource{Path: file, Signed: true, Roots: pki.Pool().Pool()}, CacheDir: filepath.Join(dir, "cache")}
	os.WriteFile(file, newer, 0o644)
	if _, _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, older, 0o644)
	if _, _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("older signed LDIF accepted: %v", err)
	}
	ix, _, err := s.Load()
	if err != nil || !ix.IsCertified("x@nuovo.example.test") {
		t.Fatalf("the cache lost the newer index: %v", err)
	}
	// the same file again is fine (not older)
	os.WriteFile(file, newer, 0o644)
	if _, _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}
