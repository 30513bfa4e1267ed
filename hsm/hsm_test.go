package hsm_test

import (
	"crypto"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/hsm"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

const (
	module  = "/usr/lib/softhsm/libsofthsm2.so"
	domain  = "pec-a.example.test"
	name    = "Provider A S.p.A."
	service = "posta-certificata@" + domain
	soPIN   = "12345678"
	userPIN = "87654321"
)

// at is the transaction instant of every test message.
var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const original = "From: Mario Rossi <mario.rossi@pec-a.example.test>\r\n" +
	"To: luigi.verdi@pec-b.example.test, paolo@mail.example.org\r\n" +
	"Subject: Fattura n. 12 del 2026\r\n" +
	"Message-ID: <20261123150400.abc@client.example.test>\r\n" +
	"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=\"utf-8\"\r\n" +
	"\r\n" +
	"In allegato la fattura.\r\n"

// softhsm is a private SoftHSM2 installation: its own softhsm2.conf and
// token directory in a temporary folder, selected with SOFTHSM2_CONF.
type softhsm struct {
	dir  string
	conf string
}

// newSoftHSM skips the test when SoftHSM2 is not installed.
func newSoftHSM(t testing.TB) *softhsm {
	t.Helper()
	if _, err := exec.LookPath("softhsm2-util"); err != nil {
		t.Skip("softhsm2-util not installed (apt-get install softhsm2)")
	}
	if _, err := os.Stat(module); err != nil {
		t.Skipf("SoftHSM2 PKCS#11 module missing: %v", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	return &softhsm{dir: dir, conf: conf}
}

func (s *softhsm) run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("softhsm2-util", args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+s.conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// initToken makes a new token with the test PINs.
func (s *softhsm) initToken(t testing.TB, label string) {
	t.Helper()
	s.run(t, "--init-token", "--free", "--label", label, "--so-pin", soPIN, "--pin", userPIN)
}

// importKey puts a private key (as PKCS#8 PEM) into a token; softhsm2-util
// creates the private and the public key object with the same id.
func (s *softhsm) importKey(t testing.TB, token, label, id string, key crypto.Signer) {
	t.Helper()
	f := filepath.Join(s.dir, "import-"+label+".pem")
	if err := os.WriteFile(f, testpki.KeyPEM(key), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f)
	s.run(t, "--import", f, "--token", token, "--label", label, "--id", id, "--pin", userPIN)
}

// fixture is a PKI, a provider identity and a transaction.
type fixture struct {
	pki  *testpki.PKI
	prov *testpki.Provider
	tx   *build.Tx
}

func newFixture(t testing.TB, ec bool) *fixture {
	t.Helper()
	pki := testpki.New(domain, "pec-b.example.test")
	prov := pki.Issue(name, service, time.Time{}, time.Time{}, ec)
	o, err := build.ParseOriginal([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	classify := func(a string) daticert.DestTipo {
		if strings.HasSuffix(a, "@pec-b.example.test") {
			return daticert.Certificato
		}
		return daticert.Esterno
	}
	tx := o.Tx("opec0001.20261123160405.00001@"+domain, o.From[0], classify)
	return &fixture{pki: pki, prov: prov, tx: tx}
}

func (f *fixture) provider(key crypto.Signer) *build.Provider {
	return &build.Provider{Name: name, Domain: domain,
		Signer: &smime.Signer{Key: key, Cert: f.prov.Cert, Chain: f.prov.Chain}}
}

// accettazione signs one acceptance receipt and returns it.
func accettazione(t testing.TB, p *build.Provider, tx *build.Tx) []byte {
	t.Helper()
	m, err := p.Accettazione(at, tx)
	if err != nil {
		t.Fatalf("Accettazione: %v", err)
	}
	return m.Bytes()
}

func (f *fixture) check(t *testing.T, label string, raw []byte) {
	t.Helper()
	if r := verify.Message(raw, f.pki.Pool()); !r.Valid() {
		t.Fatalf("%s: verify.Message: %v", label, r.Err)
	}
	conformance.Check(t, label, raw, testpki.PEM(f.pki.Root.Cert))
}

// open makes a token holding the fixture's key and opens it.
func open(t testing.TB, s *softhsm, f *fixture) *hsm.Key {
	t.Helper()
	s.initToken(t, "pec-signing")
	s.importKey(t, "pec-signing", "provider-2026", "01", f.prov.Key)
	k, err := hsm.Open(hsm.Config{Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyLabel: "provider-2026"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// TestSign signs PEC receipts with RSA and ECDSA keys in SoftHSM and checks
// them with verify.Message and with openssl, xmllint and pec-lint.
func TestSign(t *testing.T) {
	for _, tc := range []struct {
		name string
		ec   bool
	}{{"rsa", false}, {"ecdsa", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSoftHSM(t)
			f := newFixture(t, tc.ec)
			k := open(t, s, f)
			if !k.Matches(f.prov.Key.Public()) {
				t.Fatal("the token's public key is not the imported key's")
			}
			if strings.Contains(k.String(), userPIN) {
				t.Fatalf("String() shows the PIN: %s", k)
			}
			raw := accettazione(t, f.provider(k), f.tx)
			f.check(t, "hsm-"+tc.name+"-accettazione", raw)

			// One signer, many goroutines (one per milter connection).
			p := f.provider(k)
			var wg sync.WaitGroup
			errs := make(chan error, 32)
			for i := 0; i < 32; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					m, err := p.Accettazione(at, f.tx)
					if err != nil {
						errs <- err
						return
					}
					if r := verify.Message(m.Bytes(), f.pki.Pool()); !r.Valid() {
						errs <- r.Err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("concurrent signature: %v", err)
			}
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			if err := k.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// TestOpenErrors: each mistake an operator can make gets a message that
// names what to check.
func TestOpenErrors(t *testing.T) {
	s := newSoftHSM(t)
	f := newFixture(t, true)
	s.initToken(t, "pec-signing")
	s.initToken(t, "other-token")
	s.importKey(t, "pec-signing", "provider-2026", "01", f.prov.Key)
	good := hsm.Config{Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyLabel: "provider-2026"}
	for _, tc := range []struct {
		name string
		edit func(c *hsm.Config)
		want []string
	}{
		{"wrong PIN", func(c *hsm.Config) { c.Pin = "00000000" }, []string{`token "pec-signing" rejected the PIN`, "check the user PIN"}},
		{"wrong token label", func(c *hsm.Config) { c.TokenLabel = "pec-sign" }, []string{`no token labelled "pec-sign"`, "check the token label", `"pec-signing"`, `"other-token"`}},
		{"wrong key label", func(c *hsm.Config) { c.KeyLabel = "provider-2025" }, []string{`no key pair with key label "provider-2025"`, "check the key label", `label "provider-2026" id 01`}},
		{"wrong key id", func(c *hsm.Config) { c.KeyID = []byte{2} }, []string{"key id 02", "check the key label/id"}},
		{"key in another token", func(c *hsm.Config) { c.TokenLabel = "other-token" }, []string{`token "other-token" has no key pair`, "key pairs in the token: none"}},
		{"missing module", func(c *hsm.Config) { c.Module = "/nonexistent/libvendor.so" }, []string{"PKCS#11 module /nonexistent/libvendor.so", "check the path"}},
		{"not a module", func(c *hsm.Config) { c.Module = s.conf }, []string{"cannot load PKCS#11 module"}},
		{"no token label", func(c *hsm.Config) { c.TokenLabel = "" }, []string{"no token label given"}},
		{"no key", func(c *hsm.Config) { c.KeyLabel = "" }, []string{"no key label or key id given"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			k, err := hsm.Open(c)
			if err == nil {
				k.Close()
				t.Fatal("Open succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if strings.Contains(err.Error(), c.Pin) && c.Pin != "" {
				t.Errorf("error shows the PIN: %v", err)
			}
		})
	}
	// A wrong PIN is refused also while another Key holds the token's
	// login (PKCS#11 would then not check it).
	k1, err := hsm.Open(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := good
	bad.Pin = "00000000"
	if k, err := hsm.Open(bad); err == nil {
		k.Close()
		t.Error("wrong PIN accepted while another key is open on the token")
	} else if !strings.Contains(err.Error(), "rejected the PIN") {
		t.Errorf("wrong PIN with a key open: %v", err)
	}
	k2, err := hsm.Open(good)
	if err != nil {
		t.Fatalf("second Open with the right PIN: %v", err)
	}
	k2.Close()
	k1.Close()

	// The right settings still work after the failures, by label, by id
	// or by both.
	for _, c := range []hsm.Config{good, {Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyID: []byte{1}},
		{Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyLabel: "provider-2026", KeyID: []byte{1}}} {
		k, err := hsm.Open(c)
		if err != nil {
			t.Fatalf("%+v: %v", c.KeyID, err)
		}
		if !k.Matches(f.prov.Key.Public()) {
			t.Error("wrong key")
		}
		k.Close()
	}
}

// TestAmbiguousLabel: two key pairs under one label must not be picked at
// random.
func TestAmbiguousLabel(t *testing.T) {
	s := newSoftHSM(t)
	f := newFixture(t, true)
	other := f.pki.Issue(name, service, time.Time{}, time.Time{}, true)
	s.initToken(t, "pec-signing")
	s.importKey(t, "pec-signing", "provider", "01", f.prov.Key)
	s.importKey(t, "pec-signing", "provider", "02", other.Key)
	_, err := hsm.Open(hsm.Config{Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyLabel: "provider"})
	if err == nil || !strings.Contains(err.Error(), "has 2 key pairs") {
		t.Fatalf("want an ambiguity error, got %v", err)
	}
	k, err := hsm.Open(hsm.Config{Module: module, TokenLabel: "pec-signing", Pin: userPIN, KeyLabel: "provider", KeyID: []byte{2}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if !k.Matches(other.Key.Public()) {
		t.Error("label+id picked the wrong key")
	}
}

func TestParseID(t *testing.T) {
	for in, want := range map[string]string{"01": "\x01", "0x0A1b": "\x0a\x1b", "": "", " 02 ": "\x02"} {
		got, err := hsm.ParseID(in)
		if err != nil || string(got) != want {
			t.Errorf("ParseID(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	if _, err := hsm.ParseID("zz"); err == nil {
		t.Error("ParseID(zz) succeeded")
	}
}

// writeConfig writes a complete pec.toml whose [signing] section is
// signing, and the certificate and root files it names.
func writeConfig(t testing.TB, dir string, f *fixture, signing string) string {
	t.Helper()
	root, cert, _ := f.pki.WriteFiles(dir, f.prov)
	os.Remove(filepath.Join(dir, "key.pem")) // the key lives in the token only
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	text := fmt.Sprintf(`[provider]
name = %s
domain = %s
managed_domains = [%s]

[signing]
certificate = %s
trusted_roots = [%s]
%s

[clamd]
network = "tcp"
address = "127.0.0.1:3310"
timeout = "20s"

[milter]
access = "inet:127.0.0.1:8891"
incoming = "inet:127.0.0.1:8892"

[deliver]
listen = "inet:127.0.0.1:10024"
dovecot = "inet:127.0.0.1:24"

[reinject]
address = "127.0.0.1:10026"

[store]
path = %s

[index]
ldif = %s
cache_dir = %s
`, q(name), q(domain), q(domain), q(cert), q(root), signing,
		q(filepath.Join(dir, "pec.db")), q(filepath.Join(dir, "index.ldif")), q(filepath.Join(dir, "index-cache")))
	path := filepath.Join(dir, "pec.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigRoundTrip: pec.toml with the pkcs11_* keys gives a provider
// that signs with the token key.
func TestConfigRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		ec   bool
		pin  func(dir string) string
	}{
		{"rsa-pin", false, func(string) string { return fmt.Sprintf("pkcs11_pin = %q", userPIN) }},
		{"ecdsa-pin-file", true, func(dir string) string {
			f := filepath.Join(dir, "pin")
			if err := os.WriteFile(f, []byte(userPIN+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("pkcs11_pin_file = %q", f)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSoftHSM(t)
			f := newFixture(t, tc.ec)
			s.initToken(t, "pec-signing")
			s.importKey(t, "pec-signing", "provider-2026", "01", f.prov.Key)
			dir := t.TempDir()
			path := writeConfig(t, dir, f, fmt.Sprintf("pkcs11_module = %q\npkcs11_token = \"pec-signing\"\n%s\npkcs11_key_label = \"provider-2026\"", module, tc.pin(dir)))
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			p, err := cfg.BuildProvider()
			if err != nil {
				t.Fatal(err)
			}
			k, ok := p.Signer.Key.(*hsm.Key)
			if !ok {
				t.Fatalf("signer key is %T, want *hsm.Key", p.Signer.Key)
			}
			defer k.Close()
			p.NewID = func(time.Time, string) string { return "opec0001.20261123160405.00002@" + domain }
			f.check(t, "config-"+tc.name, accettazione(t, p, f.tx))
		})
	}
}

// TestConfigKeyMismatch: a token key that is not the certificate's is
// refused by config.Signer with a message that says so.
func TestConfigKeyMismatch(t *testing.T) {
	s := newSoftHSM(t)
	f := newFixture(t, false)
	other := f.pki.Issue(name, service, time.Time{}, time.Time{}, false)
	s.initToken(t, "pec-signing")
	s.importKey(t, "pec-signing", "old-key", "01", other.Key)
	path := writeConfig(t, t.TempDir(), f, fmt.Sprintf("pkcs11_module = %q\npkcs11_token = \"pec-signing\"\npkcs11_pin = %q\npkcs11_key_label = \"old-key\"", module, userPIN))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cfg.Signer()
	if err == nil {
		t.Fatal("Signer accepted a token key that does not match the certificate")
	}
	t.Logf("error: %v", err)
	for _, w := range []string{"[signing]", "is not the key of the certificate", `key label "old-key"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// TestConfigErrors: Load refuses incomplete or contradictory pkcs11_* sets,
// and Signer reports token errors under [signing].
func TestConfigErrors(t *testing.T) {
	s := newSoftHSM(t)
	f := newFixture(t, true)
	s.initToken(t, "pec-signing")
	s.importKey(t, "pec-signing", "provider-2026", "01", f.prov.Key)
	dir := t.TempDir()
	base := fmt.Sprintf("pkcs11_module = %q\npkcs11_token = \"pec-signing\"\npkcs11_key_label = \"provider-2026\"\n", module)
	for _, tc := range []struct {
		name, signing, want string
	}{
		{"no pin", base, "pkcs11_pin or pkcs11_pin_file is required"},
		{"both pins", base + "pkcs11_pin = \"1\"\npkcs11_pin_file = \"/x\"", "both set"},
		{"key and module", base + "pkcs11_pin = \"1\"\nkey = \"/k.pem\"", "key and pkcs11_module are both set"},
		{"no module", "pkcs11_token = \"pec-signing\"\nkey = \"/k.pem\"", "without pkcs11_module"},
		{"no token", fmt.Sprintf("pkcs11_module = %q\npkcs11_pin = \"1\"\npkcs11_key_label = \"k\"", module), "pkcs11_token is required"},
		{"no key label", fmt.Sprintf("pkcs11_module = %q\npkcs11_token = \"t\"\npkcs11_pin = \"1\"", module), "pkcs11_key_label (or pkcs11_key_id) is required"},
		{"bad key id", base + "pkcs11_pin = \"1\"\npkcs11_key_id = \"xyz\"", "pkcs11_key_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(writeConfig(t, dir, f, tc.signing))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
	// Token-side errors come out of Signer.
	for _, tc := range []struct {
		name, signing, want string
	}{
		{"wrong pin", base + "pkcs11_pin = \"00000000\"", "rejected the PIN"},
		{"missing pin file", base + "pkcs11_pin_file = \"/nonexistent/pin\"", "pkcs11_pin_file"},
		{"by id", fmt.Sprintf("pkcs11_module = %q\npkcs11_token = \"pec-signing\"\npkcs11_key_id = \"01\"\npkcs11_pin = %q", module, userPIN), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(writeConfig(t, dir, f, tc.signing))
			if err != nil {
				t.Fatal(err)
			}
			sg, err := cfg.Signer()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				sg.Key.(*hsm.Key).Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

// TestConfigFileKey: the key file still works beside the new settings.
func TestConfigFileKey(t *testing.T) {
	f := newFixture(t, false)
	dir := t.TempDir()
	path := writeConfig(t, dir, f, "")
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), testpki.KeyPEM(f.prov.Key), 0o600); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(path)
	text = []byte(strings.Replace(string(text), "[signing]\n", fmt.Sprintf("[signing]\nkey = %q\n", filepath.Join(dir, "key.pem")), 1))
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.BuildProvider()
	if err != nil {
		t.Fatal(err)
	}
	raw := accettazione(t, p, f.tx)
	if r := verify.Message(raw, f.pki.Pool()); !r.Valid() {
		t.Fatal(r.Err)
	}
}

// The two benchmarks sign the same acceptance receipt (build, CMS, one
// RSA-2048 or ECDSA P-256 signature), with the key in SoftHSM and with the
// key in memory: the difference is the cost of the PKCS#11 round trip and
// of the token's own implementation (SoftHSM uses OpenSSL; a network or
// USB HSM adds its latency).
func BenchmarkSignHSM(b *testing.B) {
	for _, ec := range []bool{false, true} {
		b.Run(keyName(ec), func(b *testing.B) {
			s := newSoftHSM(b)
			f := newFixture(b, ec)
			p := f.provider(open(b, s, f))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				accettazione(b, p, f.tx)
			}
		})
	}
}

func BenchmarkSignFile(b *testing.B) {
	for _, ec := range []bool{false, true} {
		b.Run(keyName(ec), func(b *testing.B) {
			f := newFixture(b, ec)
			p := f.provider(f.prov.Key)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				accettazione(b, p, f.tx)
			}
		})
	}
}

func keyName(ec bool) string {
	if ec {
		return "ecdsa-p256"
	}
	return "rsa-2048"
}
