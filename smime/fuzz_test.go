package smime_test

import (
	"os"
	"testing"

	"github.com/pecgo/pec/smime"
)

// FuzzVerify: Verify never panics on any input. The committed corpus
// (testdata/fuzz/FuzzVerify) holds messages signed once with a test PKI
// whose root certificate (public, no key) is testdata/fuzzroot.pem, so
// the fuzzer starts from messages whose signature and chain verify.
func FuzzVerify(f *testing.F) {
	roots := smime.NewRoots()
	pem, err := os.ReadFile("testdata/fuzzroot.pem")
	if err != nil || !roots.AppendPEM(pem) {
		f.Fatalf("testdata/fuzzroot.pem: %v", err)
	}
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=x\r\n\r\n--x\r\nA\r\n--x\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQExADALBgkqhkiG9w0BBwEAAA==\r\n--x--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, pool := range []*smime.Roots{nil, roots} {
			r, err := smime.Verify(raw, pool)
			if err != nil {
				if r != nil {
					t.Fatalf("result with error %v", err)
				}
				continue
			}
			if r == nil {
				t.Fatal("nil result and nil error")
			}
			if r.SignatureErr == nil && (r.Signer == nil || r.SignerSHA1 != smime.CertSHA1(r.Signer) || r.Digest == 0) {
				t.Fatalf("valid signature without signer or digest: %+v", r)
			}
			if r.Valid() && (pool == nil || len(r.Chains) == 0) {
				t.Fatalf("valid without a chain (roots %v)", pool != nil)
			}
		}
	})
}

// FuzzVerifyDetached feeds the CMS parser directly (DER or BER, any bytes).
func FuzzVerifyDetached(f *testing.F) {
	f.Add([]byte("content"), []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x00, 0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0x00, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, content, cms []byte) {
		r, err := smime.VerifyDetached(content, cms, nil)
		if (r == nil) == (err == nil) {
			t.Fatalf("result %v and error %v", r != nil, err)
		}
	})
}
