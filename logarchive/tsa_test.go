package logarchive_test

import (
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/logarchive/tsatest"
)

// No real TSA is contacted by these tests: the TSA is tsatest on an
// httptest server (loopback), or openssl ts -reply run by such a server.

func TestTimestampRequestEncoding(t *testing.T) {
	digest := sha256.Sum256([]byte("signature"))
	der, err := logarchive.TimestampRequest(crypto.SHA256, digest[:], big.NewInt(0x1234567890), true)
	if err != nil {
		t.Fatal(err)
	}
	req, err := tsatest.ParseRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if req.Version != 1 || !req.HashOID().Equal(asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}) ||
		string(req.Digest()) != string(digest[:]) || req.Nonce.Int64() != 0x1234567890 || !req.CertReq || req.Policy != nil {
		t.Errorf("request %+v", req)
	}
	// DER: SEQUENCE { INTEGER 1, SEQUENCE { SEQUENCE { OID sha256, NULL }, OCTET STRING }, INTEGER nonce, BOOLEAN TRUE }
	want := "30" + "40" + "020101" + "3031" + "300d" + "0609608648016503040201" + "0500" + "0420" + fmt.Sprintf("%x", digest) +
		"0205" + "1234567890" + "0101ff"
	if got := fmt.Sprintf("%x", der); got != want {
		t.Errorf("DER\n got %s\nwant %s", got, want)
	}
	// certReq FALSE is the DEFAULT: DER leaves it out; no nonce: left out
	der, _ = logarchive.TimestampRequest(crypto.SHA256, digest[:], nil, false)
	if got := fmt.Sprintf("%x", der); got != "3036020101"+"3031300d06096086480165030402010500"+"0420"+fmt.Sprintf("%x", digest) {
		t.Errorf("minimal request %s", got)
	}
	if _, err := logarchive.TimestampRequest(crypto.SHA256, digest[:5], nil, false); err == nil {
		t.Error("short digest accepted")
	}

	// openssl parses it as a TimeStampReq
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	der, _ = logarchive.TimestampRequest(crypto.SHA256, digest[:], big.NewInt(0x1234567890), true)
	f := filepath.Join(t.TempDir(), "req.tsq")
	os.WriteFile(f, der, 0o644)
	out, err := exec.Command(openssl, "ts", "-query", "-in", f, "-text").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl ts -query: %v: %s", err, out)
	}
	for _, s := range []string{"Version: 1", "Hash Algorithm: sha256", "Nonce: 0x1234567890", "Certificate required: yes"} {
		if !strings.Contains(string(out), s) {
			t.Errorf("openssl output lacks %q:\n%s", s, out)
		}
	}
}

// archived writes the archive of 2024-03-02 and returns its directory.
func archived(t *testing.T, e *env) string {
	t.Helper()
	dir := filepath.Join(e.dir, "arch")
	if _, err := e.ar.Write(dir, "2024-03-02", false); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestTimestamp(t *testing.T) {
	e := newEnv(t)
	dir := archived(t, e)
	tsa := tsatest.New(e.pki)
	genTime := time.Date(2024, 3, 3, 0, 5, 0, 0, time.UTC)
	tsa.Now = func() time.Time { return genTime }
	srv := httptest.NewServer(tsa)
	defer srv.Close()

	ts, warn, err := logarchive.Timestamp(context.Background(), srv.Client(), srv.URL, dir, "2024-03-02", e.pki.Pool().Pool())
	if err != nil {
		t.Fatal(err)
	}
	if !ts.GenTime.Equal(genTime) || ts.Signer == nil || ts.Signer.Subject.CommonName != "Test Time-Stamping Unit" || len(warn) != 0 {
		t.Errorf("timestamp %+v, warnings %v", ts, warn)
	}
	// the request the TSA received: SHA-256 of the .p7s, a nonce, certReq
	files := logarchive.PathsFor(dir, "2024-03-02")
	sig, _ := os.ReadFile(files.Signature)
	sum := sha256.Sum256(sig)
	if len(tsa.Requests) != 1 {
		t.Fatalf("%d requests", len(tsa.Requests))
	}
	req, err := tsatest.ParseRequest(tsa.Requests[0])
	if err != nil || string(req.Digest()) != string(sum[:]) || req.Nonce == nil || req.Nonce.Sign() <= 0 || !req.CertReq {
		t.Errorf("request %+v, %v", req, err)
	}
	saved, _ := os.ReadFile(files.Query)
	if string(saved) != string(tsa.Requests[0]) {
		t.Error(".tsq is not the request sent")
	}

	rep, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool())
	if err != nil || rep.Timestamp == nil || !rep.Timestamp.GenTime.Equal(genTime) || len(rep.Warnings) != 0 {
		t.Fatalf("Verify with .tsr: %+v, %v", rep, err)
	}
	// a TSA outside the trusted roots: a warning, not a failure
	tsr, _ := os.ReadFile(files.Reply)
	if _, warn, err := logarchive.CheckTimestamp(tsr, sig, testpki.New("pec.example.test").Pool().Pool()); err != nil || len(warn) != 1 || !strings.Contains(warn[0], "does not chain") {
		t.Errorf("foreign TSA: %v, %v", warn, err)
	}
	// a changed .tsr fails
	bad := append([]byte(nil), tsr...)
	bad[len(bad)-10] ^= 0x01
	os.WriteFile(files.Reply, bad, 0o640)
	if _, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err == nil {
		t.Error("changed .tsr verified")
	}
	// a .tsr of another signature fails
	os.WriteFile(files.Reply, tsr, 0o640)
	if _, err := e.ar.Write(dir, "2024-03-02", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(files.Reply); err == nil {
		t.Error("rewriting the archive kept the stale .tsr")
	}
	os.WriteFile(files.Reply, tsr, 0o640)
	if _, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err == nil || !strings.Contains(err.Error(), "imprint") {
		t.Errorf(".tsr of the old signature: %v", err)
	}
}

func TestTimestampFailures(t *testing.T) {
	e := newEnv(t)
	dir := archived(t, e)
	cases := []struct {
		name  string
		setup func(a *tsatest.TSA)
		want  string
	}{
		{"refused", func(a *tsatest.TSA) { a.Status, a.FailBit, a.Text = 2, 0, "algorithm not supported" }, "refused the request: status 2 (rejection): algorithm not supported; failInfo badAlg"},
		{"time not available", func(a *tsatest.TSA) { a.Status, a.FailBit = 2, 14 }, "timeNotAvailable"},
		{"nonce", func(a *tsatest.TSA) { a.Nonce = big.NewInt(42) }, "nonce does not match"},
		{"imprint", func(a *tsatest.TSA) { d := sha256.Sum256([]byte("other")); a.Digest = d[:] }, "message imprint differs"},
		{"http error", func(a *tsatest.TSA) { a.HTTPCode = http.StatusServiceUnavailable }, "503"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := tsatest.New(e.pki)
			c.setup(a)
			srv := httptest.NewServer(a)
			defer srv.Close()
			_, _, err := logarchive.Timestamp(context.Background(), srv.Client(), srv.URL, dir, "2024-03-02", e.pki.Pool().Pool())
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
			if _, err := os.Stat(logarchive.PathsFor(dir, "2024-03-02").Reply); err == nil {
				t.Error("a bad reply was saved")
			}
		})
	}
	// not a TSA at all
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte("<html>login</html>"))
	}))
	defer srv.Close()
	if _, _, err := logarchive.Timestamp(context.Background(), srv.Client(), srv.URL, dir, "2024-03-02", nil); err == nil || !strings.Contains(err.Error(), "text/html") {
		t.Errorf("HTML reply: %v", err)
	}
}

// A reply made by another implementation: openssl ts -reply behind the
// httptest server.
func TestTimestampOpenSSLReply(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t)
	dir := archived(t, e)
	tsa := tsatest.New(e.pki)
	wd := t.TempDir()
	cert, key, chain := tsa.WriteFiles(wd)
	conf := filepath.Join(wd, "tsa.cnf")
	os.WriteFile(filepath.Join(wd, "serial"), []byte("01\n"), 0o644)
	os.WriteFile(conf, []byte(fmt.Sprintf(`[ tsa ]
default_tsa = tsa1
[ tsa1 ]
serial = %s
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1.2
digests = sha256, sha384, sha512
accuracy = secs:1, millisecs:500, microsecs:100
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
`, filepath.Join(wd, "serial"))), 0o644)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/timestamp-query" {
			http.Error(w, "bad type", http.StatusUnsupportedMediaType)
			return
		}
		q := filepath.Join(wd, "q.tsq")
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		os.WriteFile(q, body, 0o644)
		out := filepath.Join(wd, "r.tsr")
		cmd := exec.Command(openssl, "ts", "-reply", "-config", conf, "-queryfile", q, "-signer", cert, "-inkey", key, "-chain", chain, "-out", out)
		if b, err := cmd.CombinedOutput(); err != nil {
			http.Error(w, fmt.Sprintf("%v: %s", err, b), 500)
			return
		}
		resp, _ := os.ReadFile(out)
		w.Header().Set("Content-Type", "application/timestamp-reply")
		w.Write(resp)
	}))
	defer srv.Close()
	ts, warn, err := logarchive.Timestamp(context.Background(), srv.Client(), srv.URL, dir, "2024-03-02", e.pki.Pool().Pool())
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(ts.GenTime) > time.Minute || ts.Policy.String() != "1.3.6.1.4.1.99999.1.2" || len(warn) != 0 {
		t.Errorf("openssl timestamp %+v, %v", ts, warn)
	}
	if rep, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err != nil || rep.Timestamp == nil {
		t.Errorf("Verify: %v", err)
	}
	// and openssl agrees that the reply time-stamps the signature
	files := logarchive.PathsFor(dir, "2024-03-02")
	os.WriteFile(filepath.Join(wd, "root.pem"), testpki.PEM(e.pki.Root.Cert), 0o644)
	out, err := exec.Command(openssl, "ts", "-verify", "-data", files.Signature, "-in", files.Reply,
		"-CAfile", filepath.Join(wd, "root.pem"), "-untrusted", chain).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verification: OK") {
		t.Errorf("openssl ts -verify: %v: %s", err, out)
	}
}
