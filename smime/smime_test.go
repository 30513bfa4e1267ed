package smime_test

import (
	"bytes"
	"crypto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const content = "Content-Type: text/plain; charset=\"iso-8859-1\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCiao, questo =E8 un test.\r\n"

func signed(t *testing.T, s *smime.Signer) []byte {
	t.Helper()
	ct, body, err := s.Sign([]byte(content), at, "----=_test_boundary_1")
	if err != nil {
		t.Fatal(err)
	}
	return []byte("From: posta-certificata@pec.example.test\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + "\r\n\r\n" + string(body))
}

func TestSignVerify(t *testing.T) {
	pki := testpki.New("pec.example.test")
	for _, tc := range []struct {
		name  string
		ec    bool
		hash  crypto.Hash
		proto string
	}{
		{"rsa-sha256", false, crypto.SHA256, ""},
		{"rsa-sha1-x-pkcs7", false, crypto.SHA1, "application/x-pkcs7-signature"},
		{"rsa-sha512", false, crypto.SHA512, ""},
		{"ecdsa-sha384", true, crypto.SHA384, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prov := pki.Issue("Test PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, tc.ec)
			s := &smime.Signer{Key: prov.Key, Cert: prov.Cert, Chain: prov.Chain, Hash: tc.hash, Protocol: tc.proto}
			msg := signed(t, s)
			r, err := smime.Verify(msg, pki.Pool())
			if err != nil {
				t.Fatal(err)
			}
			if r.SignatureErr != nil || r.ChainErr != nil {
				t.Fatalf("signature %v chain %v", r.SignatureErr, r.ChainErr)
			}
			if !r.SigningTime.Equal(at) || r.Digest != tc.hash || r.MicalgMismatch {
				t.Fatalf("signing time %v digest %v micalg %q", r.SigningTime, r.Digest, r.Micalg)
			}
			if r.SignerSHA1 != smime.CertSHA1(prov.Cert) || len(r.SignerSHA1) != 40 {
				t.Fatalf("signer sha1 %q", r.SignerSHA1)
			}
			if string(r.Content) != content {
				t.Fatalf("content %q", r.Content)
			}
			opensslVerify(t, msg, testpki.PEM(pki.Root.Cert), true)

			// LF copy of the CRLF original still verifies (PEC-SPEC §6.7)
			lf := bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
			if r, err := smime.Verify(lf, pki.Pool()); err != nil || !r.Valid() {
				t.Fatalf("LF copy: %v %+v", err, r)
			}
			// untrusted root
			other := testpki.New("pec.example.test")
			if r, _ := smime.Verify(msg, other.Pool()); r.SignatureErr != nil || r.ChainErr == nil {
				t.Fatalf("other root: sig %v chain %v", r.SignatureErr, r.ChainErr)
			}
			if r, _ := smime.Verify(msg, nil); r.ChainErr != smime.ErrNoRoots {
				t.Fatalf("nil roots: %v", r.ChainErr)
			}
		})
	}
}

// Every byte of the signed content matters: flipping any one of them makes
// verification fail (RFC 5751 §3.4.3).
func TestFlippedByte(t *testing.T) {
	pki := testpki.New("pec.example.test")
	prov := pki.Issue("Test PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	msg := signed(t, &smime.Signer{Key: prov.Key, Cert: prov.Cert, Chain: prov.Chain})
	start := bytes.Index(msg, []byte(content))
	for i := start; i < start+len(content); i++ {
		if msg[i] == '\r' || msg[i] == '\n' {
			continue // turning CRLF into another line end is canonicalised away
		}
		bad := bytes.Clone(msg)
		bad[i] ^= 0x01
		r, err := smime.Verify(bad, pki.Pool())
		if err == nil && r.SignatureErr == nil {
			t.Fatalf("flipping byte %d (%q) still verifies", i, msg[i])
		}
	}
}

func TestExpiredAtSigningTime(t *testing.T) {
	pki := testpki.New("pec.example.test")
	prov := pki.Issue("Test PEC S.p.A.", "posta-certificata@pec.example.test", testpki.Epoch, at.Add(-time.Hour), false)
	msg := signed(t, &smime.Signer{Key: prov.Key, Cert: prov.Cert, Chain: prov.Chain})
	r, err := smime.Verify(msg, pki.Pool())
	if err != nil {
		t.Fatal(err)
	}
	if r.SignatureErr != nil || r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), "not valid at the signing time") {
		t.Fatalf("sig %v chain %v", r.SignatureErr, r.ChainErr)
	}
}

func TestNotSigned(t *testing.T) {
	for _, in := range []string{
		"Subject: hi\r\n\r\nbody\r\n",
		"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\nA\r\n--x--\r\n",
		"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\nA\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--x--\r\n",
		"Content-Type: multipart/signed; boundary=x\r\n\r\n--x\r\nA\r\n--x\r\nContent-Type: text/plain\r\n\r\nAAAA\r\n--x--\r\n",
		"no header at all",
	} {
		if _, err := smime.Verify([]byte(in), nil); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

// opensslVerify checks a message with openssl smime -verify against root,
// at the CMS signing time.
func opensslVerify(t testing.TB, msg, rootPEM []byte, want bool) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (scripts/install-deps installs it)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	in := filepath.Join(dir, "msg.eml")
	os.WriteFile(root, rootPEM, 0o644)
	os.WriteFile(in, msg, 0o644)
	out, err := exec.Command("openssl", "smime", "-verify", "-in", in, "-CAfile", root, "-purpose", "any",
		"-attime", "1795000000", "-out", os.DevNull).CombinedOutput()
	if (err == nil) != want {
		t.Fatalf("openssl smime -verify: %v\n%s", err, out)
	}
}
