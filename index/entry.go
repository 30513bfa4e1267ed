package index

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/pecgo/pec/smime"
)

// Entry is our own provider's record for the registry (RFC 6109 §4.5,
// PEC-SPEC §8): what "pecctl index entry" builds from the configuration.
type Entry struct {
	Name        string   // providerName
	MailReceipt string   // mailReceipt: our service mailbox
	Domains     []string // managedDomains
	// Certificates are the signing certificates the entry lists, with a
	// providerCertificateHash each: the current one, and during a renewal
	// the next one too, with overlapping validity (RFC 6109 §4.5).
	Certificates []*x509.Certificate
	// LDIFLocationURL is the HTTPS URL where we publish the signed file
	// (RFC 6109 §4.5.6); optional.
	LDIFLocationURL string
	Description     string
}

// EntryLDIF renders e as an LDIF file in the form the registry collects
// from each provider: the o=postacert root entry and our main-environment
// entry. The result is read back with ParseLDIF and refused if the index
// reader would not take it as given (a bad domain, mailbox or a missing
// attribute), so what is published is what other providers will read.
func EntryLDIF(e Entry) ([]byte, error) {
	if e.Name == "" || e.MailReceipt == "" || len(e.Domains) == 0 || len(e.Certificates) == 0 {
		return nil, errors.New("index: an entry needs providerName, mailReceipt, managedDomains and a certificate (RFC 6109 §4.5.9)")
	}
	p := Provider{Name: e.Name, MailReceipt: strings.ToLower(e.MailReceipt), Certificates: e.Certificates,
		LDIFLocationURL: e.LDIFLocationURL, Description: e.Description}
	seen := map[string]bool{}
	for _, d := range e.Domains {
		d = strings.ToLower(d)
		if !seen[d] {
			seen[d] = true
			p.Domains = append(p.Domains, d)
		}
	}
	for _, c := range e.Certificates {
		p.CertHashes = append(p.CertHashes, smime.CertSHA1(c))
	}
	var b bytes.Buffer
	if err := writeLDIF(&b, "", "", []Provider{p}); err != nil {
		return nil, err
	}
	ix, err := ParseLDIF(bytes.NewReader(b.Bytes()))
	if err != nil {
		return nil, fmt.Errorf("index: the entry does not read back: %w", err)
	}
	if ix.Len() != 1 || len(ix.Warnings()) > 0 {
		return nil, fmt.Errorf("index: the index reader does not take the entry as built: %s", strings.Join(ix.Warnings(), "; "))
	}
	got := ix.Providers()[0]
	if len(got.Domains) != len(p.Domains) || len(got.CertHashes) != len(p.CertHashes) || got.MailReceipt != p.MailReceipt {
		return nil, fmt.Errorf("index: the entry reads back as %+v", got)
	}
	return b.Bytes(), nil
}
