package smime_test

import (
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// sign signs the test content as the old provider at the given time (a
// SHA-1 CMS digest, as in 2014) and writes the message to a file.
func sign1(p *testpki.SHA1PKI, t *testing.T, at time.Time) ([]byte, string) {
	t.Helper()
	s := &smime.Signer{Key: p.Provider.Key, Cert: p.Provider.Cert, Chain: p.Provider.Chain, Hash: crypto.SHA1, Protocol: "application/x-pkcs7-signature"}
	ct, body, err := s.Sign([]byte(content), at, "----=_old_boundary")
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("From: posta-certificata@pec-old.example.test\r\nMIME-Version: 1.0\r\nContent-Type: " + ct + "\r\n\r\n" + string(body))
	f := filepath.Join(p.Dir, fmt.Sprintf("msg-%d.eml", at.Unix()))
	if err := os.WriteFile(f, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	return msg, f
}

// opensslAccepts runs openssl's own chain check at the signing time.
func opensslAccepts(t *testing.T, p *testpki.SHA1PKI, file string, at time.Time) bool {
	t.Helper()
	out, err := exec.Command("openssl", "smime", "-verify", "-in", file, "-CAfile", filepath.Join(p.Dir, "root.pem"),
		"-attime", fmt.Sprint(at.Unix()), "-purpose", "any", "-auth_level", "0", "-out", os.DevNull).CombinedOutput()
	t.Logf("openssl smime -verify -attime %s: %v %s", at.Format(time.RFC3339), err, strings.TrimSpace(string(out)))
	return err == nil
}

var signed2015 = time.Date(2015, 6, 1, 10, 0, 0, 0, time.UTC)

// A 2014-era chain signed with SHA-1 verifies at a signing time before the
// cut-off, as openssl -attime says, and the result says why.
func TestSHA1ChainBeforeCutoff(t *testing.T) {
	p := testpki.NewSHA1(t, testpki.SHA1Options{})
	msg, file := sign1(p, t, signed2015)
	if !opensslAccepts(t, p, file, signed2015) {
		t.Fatal("openssl refuses the chain the test built")
	}
	r, err := smime.Verify(msg, smime.NewRoots(p.Root))
	if err != nil {
		t.Fatal(err)
	}
	if r.SignatureErr != nil || r.ChainErr != nil {
		t.Fatalf("signature %v chain %v", r.SignatureErr, r.ChainErr)
	}
	if len(r.Chains) != 1 || len(r.Chains[0]) != 3 || !r.Chains[0][1].Equal(p.Provider.Chain[0]) || !r.Chains[0][2].Equal(p.Root) {
		t.Fatalf("chains %v", r.Chains)
	}
	if !strings.Contains(r.ChainNote, "SHA-1") || !strings.Contains(r.ChainNote, "2017-01-01") {
		t.Fatalf("chain note %q", r.ChainNote)
	}
}

// After the cut-off (live traffic) SHA-1 certificate signatures are
// refused; "off" refuses them always.
func TestSHA1ChainRefused(t *testing.T) {
	p := testpki.NewSHA1(t, testpki.SHA1Options{})
	signed2018 := time.Date(2018, 6, 1, 10, 0, 0, 0, time.UTC)
	msg, _ := sign1(p, t, signed2018)
	r, err := smime.Verify(msg, smime.NewRoots(p.Root))
	if err != nil {
		t.Fatal(err)
	}
	if r.SignatureErr != nil || r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), "accepted only for messages signed before 2017-01-01") || r.ChainNote != "" {
		t.Fatalf("after the cut-off: signature %v chain %v note %q", r.SignatureErr, r.ChainErr, r.ChainNote)
	}
	msg, _ = sign1(p, t, signed2015)
	off := smime.NewRoots(p.Root)
	off.SHA1Cutoff = time.Time{}
	r, _ = smime.Verify(msg, off)
	if r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), "accepted never") {
		t.Fatalf("cut-off off: chain %v", r.ChainErr)
	}
	// a later cut-off is the operator's choice
	late := smime.NewRoots(p.Root)
	late.SHA1Cutoff = time.Date(2019, 1, 1, 0, 0, 0, 0, time.UTC)
	msg, _ = sign1(p, t, signed2018)
	if r, _ = smime.Verify(msg, late); r.ChainErr != nil || r.ChainNote == "" {
		t.Fatalf("cut-off 2019: chain %v note %q", r.ChainErr, r.ChainNote)
	}
	// another root does not become trusted by the SHA-1 path
	other := testpki.New("pec-old.example.test")
	msg, _ = sign1(p, t, signed2015)
	if r, _ = smime.Verify(msg, smime.NewRoots(other.Root.Cert)); r.ChainErr == nil {
		t.Fatal("chain accepted under a root that did not issue it")
	}
}

// Validity periods and name constraints are still judged at the signing
// time on the SHA-1 path, as openssl does.
func TestSHA1ChainStillChecked(t *testing.T) {
	t.Run("intermediate expired at the signing time", func(t *testing.T) {
		p := testpki.NewSHA1(t, testpki.SHA1Options{InterEnd: "20150101000000Z"})
		msg, file := sign1(p, t, signed2015)
		if opensslAccepts(t, p, file, signed2015) {
			t.Fatal("openssl accepts an expired intermediate")
		}
		r, _ := smime.Verify(msg, smime.NewRoots(p.Root))
		if r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), `"Old Test CA1" not valid at 2015-06-01`) {
			t.Fatalf("chain %v", r.ChainErr)
		}
	})
	t.Run("signer address outside the name constraints", func(t *testing.T) {
		p := testpki.NewSHA1(t, testpki.SHA1Options{Permitted: "pec-other.example.test"})
		msg, file := sign1(p, t, signed2015)
		if opensslAccepts(t, p, file, signed2015) {
			t.Fatal("openssl accepts a name-constraint violation")
		}
		r, _ := smime.Verify(msg, smime.NewRoots(p.Root))
		if r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), "violates the name constraints") {
			t.Fatalf("chain %v", r.ChainErr)
		}
	})
	t.Run("signer not valid yet", func(t *testing.T) {
		p := testpki.NewSHA1(t, testpki.SHA1Options{})
		at := time.Date(2013, 6, 1, 0, 0, 0, 0, time.UTC)
		msg, _ := sign1(p, t, at)
		r, _ := smime.Verify(msg, smime.NewRoots(p.Root))
		if r.ChainErr == nil || !strings.Contains(r.ChainErr.Error(), "not valid at the signing time") {
			t.Fatalf("chain %v", r.ChainErr)
		}
	})
}
