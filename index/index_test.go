package index

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// fixture is a test PKI with three providers; Alpha has an old and a new
// certificate (renewal with overlapping validity, RFC 6109 §4.5).
type fixture struct {
	pki                  *testpki.PKI
	alphaOld, alphaNew   *testpki.Provider
	beta, gamma, igpec   *testpki.Provider
	alpha, betaP, gammaP TestProvider
	alphaOneCert         TestProvider
}

var (
	fixOnce sync.Once
	fix     *fixture
)

func getFixture(t testing.TB) *fixture {
	t.Helper()
	fixOnce.Do(func() {
		pki := testpki.New("example.test", ".example.test")
		f := &fixture{pki: pki}
		f.alphaOld = pki.Issue("Alpha PEC S.p.A.", "posta-certificata@pec.alpha.example.test", time.Time{}, testpki.Epoch.AddDate(8, 0, 0), true)
		f.alphaNew = pki.Issue("Alpha PEC S.p.A.", "posta-certificata@pec.alpha.example.test", testpki.Epoch.AddDate(7, 0, 0), testpki.Epoch.AddDate(12, 0, 0), true)
		f.beta = pki.Issue("Beta Posta S.r.l.", "posta-certificata@pec.beta.example.test", time.Time{}, time.Time{}, true)
		f.gamma = pki.Issue("Gamma PEC", "posta-certificata@gamma.example.test", time.Time{}, time.Time{}, true)
		f.igpec = pki.Issue("IGPEC", "igpec@igpec.example.test", time.Time{}, time.Time{}, true)
		f.alpha = TestProvider{Name: "Alpha PEC S.p.A.", MailReceipt: "accettazione@pec.alpha.example.test",
			Domains: []string{"PEC.Alpha.Example.TEST", "legal.alpha.example.test"}, Certs: []*x509.Certificate{f.alphaOld.Cert, f.alphaNew.Cert}}
		f.alphaOneCert = f.alpha
		f.alphaOneCert.Certs = []*x509.Certificate{f.alphaOld.Cert}
		f.betaP = TestProvider{Name: "Beta Posta S.r.l.", Domains: []string{"pec.beta.example.test"}, Certs: []*x509.Certificate{f.beta.Cert}}
		f.gammaP = TestProvider{Name: "Gamma PEC", Domains: []string{"gamma.example.test"}, Certs: []*x509.Certificate{f.gamma.Cert}}
		fix = f
	})
	return fix
}

func mustParse(t *testing.T, ldif []byte) *Index {
	t.Helper()
	ix, err := ParseLDIF(bytes.NewReader(ldif))
	if err != nil {
		t.Fatalf("ParseLDIF: %v\n%s", err, ldif)
	}
	return ix
}

func hasWarning(ix *Index, parts ...string) bool {
	for _, w := range ix.Warnings() {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(w, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// The RFC's first example: the Postal Services entry has corrupt base64 and
// is skipped with a warning naming the lines; the Anonymous entry is
// usable, found by domain and hash in any case, and its certificate passes
// the origin check.
func TestParseRFC6109Example(t *testing.T) {
	data, err := os.ReadFile("testdata/rfc6109-example.ldif")
	if err != nil {
		t.Fatal(err)
	}
	ix := mustParse(t, data)
	if ix.Len() != 1 {
		t.Fatalf("Len = %d, want 1 (Postal Services skipped): %+v", ix.Len(), ix.Providers())
	}
	if got := ix.LDIFLocationURL(); got != "https://igpec.rupa.example.com/igpec.ldif.p7m" {
		t.Errorf("root LDIFLocationURL = %q", got)
	}
	if !hasWarning(ix, "line 88", "Postal Services S.p.A", "skipped", "providerCertificate;binary at line 94", "base64") {
		t.Errorf("no clear warning for the corrupt entry: %q", ix.Warnings())
	}
	for _, q := range []string{"mail.anpocert.example.com", "MAIL.ANPOCERT.EXAMPLE.COM", "Cert.Company.Example.Com", "mario.rossi@CostMec.example.com", "<x@costmec.example.com.>"} {
		p, ok := ix.ByDomain(q)
		if !ok || p.Name != "Anonymous Certified Mail S.p.A." {
			t.Errorf("ByDomain(%q) = %v, %v", q, p, ok)
		}
	}
	if ix.IsCertified("someone@postal-services.example.com") {
		t.Error("the skipped provider's domain is certified")
	}
	p, ok := ix.ByCertHash("7E7AEF1059AE0F454F2643A95F69EC3556009239")
	if !ok {
		t.Fatal("ByCertHash upper-case: not found")
	}
	if _, ok := ix.ByCertHash("7e:7a:ef:10:59:ae:0f:45:4f:26:43:a9:5f:69:ec:35:56:00:92:39"); !ok {
		t.Error("ByCertHash with colons: not found")
	}
	if len(p.Certificates) != 1 || smime.CertSHA1(p.Certificates[0]) != "7e7aef1059ae0f454f2643a95f69ec3556009239" {
		t.Fatalf("certificate does not hash to the listed value: %v", p.CertHashes)
	}
	if p.MailReceipt != "ssacceptance@postalser.example.com" || len(p.Domains) != 3 || p.Description != "Certified mail services for companies" {
		t.Errorf("provider = %+v", p)
	}
	if got, err := ix.ByCertificate(p.Certificates[0]); err != nil || got.Name != p.Name {
		t.Errorf("ByCertificate(RFC cert) = %v, %v", got, err)
	}
	// The returned Provider is a copy: changing it leaves the index alone.
	p.Domains[0] = "changed.example.test"
	if q, _ := ix.ByCertHash(p.CertHashes[0]); q.Domains[0] == "changed.example.test" {
		t.Error("lookups return shared slices")
	}
}

// The RFC's second example has a blank line inside an entry: a syntax
// error naming the line. Repaired, it exercises a secondary environment.
func TestParseRFC6109Example2(t *testing.T) {
	data, err := os.ReadFile("testdata/rfc6109-example2.ldif")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseLDIF(bytes.NewReader(data))
	if err == nil || !strings.Contains(err.Error(), "line 63") || !strings.Contains(err.Error(), "dn:") {
		t.Fatalf("ParseLDIF error = %v, want a missing-dn error at line 63", err)
	}
	lines := strings.Split(string(data), "\n")
	if lines[61] != "" {
		t.Fatalf("line 62 = %q, want the stray blank line", lines[61])
	}
	repaired := strings.Join(slices.Delete(lines, 61, 62), "\n")
	ix := mustParse(t, []byte(repaired))
	if ix.Len() != 2 {
		t.Fatalf("Len = %d, want main + secondary", ix.Len())
	}
	sec, ok := ix.ByDomain("personnel.anpocert.example.com")
	if !ok || sec.Unit != "Secondary Environment" || sec.MailReceipt != "notifications@secondary.anpocert.example.com" {
		t.Errorf("secondary environment = %+v, %v", sec, ok)
	}
	main, ok := ix.ByCertHash("7e7aef1059ae0f454f2643a95f69ec3556009239")
	if !ok || main.Unit != "" || main.Name != "Anonymous Certified Mail S.p.A." {
		t.Errorf("ByCertHash shared by both environments = %+v, want the main environment", main)
	}
	for _, want := range [][]string{
		{"AnonymousCertified Mail S.p.A.", "Certified Mail S.p.A."}, // DN vs providerName
		{"http://anpocert.example.com", "not an https URL"},
		{"no main-environment entry"},
	} {
		if !hasWarning(ix, want...) {
			t.Errorf("missing warning %q in %q", want, ix.Warnings())
		}
	}
}

// Lookups are case-insensitive; with a renewed certificate both hashes and
// both certificates lead to the provider.
func TestLookupsAndRotation(t *testing.T) {
	f := getFixture(t)
	ix := mustParse(t, TestLDIF(f.alpha, f.betaP))
	if ix.Len() != 2 || len(ix.Warnings()) != 0 {
		t.Fatalf("Len = %d, warnings %q", ix.Len(), ix.Warnings())
	}
	for _, q := range []string{"pec.alpha.example.test", "PEC.ALPHA.EXAMPLE.TEST", "Legal.Alpha.Example.Test", "Mario.Rossi@Pec.Alpha.Example.Test"} {
		if p, ok := ix.ByDomain(q); !ok || p.Name != "Alpha PEC S.p.A." {
			t.Errorf("ByDomain(%q) = %v, %v", q, p, ok)
		}
	}
	if !ix.IsCertified("x@pec.beta.example.test") || ix.IsCertified("x@mail.example.test") || ix.IsCertified("x@alpha.example.test") {
		t.Error("IsCertified wrong")
	}
	p, _ := ix.ByDomain("pec.alpha.example.test")
	if len(p.CertHashes) != 2 || len(p.Certificates) != 2 || p.MailReceipt != "accettazione@pec.alpha.example.test" ||
		!slices.Equal(p.Domains, []string{"pec.alpha.example.test", "legal.alpha.example.test"}) {
		t.Fatalf("alpha = %+v", p)
	}
	for _, c := range []*x509.Certificate{f.alphaOld.Cert, f.alphaNew.Cert} {
		h := smime.CertSHA1(c)
		for _, q := range []string{h, strings.ToUpper(h)} {
			if p, ok := ix.ByCertHash(q); !ok || p.Name != "Alpha PEC S.p.A." {
				t.Errorf("ByCertHash(%s) = %v, %v", q, p, ok)
			}
		}
		if p, err := ix.ByCertificate(c); err != nil || p.Name != "Alpha PEC S.p.A." {
			t.Errorf("ByCertificate(%s) = %v, %v", c.NotBefore, p, err)
		}
	}
	if p, err := ix.ByCertificate(f.beta.Cert); err != nil || p.Name != "Beta Posta S.r.l." || p.MailReceipt != "posta-certificata@pec.beta.example.test" {
		t.Errorf("ByCertificate(beta) = %+v, %v", p, err)
	}
	if got := len(ix.Providers()); got != 2 {
		t.Errorf("Providers() = %d", got)
	}
}

// providerEntry renders one provider entry by hand, for entries TestLDIF
// would not produce.
func providerEntry(name string, hashes []string, certs []*x509.Certificate, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: providerName=%s,o=postacert\nobjectClass: top\nobjectClass: provider\nproviderName: %s\n", name, name)
	for _, h := range hashes {
		fmt.Fprintf(&b, "providerCertificateHash: %s\n", h)
	}
	for _, c := range certs {
		var buf bytes.Buffer
		writeB64(&buf, "providerCertificate;binary", c.Raw)
		b.Write(buf.Bytes())
	}
	for _, e := range extra {
		b.WriteString(e + "\n")
	}
	return b.String()
}

// The origin check needs both steps: a listed hash whose entry does not
// carry the same DER is refused, and the error says which step failed.
func TestByCertificateMismatch(t *testing.T) {
	f := getFixture(t)
	ldif := "dn: o=postacert\nobjectClass: organization\no: postacert\n\n" +
		providerEntry("Alpha PEC S.p.A.", []string{smime.CertSHA1(f.alphaOld.Cert)}, []*x509.Certificate{f.alphaNew.Cert},
			"mailReceipt: accettazione@pec.alpha.example.test", "managedDomains: pec.alpha.example.test")
	ix := mustParse(t, []byte(ldif))
	if _, ok := ix.ByCertHash(smime.CertSHA1(f.alphaOld.Cert)); !ok {
		t.Fatal("hash lookup alone should succeed")
	}
	_, err := ix.ByCertificate(f.alphaOld.Cert)
	if !errors.Is(err, ErrCertMismatch) || !strings.Contains(err.Error(), "step 2") {
		t.Errorf("listed hash, different DER: err = %v, want ErrCertMismatch at step 2", err)
	}
	_, err = ix.ByCertificate(f.beta.Cert)
	if !errors.Is(err, ErrHashNotListed) || !strings.Contains(err.Error(), "step 1") {
		t.Errorf("unlisted certificate: err = %v, want ErrHashNotListed at step 1", err)
	}
	if !hasWarning(ix, "has no matching providerCertificate") || !hasWarning(ix, "is not listed in providerCertificateHash") {
		t.Errorf("inconsistent entry not reported: %q", ix.Warnings())
	}
}

func TestParseLDIFSyntaxErrors(t *testing.T) {
	f := getFixture(t)
	good := string(TestLDIF(f.betaP))
	for _, tc := range []struct{ name, ldif, want string }{
		{"no colon", "dn: o=postacert\no: postacert\nthis is not ldif\n", "line 3"},
		{"leading continuation", " dn: o=postacert\n", "line 1: continuation"},
		{"record without dn", "dn: o=postacert\no: postacert\n\nobjectClass: top\n", "line 4: entry does not start with a dn"},
		{"change record", "dn: o=postacert\nchangetype: add\no: postacert\n", "line 2: LDIF change records"},
		{"url value", "dn: o=postacert\ndescription:< file:///etc/passwd\n", "line 2: URL values"},
		{"bad version", "version: 2\n\ndn: o=postacert\n", "line 1: unsupported LDIF version"},
		{"bad base64 dn", "dn:: !!!\n", "line 1: dn::"},
		{"no providers", "dn: o=postacert\nobjectClass: organization\no: postacert\n", "no provider entry"},
		{"only broken providers", strings.Replace(good, "mailReceipt:", "mailReceipt: <bad>\nx-mailReceipt:", 1), "no usable provider entry (1 skipped; line"},
		{"bad attribute name", "dn: o=postacert\nbad name: x\n", "line 2: invalid attribute description"},
	} {
		_, err := ParseLDIF(strings.NewReader(tc.ldif))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// LDIF features: CRLF, BOM, folded comments, base64 UTF-8 values, OIDs as
// attribute names, missing blank separator before dn:; broken entries are
// skipped with warnings while the good ones load.
func TestParseLDIFFeatures(t *testing.T) {
	f := getFixture(t)
	name := "Società PEC S.p.A."
	var certLine bytes.Buffer
	writeB64(&certLine, "1.3.6.1.4.1.16572.2.2.2;binary", f.beta.Cert.Raw)
	ldif := "\ufeffversion: 1\n# a comment\n  folded into the comment: dn: x\n" +
		"dn: o=postacert\nobjectClass: top\nobjectClass: organization\nobjectClass: LDIFLocationURLObject\no: postacert\n" +
		"LDIFLocationURL: https://igpec.example.test/x.p7m\n" +
		"dn:: " + base64.StdEncoding.EncodeToString([]byte("providerName="+name+",o=postacert")) + "\n" +
		"OBJECTCLASS: Provider\n" +
		"providerName:: " + base64.StdEncoding.EncodeToString([]byte(name)) + "\n" +
		"1.3.6.1.4.1.16572.2.2.1: " + strings.ToUpper(smime.CertSHA1(f.beta.Cert)) + "\n" +
		certLine.String() +
		"mailreceipt: ricevute@pec.societa.example.test\n" +
		"managedDomains: pec.societa.example.test\n" +
		"managedDomains: not a domain\n" +
		"managedDomains: user@wrong.example.test\n" +
		"description;lang-it: Servizi PEC\n" +
		"\n" +
		// missing mailReceipt: skipped
		providerEntry("Broken One", []string{smime.CertSHA1(f.gamma.Cert)}, []*x509.Certificate{f.gamma.Cert}, "managedDomains: broken.example.test") +
		"\n" +
		// certificate that is base64 but not X.509: skipped
		"dn: providerName=Broken Two,o=postacert\nobjectClass: provider\nproviderName: Broken Two\nproviderCertificateHash: " + strings.Repeat("ab", 20) + "\n" +
		"providerCertificate;binary:: aGVsbG8=\nmailReceipt: a@b.example.test\nmanagedDomains: broken2.example.test\n"
	ldif = strings.ReplaceAll(ldif, "\n", "\r\n")
	ix := mustParse(t, []byte(ldif))
	if ix.Len() != 1 {
		t.Fatalf("Len = %d: %+v %q", ix.Len(), ix.Providers(), ix.Warnings())
	}
	p, ok := ix.ByDomain("pec.societa.example.test")
	if !ok || p.Name != name || p.Description != "Servizi PEC" || len(p.Domains) != 1 || p.MailReceipt != "ricevute@pec.societa.example.test" {
		t.Fatalf("provider = %+v, %v", p, ok)
	}
	if _, err := ix.ByCertificate(f.beta.Cert); err != nil {
		t.Error(err)
	}
	if ix.LDIFLocationURL() != "https://igpec.example.test/x.p7m" {
		t.Errorf("root URL = %q", ix.LDIFLocationURL())
	}
	for _, want := range [][]string{
		{`"not a domain" is not a dot-atom domain`},
		{`"user@wrong.example.test" is not a dot-atom domain`},
		{"Broken One", "skipped", "mandatory attribute mailReceipt missing"},
		{"Broken Two", "skipped", "providerCertificate;binary at line", "not an X.509 DER certificate"},
	} {
		if !hasWarning(ix, want...) {
			t.Errorf("missing warning %q in %q", want, ix.Warnings())
		}
	}
}

// A long value folded into many continuation lines is joined in linear
// time: a 1 MiB description (14,000 lines) allocates a few MiB, where
// joining by string concatenation copied gigabytes (minutes for a file near
// MaxSignedLDIFSize).
func TestParseLDIFLongFoldedValue(t *testing.T) {
	f := getFixture(t)
	chunk := strings.Repeat("a", 75)
	n := (1 << 20) / len(chunk)
	ldif := string(TestLDIF(f.betaP)) + "\ndn: o=postacert\nobjectClass: organization\ndescription: " + chunk + "\n" +
		strings.Repeat(" "+chunk+"\n", n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ix := mustParse(t, []byte(ldif))
	runtime.ReadMemStats(&after)
	if ix.rootDescription != strings.Repeat(chunk, n+1) {
		t.Errorf("folded description: %d bytes, want %d", len(ix.rootDescription), (n+1)*len(chunk))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("parsing %d bytes allocated %d MiB", len(ldif), alloc>>20)
	}
}

// WriteLDIF output parses back to the same snapshot, folded at 76 columns,
// with non-ASCII values in base64.
func TestWriteLDIFRoundTrip(t *testing.T) {
	f := getFixture(t)
	sec := TestProvider{Name: "Alpha PEC S.p.A.", Unit: "Ambiente Secondario", MailReceipt: "ricevute@sec.alpha.example.test",
		Domains: []string{"sec.alpha.example.test"}, Certs: []*x509.Certificate{f.alphaNew.Cert}}
	utf := TestProvider{Name: "Società Ä, PEC", Domains: []string{"pec.societa.example.test"}, Certs: []*x509.Certificate{f.gamma.Cert}}
	ix := mustParse(t, TestLDIF(f.alpha, sec, f.betaP, utf))
	var buf bytes.Buffer
	if err := ix.WriteLDIF(&buf); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(buf.String(), "\n") {
		if len(l) > 76 {
			t.Fatalf("line %d longer than 76: %q", i+1, l)
		}
	}
	if !strings.Contains(buf.String(), "providerCertificate;binary:: ") {
		t.Error("certificates not written as providerCertificate;binary::")
	}
	back := mustParse(t, buf.Bytes())
	if d := Diff(ix, back); len(d) != 0 || back.Len() != 4 {
		t.Fatalf("round trip changed the index: %q", d)
	}
	a, b := ix.Providers(), back.Providers()
	for i := range a {
		if a[i].DN != b[i].DN || a[i].Name != b[i].Name || a[i].Unit != b[i].Unit || a[i].MailReceipt != b[i].MailReceipt ||
			!slices.Equal(a[i].Domains, b[i].Domains) || !slices.Equal(a[i].CertHashes, b[i].CertHashes) || len(a[i].Certificates) != len(b[i].Certificates) {
			t.Errorf("entry %d: %+v != %+v", i, a[i], b[i])
		}
		for j := range a[i].Certificates {
			if !a[i].Certificates[j].Equal(b[i].Certificates[j]) {
				t.Errorf("entry %d cert %d differs", i, j)
			}
		}
	}
	if p, ok := back.ByDomain("pec.societa.example.test"); !ok || p.Name != "Società Ä, PEC" {
		t.Errorf("UTF-8 name = %+v", p)
	}
	if back.LDIFLocationURL() != ix.LDIFLocationURL() {
		t.Error("root URL lost")
	}
}

func TestDiff(t *testing.T) {
	f := getFixture(t)
	oldA := f.alphaOneCert
	newA := f.alpha
	newA.Domains = []string{"pec.alpha.example.test", "new.alpha.example.test"}
	newA.MailReceipt = "ricevute@pec.alpha.example.test"
	old := mustParse(t, TestLDIF(oldA, f.betaP))
	cur := mustParse(t, TestLDIF(newA, f.gammaP))
	got := Diff(old, cur)
	want := []string{
		"Alpha PEC S.p.A.: managed domain added: new.alpha.example.test",
		"Alpha PEC S.p.A.: managed domain removed: legal.alpha.example.test",
		"Alpha PEC S.p.A.: certificate hash added: " + smime.CertSHA1(f.alphaNew.Cert),
		"Alpha PEC S.p.A.: mailReceipt changed: accettazione@pec.alpha.example.test -> ricevute@pec.alpha.example.test",
		"provider removed: Beta Posta S.r.l. (domains pec.beta.example.test)",
		"provider added: Gamma PEC (domains gamma.example.test; certificate hashes " + smime.CertSHA1(f.gamma.Cert) + ")",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d := Diff(nil, old); len(d) != 2 || !strings.HasPrefix(d[0], "provider added: Alpha") {
		t.Errorf("Diff(nil, old) = %q", d)
	}
	if d := Diff(old, old); d != nil {
		t.Errorf("Diff(same) = %q", d)
	}
}

func signed(t *testing.T, ldif []byte, p *testpki.Provider) []byte {
	t.Helper()
	der, err := SignLDIF(ldif, p.Key, p.Cert, p.Chain)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// tamper changes one byte of the LDIF inside the CMS structure.
func tamper(t *testing.T, der []byte, inside string) []byte {
	t.Helper()
	i := bytes.Index(der, []byte(inside))
	if i < 0 {
		t.Fatalf("%q not found in the CMS bytes", inside)
	}
	out := bytes.Clone(der)
	out[i] ^= 0x01
	return out
}

func TestSignedLDIF(t *testing.T) {
	f := getFixture(t)
	ldif := TestLDIF(f.alpha, f.betaP)
	der := signed(t, ldif, f.igpec)

	ix, err := LoadSignedLDIF(der, f.pki.Pool().Pool())
	if err != nil {
		t.Fatalf("valid signed LDIF: %v", err)
	}
	if ix.Len() != 2 || !ix.IsCertified("a@pec.beta.example.test") {
		t.Errorf("loaded %d providers", ix.Len())
	}
	if c, at := ix.SignedBy(); c == nil || !c.Equal(f.igpec.Cert) || time.Since(at) > time.Hour {
		t.Errorf("SignedBy = %v, %v", c, at)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der})
	if _, err := LoadSignedLDIF(pemData, f.pki.Pool().Pool()); err != nil {
		t.Errorf("PEM form: %v", err)
	}
	b64 := []byte(base64.StdEncoding.EncodeToString(der))
	if _, err := LoadSignedLDIF(b64, f.pki.Pool().Pool()); err != nil {
		t.Errorf("base64 form: %v", err)
	}

	refused := func(name string, data []byte, roots *x509.CertPool, want string) {
		t.Helper()
		ix, err := LoadSignedLDIF(data, roots)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: (%v, %v), want an error containing %q", name, ix, err, want)
		}
	}
	refused("one byte changed", tamper(t, der, "managedDomains: pec.beta"), f.pki.Pool().Pool(), "does not match its signature")
	other := testpki.New("example.test")
	stranger := other.Issue("IGPEC", "igpec@igpec.example.test", time.Time{}, time.Time{}, true)
	refused("signer not chaining to the roots", signed(t, ldif, stranger), f.pki.Pool().Pool(), "certificate")
	refused("signer not chaining to the roots (2)", signed(t, ldif, stranger), f.pki.Pool().Pool(), "unknown authority")
	refused("unsigned LDIF", ldif, f.pki.Pool().Pool(), "not signed")
	refused("no roots", der, nil, "no trust roots")
	refused("garbage", []byte("hello"), f.pki.Pool().Pool(), "not a CMS SignedData")
	refused("truncated", der[:len(der)/2], f.pki.Pool().Pool(), "not a CMS SignedData")
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSyncer(t *testing.T, src Source, now time.Time) (*Syncer, *logBuffer) {
	lb := &logBuffer{}
	return &Syncer{
		Source:   src,
		CacheDir: filepath.Join(t.TempDir(), "cache"),
		Logger:   slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:      func() time.Time { return now },
	}, lb
}

// Syncer with a plain LDIF file: diff lines reported and logged, cache
// written; when the file disappears Sync fails and Load still serves the
// last good snapshot.
func TestSyncerFileSource(t *testing.T) {
	f := getFixture(t)
	path := filepath.Join(t.TempDir(), "igpec.ldif")
	t0 := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	s, logs := newSyncer(t, FileSource{Path: path}, t0)

	if _, _, err := s.Load(); err == nil {
		t.Fatal("Load before any sync succeeded")
	}
	if err := os.WriteFile(path, TestLDIF(f.alphaOneCert, f.betaP), 0o644); err != nil {
		t.Fatal(err)
	}
	ix, lines, err := s.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "provider added: Alpha PEC S.p.A.") {
		t.Fatalf("first sync: %d providers, lines %q", ix.Len(), lines)
	}
	cached, at, err := s.Load()
	if err != nil || !at.Equal(t0) || len(Diff(ix, cached)) != 0 {
		t.Fatalf("Load after sync = %v, %v, %v", cached, at, err)
	}

	// Rotation published: one hash added.
	if err := os.WriteFile(path, TestLDIF(f.alpha, f.betaP), 0o644); err != nil {
		t.Fatal(err)
	}
	t1 := t0.Add(24 * time.Hour)
	s.Now = func() time.Time { return t1 }
	_, lines, err = s.Sync(context.Background())
	wantLine := "Alpha PEC S.p.A.: certificate hash added: " + smime.CertSHA1(f.alphaNew.Cert)
	if err != nil || !slices.Equal(lines, []string{wantLine}) {
		t.Fatalf("second sync: %q, %v", lines, err)
	}
	if !strings.Contains(logs.String(), wantLine) {
		t.Errorf("diff line not logged:\n%s", logs)
	}
	before, _ := os.ReadFile(s.CachePath())

	// The source goes away.
	os.Remove(path)
	s.Now = func() time.Time { return t1.Add(24 * time.Hour) }
	if _, _, err := s.Sync(context.Background()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Sync with the file gone: %v", err)
	}
	after, _ := os.ReadFile(s.CachePath())
	if !bytes.Equal(before, after) {
		t.Error("failed sync changed the cache")
	}
	cached, at, err = s.Load()
	if err != nil || !at.Equal(t1) {
		t.Fatalf("Load after failure = %v, %v", at, err)
	}
	if _, err := cached.ByCertificate(f.alphaNew.Cert); err != nil {
		t.Errorf("cached index lost the renewed certificate: %v", err)
	}
	if !strings.Contains(logs.String(), "sync failed, keeping the cached index") {
		t.Errorf("failure not logged:\n%s", logs)
	}
	if entries, _ := os.ReadDir(s.CacheDir); len(entries) != 1 {
		t.Errorf("cache dir holds %d files, want just %s", len(entries), CacheFileName)
	}
}

// Syncer with signed files (local and over HTTPS): a tampered file is
// refused and the cache keeps the previous good index.
func TestSyncerSigned(t *testing.T) {
	f := getFixture(t)
	good1 := signed(t, TestLDIF(f.alphaOneCert, f.betaP), f.igpec)
	good2 := signed(t, TestLDIF(f.alpha, f.betaP, f.gammaP), f.igpec)
	bad := tamper(t, good2, "managedDomains: gamma")

	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "igpec.ldif.p7m")
		s, logs := newSyncer(t, FileSource{Path: path, Signed: true, Roots: f.pki.Pool().Pool()}, time.Now())
		os.WriteFile(path, good1, 0o644)
		if _, _, err := s.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "signer=") {
			t.Errorf("signer not logged:\n%s", logs)
		}
		before, _ := os.ReadFile(s.CachePath())
		os.WriteFile(path, bad, 0o644)
		if _, _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("tampered file: %v", err)
		}
		after, _ := os.ReadFile(s.CachePath())
		if !bytes.Equal(before, after) {
			t.Error("the tampered file reached the cache")
		}
		ix, _, err := s.Load()
		if err != nil || ix.Len() != 2 || ix.IsCertified("x@gamma.example.test") {
			t.Errorf("cache after refusal: %v, %v", ix, err)
		}
	})

	t.Run("https", func(t *testing.T) {
		var mu sync.Mutex
		body := good1
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			if body == nil {
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/pkcs7-mime; smime-type=signed-data")
			w.Write(body)
		}))
		defer srv.Close()
		set := func(b []byte) { mu.Lock(); body = b; mu.Unlock() }
		s, _ := newSyncer(t, URLSource{URL: srv.URL + "/igpec.ldif.p7m", Roots: f.pki.Pool().Pool(), Client: srv.Client()}, time.Now())

		if _, lines, err := s.Sync(context.Background()); err != nil || len(lines) != 2 {
			t.Fatalf("first sync: %q, %v", lines, err)
		}
		set(bad)
		if _, _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match its signature") {
			t.Fatalf("tampered download: %v", err)
		}
		set(nil)
		if _, _, err := s.Sync(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("server down: %v", err)
		}
		if ix, _, err := s.Load(); err != nil || ix.IsCertified("x@gamma.example.test") || !ix.IsCertified("x@pec.beta.example.test") {
			t.Fatalf("cache after failures: %v", err)
		}
		set(good2)
		_, lines, err := s.Sync(context.Background())
		if err != nil || !slices.Contains(lines, "provider added: Gamma PEC (domains gamma.example.test; certificate hashes "+smime.CertSHA1(f.gamma.Cert)+")") {
			t.Fatalf("recovery sync: %q, %v", lines, err)
		}
	})
}

// The RFC example through a Syncer: the skipped entry is logged as a warning.
func TestSyncerLogsWarnings(t *testing.T) {
	s, logs := newSyncer(t, FileSource{Path: "testdata/rfc6109-example.ldif"}, time.Now())
	if _, _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "Postal Services S.p.A") {
		t.Errorf("skipped entry not logged:\n%s", logs)
	}
}

func TestSyncerRun(t *testing.T) {
	f := getFixture(t)
	path := filepath.Join(t.TempDir(), "igpec.ldif")
	os.WriteFile(path, TestLDIF(f.betaP), 0o644)
	s, _ := newSyncer(t, FileSource{Path: path}, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan *Index, 10)
	done := make(chan struct{})
	go func() {
		s.Run(ctx, 10*time.Millisecond, func(ix *Index) { updates <- ix })
		close(done)
	}()
	first := <-updates
	os.WriteFile(path, TestLDIF(f.betaP, f.gammaP), 0o644)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ix := <-updates:
			if ix.Len() == 2 {
				cancel()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Run did not return after cancel")
				}
				if first.Len() != 1 {
					t.Errorf("first snapshot has %d providers", first.Len())
				}
				return
			}
		case <-deadline:
			t.Fatal("Run never delivered the updated index")
		}
	}
}
