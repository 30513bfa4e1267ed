package testpki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// SHA1PKI is a 2014-style provider chain: a root, an intermediate and a
// provider's signing certificate, the last two signed with sha1WithRSA by
// openssl (crypto/x509 cannot sign with SHA-1), as DigitPA CA1 chains were
// (PEC-SPEC §6.7). Made at test time in Dir; root.pem is the root.
type SHA1PKI struct {
	Dir      string
	Root     *x509.Certificate
	Provider *Provider // the signing certificate, its key, the intermediate
}

// SHA1Options shape the intermediate and the signing certificate.
type SHA1Options struct {
	InterEnd  string // openssl -enddate of the intermediate, default 20300101000000Z
	LeafEnd   string // openssl -enddate of the signing certificate, default 20190101000000Z
	Permitted string // nameConstraints permitted e-mail domain of the intermediate, default: the leaf's domain
	LeafEmail string // default posta-certificata@pec-old.example.test
	Provider  string // the signing certificate's O, default "Old PEC S.p.A."
}

// NewSHA1 makes a SHA1PKI; it skips the test when openssl is missing.
func NewSHA1(t testing.TB, o SHA1Options) *SHA1PKI {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	if o.InterEnd == "" {
		o.InterEnd = "20300101000000Z"
	}
	if o.LeafEnd == "" {
		o.LeafEnd = "20190101000000Z"
	}
	if o.LeafEmail == "" {
		o.LeafEmail = "posta-certificata@pec-old.example.test"
	}
	if o.Permitted == "" {
		o.Permitted = o.LeafEmail[strings.LastIndexByte(o.LeafEmail, '@')+1:]
	}
	if o.Provider == "" {
		o.Provider = "Old PEC S.p.A."
	}
	dir := t.TempDir()
	p := &SHA1PKI{Dir: dir}
	// the root: its own signature is never checked, Go may make it
	rootKey := newRSA()
	tmpl := &x509.Certificate{SerialNumber: nextSerial(), Subject: pkix.Name{CommonName: "Old Test Root CA", Organization: []string{"Old Test Trust"}},
		NotBefore: time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2035, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rootKey.PublicKey, rootKey)
	if err != nil {
		t.Fatal(err)
	}
	p.Root, _ = x509.ParseCertificate(der)
	write := func(name string, b []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	write("root.pem", PEM(p.Root))
	write("root.key", KeyPEM(rootKey))
	write("index.txt", nil)
	write("serial", []byte("1000\n"))
	os.Mkdir(filepath.Join(dir, "new"), 0o700)
	write("ca.cnf", []byte(fmt.Sprintf(`[ca]
default_ca = ca_old
[ca_old]
database = %[1]s/index.txt
new_certs_dir = %[1]s/new
serial = %[1]s/serial
policy = policy_any
unique_subject = no
email_in_dn = no
default_md = sha1
[policy_any]
commonName = supplied
organizationName = optional
countryName = optional
[req]
distinguished_name = dn
prompt = no
[dn]
CN = x
[v3_inter]
basicConstraints = critical,CA:true,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
nameConstraints = critical,permitted;email:%[2]s
[v3_leaf]
basicConstraints = CA:false
keyUsage = critical,digitalSignature,nonRepudiation
subjectAltName = email:%[3]s
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`, dir, o.Permitted, o.LeafEmail)))
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(openssl, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	issue := func(name, subj, caCert, caKey, ext, start, end string) *x509.Certificate {
		run("req", "-config", "ca.cnf", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", name+".key", "-subj", subj, "-out", name+".csr")
		run("ca", "-config", "ca.cnf", "-batch", "-notext", "-md", "sha1", "-cert", caCert, "-keyfile", caKey,
			"-extfile", "ca.cnf", "-extensions", ext, "-startdate", start, "-enddate", end, "-in", name+".csr", "-out", name+".pem")
		b, _ := os.ReadFile(filepath.Join(dir, name+".pem"))
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s.pem holds no certificate", name)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if c.SignatureAlgorithm != x509.SHA1WithRSA {
			t.Fatalf("test bug: %s signed with %v", name, c.SignatureAlgorithm)
		}
		return c
	}
	inter := issue("inter", "/CN=Old Test CA1/O=Old Test Trust", "root.pem", "root.key", "v3_inter", "20120101000000Z", o.InterEnd)
	leaf := issue("leaf", "/CN=Posta Certificata/O="+o.Provider+"/C=IT", "inter.pem", "inter.key", "v3_leaf", "20140101000000Z", o.LeafEnd)
	b, _ := os.ReadFile(filepath.Join(dir, "leaf.key"))
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	p.Provider = &Provider{Cert: leaf, Key: k.(crypto.Signer), Chain: []*x509.Certificate{inter}}
	return p
}
