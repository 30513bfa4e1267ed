package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/smime"
)

// index hash prints the providerCertificateHash; with --ldif the two lines
// of an index entry, which the index reads back to the same certificate.
func TestIndexHash(t *testing.T) {
	f := newFixture(t)
	pemFile := filepath.Join(f.dir, "signing-cert.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.prov.Cert.Raw}), 0o644)
	code, out, errOut := runCmd("index", "hash", pemFile) // no configuration needed
	if code != 0 || strings.TrimSpace(out) != smime.CertSHA1(f.prov.Cert) {
		t.Fatalf("index hash: %d %q %q, want %s", code, out, errOut, smime.CertSHA1(f.prov.Cert))
	}
	code, out, _ = runCmd("index", "hash", "--ldif", pemFile)
	if code != 0 || !strings.HasPrefix(out, "providerCertificateHash: "+smime.CertSHA1(f.prov.Cert)+"\n") {
		t.Fatalf("index hash --ldif: %d %q", code, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(l) > 76 {
			t.Errorf("LDIF line over 76 columns: %q", l)
		}
	}
	ldif := "dn: o=postacert\nobjectClass: top\nobjectClass: organization\no: postacert\n\n" +
		"dn: providerName=" + provName + ",o=postacert\nobjectClass: top\nobjectClass: provider\nproviderName: " + provName + "\n" +
		out + "mailReceipt: posta-certificata@" + provDom + "\nmanagedDomains: " + provDom + "\n"
	ix, err := index.ParseLDIF(strings.NewReader(ldif))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := ix.ByCertHash(smime.CertSHA1(f.prov.Cert))
	if !ok || len(p.Certificates) != 1 || !p.Certificates[0].Equal(f.prov.Cert) || len(ix.Warnings()) != 0 {
		t.Fatalf("entry read back: %v %+v %v", ok, p, ix.Warnings())
	}
	if code, _, errOut := runCmd("index", "hash", filepath.Join(f.dir, "missing.pem")); code != 1 || !strings.Contains(errOut, "missing.pem") {
		t.Errorf("missing file: %d %q", code, errOut)
	}
}

// config check: errors for what would stop the daemons or make our
// messages unrecognised; warnings for clamd and Dovecot.
func TestConfigCheck(t *testing.T) {
	f := newFixture(t)
	ldif := filepath.Join(f.dir, "providers.ldif")
	code, out, _ := f.run("config", "check")
	if code != 1 || !strings.Contains(out, "error: providers' index") {
		t.Fatalf("no index file: exit %d\n%s", code, out)
	}

	other := f.pki.Issue("Other", "posta-certificata@"+provDom, time.Time{}, time.Time{}, false)
	os.WriteFile(ldif, index.TestLDIF(index.TestProvider{Name: provName, Domains: []string{provDom}, Certs: []*x509.Certificate{other.Cert}}), 0o644)
	code, out, _ = f.run("config", "check")
	if code != 1 || !strings.Contains(out, "does not list our signing certificate "+smime.CertSHA1(f.prov.Cert)) || !strings.Contains(out, "pecctl index hash") {
		t.Fatalf("our certificate not listed: exit %d\n%s", code, out)
	}

	os.WriteFile(ldif, index.TestLDIF(index.TestProvider{Name: provName, Domains: []string{provDom}, Certs: []*x509.Certificate{f.prov.Cert}}), 0o644)
	code, out, _ = f.run("config", "check")
	if code != 0 || !strings.Contains(out, "ok: providers' index: 1 providers") || !strings.Contains(out, "warning: clamd") ||
		!strings.Contains(out, "warning: Dovecot LMTP") || strings.Contains(out, "error:") {
		t.Fatalf("good configuration: exit %d\n%s", code, out)
	}

	// a retention below the legal minimum: refused, or a warning with the override
	short := filepath.Join(f.dir, "short.toml")
	b0, _ := os.ReadFile(f.cfg)
	shortConf := regexp.MustCompile(`retention = "[0-9]+h"`).ReplaceAll(b0, []byte(`retention = "720h"`))
	os.WriteFile(short, shortConf, 0o644)
	if code, out, _ := runCmd("config", "check", "-config", short); code != 1 || !strings.Contains(out, "shorter than the 30 months") {
		t.Fatalf("one month of retention: exit %d\n%s", code, out)
	}
	os.WriteFile(short, bytes.Replace(shortConf, []byte(`retention = "720h"`), []byte("retention = \"720h\"\nretention_below_legal_minimum = true"), 1), 0o644)
	if code, out, _ := runCmd("config", "check", "-config", short); code != 0 || !strings.Contains(out, "warning: [store] retention 720h0m0s is shorter") {
		t.Fatalf("one month of retention with the override: exit %d\n%s", code, out)
	}

	// [mailboxes] passwd_file in a directory that does not exist
	mb := filepath.Join(f.dir, "mb.toml")
	os.WriteFile(mb, append(append([]byte{}, mustRead(t, f.cfg)...), "\n[mailboxes]\npasswd_file = \"/nonexistent/pec/users\"\n"...), 0o644)
	if code, out, _ := runCmd("config", "check", "-config", mb); code != 1 || !strings.Contains(out, "install -d -o pec -g dovecot -m 2750 /nonexistent/pec") {
		t.Fatalf("passwd_file without its directory: exit %d\n%s", code, out)
	}

	// a broken file: exit 1 with the loader's message
	bad := filepath.Join(f.dir, "bad.toml")
	b, _ := os.ReadFile(f.cfg)
	os.WriteFile(bad, bytes.Replace(b, []byte("[provider]"), []byte("[provider]\nnmae = \"x\""), 1), 0o644)
	if code, out, _ := runCmd("config", "check", "-config", bad); code != 1 || !strings.Contains(out, "unknown setting") {
		t.Fatalf("bad file: exit %d\n%s", code, out)
	}
	if code, _, _ := runCmd("config", "frobnicate"); code != 2 {
		t.Errorf("usage error: exit %d", code)
	}
}
