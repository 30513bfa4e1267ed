package verify_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

// A message signed the way the 2018 providers' software signs (PEC-SPEC
// Appendix A): OpenSSL's S/MIME signer, SHA-1 digest, signed attributes
// with smimeCapabilities, application/x-pkcs7-signature, micalg="sha1",
// the intermediate embedded. Our verifier must accept it, and refuse it
// once a byte changes.
func TestOpenSSLSignedLikeRealProviders(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (run scripts/install-deps)")
	}
	pki := testpki.New("pec.example.test")
	id := pki.Issue("ARUBA-LIKE PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	p := &build.Provider{Name: "ARUBA-LIKE PEC S.p.A.", Domain: "pec.example.test", Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}
	o, _ := build.ParseOriginal([]byte("From: user@pec.example.test\r\nTo: other@pec.example.test\r\nSubject: IT03339130126_00009.xml\r\nMessage-ID: <1542123565.9215@elbati>\r\n\r\nfattura\r\n"))
	tx := o.Tx("opec288.20181113163926.01838.310.1.63@pec.example.test", "user@pec.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	at := time.Now().Truncate(time.Second)
	ours, err := p.Accettazione(at, tx)
	if err != nil {
		t.Fatal(err)
	}
	// the signed entity our builder made, signed again by openssl
	pm, _ := parse.Parse(ours.Bytes())
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	content := write("content", pm.Content)
	cert := write("cert.pem", testpki.PEM(id.Cert))
	chain := write("chain.pem", testpki.PEM(id.Chain...))
	key := write("key.pem", testpki.KeyPEM(id.Key))
	out, err := exec.Command("openssl", "smime", "-sign", "-md", "sha1", "-binary", "-in", content,
		"-signer", cert, "-inkey", key, "-certfile", chain).Output()
	if err != nil {
		t.Fatalf("openssl smime -sign: %v", err)
	}
	var msg bytes.Buffer
	for _, f := range ours.Header {
		if f.Name != "MIME-Version" && f.Name != "Content-Type" {
			msg.WriteString(f.Name + ": " + f.Value + "\r\n")
		}
	}
	msg.Write(bytes.ReplaceAll(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n")))
	if !bytes.Contains(msg.Bytes(), []byte(`protocol="application/x-pkcs7-signature"; micalg="sha1"`)) {
		t.Fatalf("openssl did not produce the 2018 form:\n%.400s", msg.Bytes())
	}
	r := verify.Message(msg.Bytes(), pki.Pool())
	if !r.Valid() || r.Message.Kind != kind.Accettazione || r.Message.Daticert.Identificativo != tx.ID {
		t.Fatalf("openssl-signed message: %v", r.Err)
	}
	if r.Signature.SigningTime.IsZero() || r.Signature.SignerSHA1 != smime.CertSHA1(id.Cert) {
		t.Fatalf("signing time %v signer %s", r.Signature.SigningTime, r.Signature.SignerSHA1)
	}
	// one changed byte inside the signed part (the top-level headers are
	// not signed, RFC 6109 §2.1: the kind is confirmed from daticert)
	bad := bytes.Clone(msg.Bytes())
	i := bytes.Index(bad, []byte("daticert.xml")) + 200
	bad[i] ^= 1
	if r := verify.Message(bad, pki.Pool()); r.Valid() {
		t.Fatal("a changed byte still verifies")
	}
}
