// Package testpki generates, at test time, a PEC-like PKI: a root, an
// "AgID-like" intermediate with NameConstraints, and provider signing
// certificates with the RFC 6109 §5.5 profile (KeyUsage digitalSignature
// critical, SKI, AKI, rfc822Name in subjectAltName, no BasicConstraints).
// No key ever lives in the repository.
package testpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pecgo/pec/smime"
)

// CA is a certificate with its key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// PKI is a root and an intermediate.
type PKI struct {
	Root, Intermediate CA
}

// Provider is a provider's signing identity.
type Provider struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // the intermediate
}

var (
	serialMu sync.Mutex
	serial   int64 = 1000
)

func nextSerial() *big.Int {
	serialMu.Lock()
	defer serialMu.Unlock()
	serial++
	return big.NewInt(serial)
}

// Epoch is the start of validity of every test certificate.
var Epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func newRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func ski(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	s := sha1.Sum(der)
	return s[:]
}

// New makes a root and an intermediate whose NameConstraints permit the
// given e-mail domains (as AgID CA1 does for the providers' domains).
func New(permittedDomains ...string) *PKI {
	rk := newRSA()
	root := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{Country: []string{"IT"}, Organization: []string{"Test PEC Trust"}, CommonName: "Test PEC Root CA"},
		NotBefore: Epoch, NotAfter: Epoch.AddDate(30, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: ski(&rk.PublicKey),
	}
	rder, err := x509.CreateCertificate(rand.Reader, root, root, &rk.PublicKey, rk)
	if err != nil {
		panic(err)
	}
	rc, _ := x509.ParseCertificate(rder)
	ik := newRSA()
	inter := &x509.Certificate{
		SerialNumber: nextSerial(), Subject: pkix.Name{Country: []string{"IT"}, Organization: []string{"Test Agenzia"}, CommonName: "Test PEC CA1"},
		NotBefore: Epoch, NotAfter: Epoch.AddDate(25, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, SubjectKeyId: ski(&ik.PublicKey),
		PermittedEmailAddresses: permittedDomains,
	}
	ider, err := x509.CreateCertificate(rand.Reader, inter, rc, &ik.PublicKey, rk)
	if err != nil {
		panic(err)
	}
	ic, _ := x509.ParseCertificate(ider)
	return &PKI{Root: CA{rc, rk}, Intermediate: CA{ic, ik}}
}

// Issue makes a provider signing certificate for the service address
// (e.g. posta-certificata@pec.example.test) with O = providerName.
// notAfter zero means 10 years after Epoch. ec selects an ECDSA P-256 key.
func (p *PKI) Issue(providerName, addr string, notBefore, notAfter time.Time, ec bool) *Provider {
	return p.IssueWith(providerName, addr, Options{NotBefore: notBefore, NotAfter: notAfter, EC: ec})
}

// Options are the optional parts of a provider certificate made by IssueWith.
type Options struct {
	NotBefore, NotAfter time.Time // zero: Epoch, Epoch + 10 years
	EC                  bool      // an ECDSA P-256 key instead of RSA 2048
	// CRLDistributionPoints are URIs put in the certificate's CRL
	// distribution points extension (RFC 5280 §4.2.1.13).
	CRLDistributionPoints []string
}

// IssueWith is Issue with options.
func (p *PKI) IssueWith(providerName, addr string, o Options) *Provider {
	notBefore, notAfter := o.NotBefore, o.NotAfter
	var key crypto.Signer
	if o.EC {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		key = k
	} else {
		key = newRSA()
	}
	if notBefore.IsZero() {
		notBefore = Epoch
	}
	if notAfter.IsZero() {
		notAfter = Epoch.AddDate(10, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: nextSerial(),
		Subject:      pkix.Name{Country: []string{"IT"}, Organization: []string{providerName}, CommonName: "Posta Certificata"},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature, // Go marks KeyUsage critical
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses:        []string{addr},
		SubjectKeyId:          ski(key.Public()),
		CRLDistributionPoints: o.CRLDistributionPoints,
		// BasicConstraintsValid false: RFC 6109 §5.5 forbids the extension
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Intermediate.Cert, key.Public(), p.Intermediate.Key)
	if err != nil {
		panic(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &Provider{Cert: c, Key: key, Chain: []*x509.Certificate{p.Intermediate.Cert}}
}

// CRL returns a DER certificate revocation list signed by ca (normally
// the intermediate, which issues the providers' certificates), valid from
// thisUpdate to nextUpdate, listing revoked. Each call gets a higher CRL
// number.
func (ca CA) CRL(thisUpdate, nextUpdate time.Time, revoked ...x509.RevocationListEntry) []byte {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: nextSerial(), ThisUpdate: thisUpdate, NextUpdate: nextUpdate,
		RevokedCertificateEntries: revoked,
	}, ca.Cert, ca.Key)
	if err != nil {
		panic(err)
	}
	return der
}

// Revoked is the CRL entry revoking cert at the given time for reason (an
// RFC 5280 §5.3.1 CRLReason code, e.g. 1 keyCompromise).
func Revoked(cert *x509.Certificate, at time.Time, reason int) x509.RevocationListEntry {
	return x509.RevocationListEntry{SerialNumber: cert.SerialNumber, RevocationTime: at, ReasonCode: reason}
}

// Pool returns trusted roots holding only the root.
func (p *PKI) Pool() *smime.Roots { return smime.NewRoots(p.Root.Cert) }

// PEM encodes certificates.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

// KeyPEM encodes a private key as PKCS#8.
func KeyPEM(k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// WriteFiles writes root.pem, and for the provider cert.pem (leaf + chain)
// and key.pem into dir; it returns their paths.
func (p *PKI) WriteFiles(dir string, prov *Provider) (root, cert, key string) {
	root = filepath.Join(dir, "root.pem")
	cert = filepath.Join(dir, "cert.pem")
	key = filepath.Join(dir, "key.pem")
	must(os.WriteFile(root, PEM(p.Root.Cert), 0o644))
	must(os.WriteFile(cert, PEM(append([]*x509.Certificate{prov.Cert}, prov.Chain...)...), 0o644))
	must(os.WriteFile(key, KeyPEM(prov.Key), 0o600))
	return
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
