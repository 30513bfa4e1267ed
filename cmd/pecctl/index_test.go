package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/smime"
)

func TestIndex(t *testing.T) {
	f := newFixture(t)
	other := f.pki.Issue(otherProv, "posta-certificata@pec.other.test", time.Time{}, time.Time{}, true)
	ldif := filepath.Join(f.dir, "providers.ldif")
	write := func(otherDomains ...string) {
		t.Helper()
		b := index.TestLDIF(
			index.TestProvider{Name: provName, Domains: []string{provDom}, Certs: []*x509.Certificate{f.prov.Cert}},
			index.TestProvider{Name: otherProv, Domains: otherDomains, Certs: []*x509.Certificate{other.Cert}},
		)
		if err := os.WriteFile(ldif, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ourHash, otherHash := smime.CertSHA1(f.prov.Cert), smime.CertSHA1(other.Cert)

	// before any sync: show tells the operator what to do
	if code, _, errOut := f.run("index", "show"); code != 1 || !strings.Contains(errOut, "pecctl index sync") {
		t.Errorf("show before sync: exit %d, %q", code, errOut)
	}

	write("pec.other.test")
	code, out, errOut := f.run("index", "sync")
	if code != 0 {
		t.Fatalf("sync: exit %d: %s", code, errOut)
	}
	for _, s := range []string{
		"provider added: " + provName + " (domains " + provDom + "; certificate hashes " + ourHash + ")",
		"provider added: " + otherProv + " (domains pec.other.test; certificate hashes " + otherHash + ")",
		"synced: 2 providers, 2 changes",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("sync output lacks %q:\n%s", s, out)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "index-cache", index.CacheFileName)); err != nil {
		t.Errorf("cache not written: %v", err)
	}

	// a change at the source: the diff lines only
	write("pec.other.test", "PEC.Altro.example.test")
	code, out, _ = f.run("index", "sync")
	if code != 0 || !strings.Contains(out, otherProv+": managed domain added: pec.altro.example.test") || !strings.Contains(out, "1 changes") {
		t.Errorf("second sync: exit %d, %q", code, out)
	}
	// the Postfix TLS policy map follows the index (Aruba §7.3.3)
	policy := filepath.Join(f.dir, "index-cache", "tls_policy")
	if !strings.Contains(out, "TLS policy map "+policy+" updated: run postmap") {
		t.Errorf("second sync does not tell to postmap the changed TLS policy map:\n%s", out)
	}
	if b, err := os.ReadFile(policy); err != nil || !strings.HasSuffix(string(b),
		"\npec.altro.example.test encrypt\n"+provDom+" encrypt\npec.other.test encrypt\n") {
		t.Errorf("TLS policy map %q (%v)", b, err)
	}
	if code, out, _ = f.run("index", "sync"); code != 0 || strings.Contains(out, "TLS policy map") {
		t.Errorf("unchanged index: exit %d, the TLS policy map is reported changed:\n%s", code, out)
	}

	code, out, _ = f.run("index", "show")
	if code != 0 {
		t.Fatalf("show: exit %d", code)
	}
	for _, s := range []string{"2 providers", provName, "mailReceipt: posta-certificata@" + provDom, "domains:     pec.other.test, pec.altro.example.test",
		"certificate: " + ourHash + " (", "certificate: " + otherHash + " ("} {
		if !strings.Contains(out, s) {
			t.Errorf("show lacks %q:\n%s", s, out)
		}
	}

	// lookups; flags may come after the positional argument
	code, out, _ = f.run("index", "domain", "Luigi@PEC.ALTRO.example.test")
	if code != 0 || !strings.HasPrefix(out, otherProv+"\n") {
		t.Errorf("domain: exit %d, %q", code, out)
	}
	code, out, _ = runCmd("index", "-config", f.cfg, "domain", "ordinary.example.test")
	if code != 1 || !strings.Contains(out, "not in the providers' index") {
		t.Errorf("unknown domain: exit %d, %q", code, out)
	}
	colons := strings.ToUpper(ourHash[:2] + ":" + ourHash[2:4] + ":" + ourHash[4:])
	code, out, _ = f.run("index", "cert", colons)
	if code != 0 || !strings.HasPrefix(out, provName+"\n") {
		t.Errorf("cert: exit %d, %q", code, out)
	}
	if code, _, _ := f.run("index", "cert", strings.Repeat("0", 40)); code != 1 {
		t.Errorf("unknown cert: exit %d", code)
	}

	// the source fails: the cache is kept
	os.Remove(ldif)
	code, _, errOut = f.run("index", "sync")
	if code != 1 || !strings.Contains(errOut, "left unchanged") {
		t.Errorf("sync without source: exit %d, %q", code, errOut)
	}
	if code, _, _ := f.run("index", "domain", provDom); code != 0 {
		t.Errorf("cache lost after a failed sync")
	}

	for _, args := range [][]string{{"index"}, {"index", "domain"}, {"index", "show", "extra"}, {"index", "list"}} {
		if code, _, errOut := f.run(args...); code != 2 || !strings.Contains(errOut, "usage:") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}
