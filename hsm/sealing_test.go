package hsm_test

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/hsm"
	"github.com/pecgo/pec/internal/testpki"
)

// The [log] sealing key in a PKCS#11 token, as [signing] does it (Aruba
// §8.1: a key of its own for the log archives and extracts): SealingSigner
// opens it, it signs, and a token key that is not the sealing
// certificate's is refused naming [log].
func TestSealingKeyInToken(t *testing.T) {
	s := newSoftHSM(t)
	f := newFixture(t, true)
	seal := f.pki.Issue(name+" (registro)", "registro@"+domain, time.Time{}, time.Time{}, true)
	other := f.pki.Issue(name+" (altro)", "altro@"+domain, time.Time{}, time.Time{}, true)
	s.initToken(t, "pec-sealing")
	s.importKey(t, "pec-sealing", "sealing-2026", "02", seal.Key)
	s.importKey(t, "pec-sealing", "other-2026", "03", other.Key)
	dir := t.TempDir()
	sealCert := filepath.Join(dir, "sealing-cert.pem")
	if err := os.WriteFile(sealCert, testpki.PEM(seal.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	pecKey := filepath.Join(dir, "pec-key.pem")
	if err := os.WriteFile(pecKey, testpki.KeyPEM(f.prov.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(label string) (*config.Config, error) {
		path := writeConfig(t, dir, f, fmt.Sprintf("key = %q", pecKey))
		log := fmt.Sprintf("\n[log]\ncertificate = %q\npkcs11_module = %q\npkcs11_token = \"pec-sealing\"\npkcs11_pin = %q\npkcs11_key_label = %q\n",
			sealCert, module, userPIN, label)
		fl, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fl.WriteString(log)
		fl.Close()
		return config.Load(path)
	}

	cfg, err := load("sealing-2026")
	if err != nil {
		t.Fatal(err)
	}
	signer, warn, err := cfg.SealingSigner()
	if err != nil || warn != nil {
		t.Fatalf("SealingSigner: %v, warning %v", err, warn)
	}
	k, ok := signer.Key.(*hsm.Key)
	if !ok {
		t.Fatalf("sealing key is %T, want the token's *hsm.Key", signer.Key)
	}
	defer k.Close()
	if !signer.Cert.Equal(seal.Cert) {
		t.Fatalf("sealing certificate %s", signer.Cert.Subject)
	}
	data := []byte("pec-log-2026-11-30.jsonl.gz")
	sum := sha256.Sum256(data)
	sig, err := k.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := seal.Cert.CheckSignature(x509.ECDSAWithSHA256, data, sig); err != nil {
		t.Errorf("the token's signature does not verify with the sealing certificate: %v", err)
	}
	if err := f.prov.Cert.CheckSignature(x509.ECDSAWithSHA256, data, sig); err == nil {
		t.Error("the sealing signature verifies with the PEC certificate")
	}

	cfg, err = load("other-2026")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cfg.SealingSigner(); err == nil || !strings.Contains(err.Error(), "[log] the key in the HSM") {
		t.Errorf("a token key that is not the sealing certificate's: %v", err)
	}
}
