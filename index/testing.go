package index

import (
	"bytes"
	"crypto/x509"
	"strings"

	"github.com/pecgo/pec/smime"
)

// TestProvider describes a provider for TestLDIF. It is meant for tests
// (of this and other packages) that need a providers' index.
type TestProvider struct {
	Name        string
	MailReceipt string // "" means "posta-certificata@" + the first domain
	Domains     []string
	Certs       []*x509.Certificate
	Unit        string // "" for the main environment; else a secondary environment entry
}

// TestLDIF renders, for tests, a valid providers' directory: the
// o=postacert root entry and one entry per provider, with
// providerCertificateHash = smime.CertSHA1 of each certificate and
// providerCertificate;binary the DER. Feed it to ParseLDIF, or sign it with
// SignLDIF for LoadSignedLDIF.
func TestLDIF(providers ...TestProvider) []byte {
	ps := make([]Provider, 0, len(providers))
	for _, tp := range providers {
		p := Provider{Name: tp.Name, Unit: tp.Unit, MailReceipt: tp.MailReceipt, Certificates: tp.Certs}
		for _, d := range tp.Domains {
			p.Domains = append(p.Domains, strings.ToLower(d))
		}
		if p.MailReceipt == "" && len(p.Domains) > 0 {
			p.MailReceipt = "posta-certificata@" + p.Domains[0]
		}
		for _, c := range tp.Certs {
			p.CertHashes = append(p.CertHashes, smime.CertSHA1(c))
		}
		ps = append(ps, p)
	}
	var b bytes.Buffer
	if err := writeLDIF(&b, "https://igpec.example.test/igpec.ldif.p7m", "Base root for the PEC providers directory (test)", ps); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	return b.Bytes()
}
