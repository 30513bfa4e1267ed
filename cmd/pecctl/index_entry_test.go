package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// pecctl index entry builds our entry from the configuration; the index
// reader (plain and signed, through the Syncer's FileSource, as the other
// providers will read it) finds us by each managed domain and by the
// certificate hash.
func TestIndexEntry(t *testing.T) {
	f := newFixture(t)
	conf, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte("domain = \""+provDom+"\"\n"),
		[]byte("domain = \""+provDom+"\"\nmanaged_domains = [\""+provDom+"\", \"Legal.Example.test\"]\nmail_receipt = \"ricevute@"+provDom+"\"\n"), 1)
	if err := os.WriteFile(f.cfg, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	next := f.pki.Issue(provName, "posta-certificata@"+provDom, time.Now(), time.Now().Add(3*365*24*time.Hour), true)
	nextPEM := filepath.Join(f.dir, "next.pem")
	if err := os.WriteFile(nextPEM, testpki.PEM(next.Cert), 0o644); err != nil {
		t.Fatal(err)
	}

	check := func(t *testing.T, ix *index.Index, wantCerts int) {
		t.Helper()
		if ix.Len() != 1 {
			t.Fatalf("%d providers read back, want 1", ix.Len())
		}
		for _, d := range []string{provDom, "legal.example.test"} {
			p, ok := ix.ByDomain(d)
			if !ok {
				t.Fatalf("the reader does not find %s", d)
			}
			if p.Name != provName || p.MailReceipt != "ricevute@"+provDom {
				t.Errorf("%s: %q mailReceipt %q", d, p.Name, p.MailReceipt)
			}
			if len(p.Certificates) != wantCerts || len(p.CertHashes) != wantCerts {
				t.Errorf("%d certificates, %d hashes, want %d", len(p.Certificates), len(p.CertHashes), wantCerts)
			}
		}
		// what the incoming point of another provider does with our messages
		if p, err := ix.ByCertificate(f.prov.Cert); err != nil || p.Name != provName {
			t.Errorf("ByCertificate(our signing certificate) = %v, %v", p, err)
		}
		if _, ok := ix.ByCertHash(smime.CertSHA1(f.prov.Cert)); !ok {
			t.Error("providerCertificateHash of the signing certificate missing")
		}
	}

	code, out, errOut := f.run("index", "entry")
	if code != 0 {
		t.Fatalf("index entry: exit %d: %s", code, errOut)
	}
	ix, err := index.ParseLDIF(strings.NewReader(out))
	if err != nil {
		t.Fatalf("the entry does not parse: %v\n%s", err, out)
	}
	check(t, ix, 1)

	// signed, with the next certificate of a renewal and our URL
	signed := filepath.Join(f.dir, "entry.ldif.p7m")
	code, out, errOut = f.run("index", "entry", "--sign", "--out", signed, "--cert", nextPEM, "--url", "https://pec.example.test/entry.ldif.p7m")
	if code != 0 || !strings.Contains(out, "2 certificates, signed") {
		t.Fatalf("index entry --sign: exit %d: %q %s", code, out, errOut)
	}
	src := index.FileSource{Path: signed, Signed: true, Roots: f.pki.Pool().Pool()}
	ix, err = src.Fetch(t.Context())
	if err != nil {
		t.Fatalf("the signed entry does not load: %v", err)
	}
	check(t, ix, 2)
	if c, _ := ix.SignedBy(); c == nil || !c.Equal(f.prov.Cert) {
		t.Errorf("signed by %v, want the [signing] certificate", c)
	}
	if p, _ := ix.ByDomain(provDom); p.LDIFLocationURL != "https://pec.example.test/entry.ldif.p7m" {
		t.Errorf("LDIFLocationURL %q", p.LDIFLocationURL)
	}
	if _, err := index.LoadSignedLDIF(mustRead(t, signed), testpki.New("other.test").Pool().Pool()); err == nil {
		t.Error("the signed entry verifies against an unrelated root")
	}

	for _, args := range [][]string{{"index", "entry", "--url", "http://pec.example.test/x"}, {"index", "show", "--sign"}} {
		if code, _, errOut := f.run(args...); code != 2 {
			t.Errorf("%v: exit %d, %q; want a usage error", args, code, errOut)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
