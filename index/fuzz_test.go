package index

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/pecgo/pec/smime"
)

// addLDIFSeeds adds the RFC 6109 examples (the second one as published,
// with its stray blank line, and repaired) and LDIF written by TestLDIF:
// main and secondary environments, a UTF-8 name, CRLF line ends, a BOM, a
// version line and a folded comment.
func addLDIFSeeds(f *testing.F) {
	for _, name := range []string{"testdata/rfc6109-example.ldif", "testdata/rfc6109-example2.ldif"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	ex2, _ := os.ReadFile("testdata/rfc6109-example2.ldif")
	lines := strings.Split(string(ex2), "\n")
	f.Add([]byte(strings.Join(append(lines[:61:61], lines[62:]...), "\n")))

	fx := getFixture(f)
	sec := TestProvider{Name: "Alpha PEC S.p.A.", Unit: "Ambiente Secondario", MailReceipt: "ricevute@sec.alpha.example.test",
		Domains: []string{"sec.alpha.example.test"}, Certs: []*x509.Certificate{fx.alphaNew.Cert}}
	utf := TestProvider{Name: "Società Ä, PEC", Domains: []string{"pec.societa.example.test"}, Certs: []*x509.Certificate{fx.gamma.Cert}}
	f.Add(TestLDIF(fx.alpha, sec, fx.betaP, utf))
	crlf := "\ufeffversion: 1\r\n# a comment\r\n  folded into it\r\n" + strings.ReplaceAll(string(TestLDIF(fx.gammaP)), "\n", "\r\n")
	f.Add([]byte(crlf))
	f.Add([]byte("dn: o=postacert\nchangetype: add\n"))
	f.Add([]byte("dn:: " + base64.StdEncoding.EncodeToString([]byte("providerName=x,o=postacert")) + "\nobjectClass: provider\nproviderName:: w6A=\n"))
}

// checkIndex checks what every snapshot ParseLDIF returns must satisfy:
// at least one provider; each with a name, a dot-atom mailReceipt, at
// least one lower-case domain, hash and certificate; and each domain, hash
// and listed certificate found by the lookups.
func checkIndex(t *testing.T, ix *Index) {
	t.Helper()
	if ix.Len() == 0 {
		t.Fatal("a snapshot without providers")
	}
	for _, p := range ix.Providers() {
		if p.Name == "" || !validMailbox(p.MailReceipt) || len(p.Domains) == 0 || len(p.CertHashes) == 0 || len(p.Certificates) == 0 {
			t.Fatalf("unusable provider kept: %+v", p)
		}
		for _, d := range p.Domains {
			if !validDomain(d) || d != strings.ToLower(d) {
				t.Fatalf("%s: bad domain %q", p.Label(), d)
			}
			if _, ok := ix.ByDomain(d); !ok {
				t.Fatalf("%s: domain %q not found", p.Label(), d)
			}
		}
		for _, h := range p.CertHashes {
			if !isSHA1Hex(h) {
				t.Fatalf("%s: bad hash %q", p.Label(), h)
			}
			if _, ok := ix.ByCertHash(h); !ok {
				t.Fatalf("%s: hash %s not found", p.Label(), h)
			}
		}
		for _, c := range p.Certificates {
			if slices.Contains(p.CertHashes, smime.CertSHA1(c)) {
				if _, err := ix.ByCertificate(c); err != nil {
					t.Fatalf("%s: listed certificate refused: %v", p.Label(), err)
				}
			}
		}
	}
}

// FuzzParseLDIF: ParseLDIF never panics, returns a snapshot or an error
// (never both), every snapshot passes checkIndex, and WriteLDIF round-trips
// it: the output parses back to the same providers (Diff empty, same
// count and root URL) and writing that again gives the same bytes.
func FuzzParseLDIF(f *testing.F) {
	addLDIFSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := ParseLDIF(bytes.NewReader(data))
		if err != nil {
			if ix != nil {
				t.Fatalf("a snapshot with error %v", err)
			}
			return
		}
		if ix == nil {
			t.Fatal("no snapshot and no error")
		}
		checkIndex(t, ix)
		var out bytes.Buffer
		if err := ix.WriteLDIF(&out); err != nil {
			t.Fatal(err)
		}
		back, err := ParseLDIF(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("WriteLDIF output does not parse: %v\n%s", err, out.Bytes())
		}
		if d := Diff(ix, back); len(d) > 0 || back.Len() != ix.Len() || back.LDIFLocationURL() != ix.LDIFLocationURL() {
			t.Fatalf("round trip changed the snapshot: %q (%d, %d providers)\n%s", d, ix.Len(), back.Len(), out.Bytes())
		}
		var again bytes.Buffer
		if err := back.WriteLDIF(&again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatalf("WriteLDIF of the parsed output differs:\n%s\n----\n%s", out.Bytes(), again.Bytes())
		}
	})
}

// FuzzLoadSignedLDIF: LoadSignedLDIF never panics and returns a snapshot
// or an error (never both). A snapshot names its signer, whose certificate
// chains to the roots, passes checkIndex, and is the LDIF carried inside
// the CMS structure. The seeds are a directory signed by a test PKI made
// at start (DER, PEM and base64), the same LDIF unsigned, and garbage.
func FuzzLoadSignedLDIF(f *testing.F) {
	fx := getFixture(f)
	roots := fx.pki.Pool().Pool()
	der, err := SignLDIF(TestLDIF(fx.alpha, fx.betaP), fx.igpec.Key, fx.igpec.Cert, fx.igpec.Chain)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: der}))
	f.Add([]byte(base64.StdEncoding.EncodeToString(der)))
	f.Add(TestLDIF(fx.gammaP))
	f.Add([]byte("hello"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ix, err := LoadSignedLDIF(data, roots)
		if err != nil {
			if ix != nil {
				t.Fatalf("a snapshot with error %v", err)
			}
			return
		}
		if ix == nil {
			t.Fatal("no snapshot and no error")
		}
		signer, at := ix.SignedBy()
		if signer == nil {
			t.Fatal("a signed snapshot without its signer")
		}
		cms, err := cmsDER(data)
		if err != nil {
			t.Fatal(err)
		}
		p7, err := pkcs7.Parse(cms)
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		for _, c := range p7.Certificates {
			inter.AddCert(c)
		}
		if at.IsZero() {
			at = time.Now()
		}
		if _, err := signer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("accepted a signer that does not chain to the roots: %v", err)
		}
		checkIndex(t, ix)
		plain, err := ParseLDIF(bytes.NewReader(p7.Content))
		if err != nil {
			t.Fatalf("the signed content does not parse alone: %v", err)
		}
		if d := Diff(plain, ix); len(d) > 0 || plain.Len() != ix.Len() {
			t.Fatalf("the snapshot is not the signed content: %q", d)
		}
	})
}
