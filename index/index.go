// Package index is the PEC providers' index (RFC 6109 §4.5, "IGPEC"): the
// directory that tells which mail domains belong to certified-mail
// providers and which certificates those providers sign with.
//
// Every provider keeps a local copy of the directory, refreshed daily
// (RFC 6109 §4.5), and looks things up locally: by managedDomains when it
// classifies a recipient at acceptance (§2.2.1), by providerCertificateHash
// and then the full providerCertificate when it checks the origin of a
// signed transport envelope or receipt (§2.2.2).
//
// An Index is an immutable snapshot built by ParseLDIF (plain LDIF),
// LoadSignedLDIF (the CMS-signed .p7m the RFC distributes) or FetchLDAP (an
// LDAP replica). A Syncer refreshes it from a Source and keeps the last good
// snapshot on disk, so a source that is down never empties the index.
//
// Lookups are case-insensitive: the schema's matching rules are caseIgnore
// and RFC 6109 §2.2.1/§2.2.2 compare case-insensitively (the "mainly
// case-sensitive" of §4.5 is contradicted by the schema itself).
//
// Broken provider entries: ParseLDIF and FetchLDAP skip a provider entry
// that cannot be used safely (a mandatory attribute missing or empty, a
// certificate that is not valid base64 or not a parsable X.509 DER, no
// well-formed hash or domain left) and record why, naming the LDIF line, in
// Index.Warnings; the Syncer logs every warning. One broken entry does not
// throw the whole directory away, and the skipped provider shows up as
// "removed" in the Diff the Syncer logs. Malformed LDIF syntax (a line that
// is not "attr: value", a record that does not start with dn:, change
// records, URL values) fails the whole parse with an error naming the line,
// and so does a file with no usable provider entry at all, so that a
// truncated or wrong file never replaces a good cached index.
package index

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pecgo/pec/smime"
)

// DefaultBaseDN is the directory's base entry (RFC 6109 §4.5).
const DefaultBaseDN = "o=postacert"

// Provider is one provider entry (main or secondary environment).
type Provider struct {
	// DN is the entry's distinguished name as read (providerName=...,o=postacert
	// or providerUnit=...,providerName=...,o=postacert).
	DN              string
	Name            string   // providerName
	Unit            string   // providerUnit, "" for the main environment
	MailReceipt     string   // service mailbox for take-charge and virus notices
	Domains         []string // managedDomains, lower-cased
	CertHashes      []string // providerCertificateHash, lower-cased hex
	Certificates    []*x509.Certificate
	Description     string
	LDIFLocationURL string
}

// Label names the entry in logs: the provider name, with the secondary
// environment in brackets.
func (p *Provider) Label() string {
	if p.Unit == "" {
		return p.Name
	}
	return p.Name + " [" + p.Unit + "]"
}

func (p *Provider) clone() *Provider {
	c := *p
	c.Domains = slices.Clone(p.Domains)
	c.CertHashes = slices.Clone(p.CertHashes)
	c.Certificates = slices.Clone(p.Certificates)
	return &c
}

// Index is an immutable snapshot; safe for concurrent use. Lookups return
// copies, so callers cannot alter the snapshot (the *x509.Certificate values
// are shared and must be treated as read-only, as usual).
type Index struct {
	providers []Provider       // in source order
	byDomain  map[string]int   // lower-cased domain -> providers index
	byHash    map[string][]int // lower-cased SHA-1 hex -> providers indexes, main environment first
	warnings  []string

	rootURL, rootDescription string // the o=postacert entry

	signer   *x509.Certificate // set by LoadSignedLDIF
	signedAt time.Time
}

// Errors returned by ByCertificate, for errors.Is.
var (
	// ErrHashNotListed: step 1 failed, the certificate's SHA-1 is not a
	// providerCertificateHash of any provider.
	ErrHashNotListed = errors.New("index: certificate hash not in the providers' index")
	// ErrCertMismatch: step 2 failed, the hash is listed but no
	// providerCertificate of that entry is byte-for-byte the certificate.
	ErrCertMismatch = errors.New("index: certificate differs from the listed providerCertificate")
)

// ByDomain finds the provider entry whose managedDomains holds domain
// (case-insensitive). A full address is accepted too: the part after the
// last "@" is used; angle brackets, surrounding space and a trailing dot are
// ignored.
func (ix *Index) ByDomain(domain string) (*Provider, bool) {
	if ix == nil {
		return nil, false
	}
	i, ok := ix.byDomain[normDomain(domain)]
	if !ok {
		return nil, false
	}
	return ix.providers[i].clone(), true
}

// ByCertHash finds the provider entry listing the SHA-1 hex hash
// (case-insensitive; colons and spaces, as openssl prints fingerprints, are
// ignored). When a main and a secondary environment list the same
// certificate, the main environment's entry is returned.
func (ix *Index) ByCertHash(sha1hex string) (*Provider, bool) {
	if ix == nil {
		return nil, false
	}
	is := ix.byHash[normHash(sha1hex)]
	if len(is) == 0 {
		return nil, false
	}
	return ix.providers[is[0]].clone(), true
}

// ByCertificate is the signature origin check of RFC 6109 §2.2.2: the
// certificate's SHA-1 must be a listed providerCertificateHash (step 1,
// else ErrHashNotListed) and the certificate must be byte-for-byte one of
// the providerCertificate values of an entry listing that hash (step 2,
// else ErrCertMismatch). The error says which step failed.
func (ix *Index) ByCertificate(c *x509.Certificate) (*Provider, error) {
	if c == nil {
		return nil, errors.New("index: no certificate to look up")
	}
	h := smime.CertSHA1(c)
	var is []int
	if ix != nil {
		is = ix.byHash[h]
	}
	if len(is) == 0 {
		return nil, fmt.Errorf("%w: step 1 (hash lookup) failed: SHA-1 %s of %q is not a providerCertificateHash of any provider",
			ErrHashNotListed, h, c.Subject.String())
	}
	for _, i := range is {
		for _, pc := range ix.providers[i].Certificates {
			if bytes.Equal(pc.Raw, c.Raw) {
				return ix.providers[i].clone(), nil
			}
		}
	}
	return nil, fmt.Errorf("%w: step 2 (certificate comparison) failed: SHA-1 %s is listed for %q but none of its providerCertificate values equals the certificate %q",
		ErrCertMismatch, h, ix.providers[is[0]].Label(), c.Subject.String())
}

// IsCertified reports whether the address's domain is a managedDomain of
// some provider, i.e. whether the address is a certified mailbox.
func (ix *Index) IsCertified(addr string) bool {
	_, ok := ix.ByDomain(addr)
	return ok
}

// Providers returns copies of every provider entry, in source order.
func (ix *Index) Providers() []Provider {
	if ix == nil {
		return nil
	}
	out := make([]Provider, len(ix.providers))
	for i := range ix.providers {
		out[i] = *ix.providers[i].clone()
	}
	return out
}

// Len is the number of provider entries (main and secondary environments).
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.providers)
}

// Warnings lists the problems met while building the snapshot: skipped
// provider entries (with the LDIF line) and tolerated oddities (a certificate
// whose hash is not listed, a domain claimed twice, a providerName that
// disagrees with the DN, ...). The Syncer logs them.
func (ix *Index) Warnings() []string {
	if ix == nil {
		return nil
	}
	return slices.Clone(ix.warnings)
}

// LDIFLocationURL is the o=postacert root entry's LDIFLocationURL: where the
// whole signed directory is published (RFC 6109 §4.5.6); "" if absent.
func (ix *Index) LDIFLocationURL() string {
	if ix == nil {
		return ""
	}
	return ix.rootURL
}

// SignedBy returns the signer's certificate and the CMS signingTime when the
// snapshot came from LoadSignedLDIF (nil and zero otherwise, e.g. for a
// snapshot read back from the cache).
func (ix *Index) SignedBy() (*x509.Certificate, time.Time) {
	if ix == nil {
		return nil, time.Time{}
	}
	return ix.signer, ix.signedAt
}

// Diff lists what changed between two snapshots (added and removed
// provider entries, managed domains, certificate hashes, mailReceipt) as
// human-readable lines for the log, sorted by provider. Either side may be
// nil (an empty index).
func Diff(old, new *Index) []string {
	collect := func(ix *Index) map[string]*Provider {
		m := map[string]*Provider{}
		if ix == nil {
			return m
		}
		for i := range ix.providers {
			p := &ix.providers[i]
			m[providerKey(p.Name, p.Unit)] = p
		}
		return m
	}
	om, nm := collect(old), collect(new)
	keys := make([]string, 0, len(om)+len(nm))
	for k := range om {
		keys = append(keys, k)
	}
	for k := range nm {
		if _, ok := om[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		o, n := om[k], nm[k]
		switch {
		case o == nil:
			out = append(out, fmt.Sprintf("provider added: %s (domains %s; certificate hashes %s)",
				n.Label(), strings.Join(n.Domains, ", "), strings.Join(n.CertHashes, ", ")))
		case n == nil:
			out = append(out, fmt.Sprintf("provider removed: %s (domains %s)", o.Label(), strings.Join(o.Domains, ", ")))
		default:
			added, removed := setDiff(o.Domains, n.Domains)
			for _, d := range added {
				out = append(out, fmt.Sprintf("%s: managed domain added: %s", n.Label(), d))
			}
			for _, d := range removed {
				out = append(out, fmt.Sprintf("%s: managed domain removed: %s", n.Label(), d))
			}
			added, removed = setDiff(o.CertHashes, n.CertHashes)
			for _, h := range added {
				out = append(out, fmt.Sprintf("%s: certificate hash added: %s", n.Label(), h))
			}
			for _, h := range removed {
				out = append(out, fmt.Sprintf("%s: certificate hash removed: %s", n.Label(), h))
			}
			if !strings.EqualFold(o.MailReceipt, n.MailReceipt) {
				out = append(out, fmt.Sprintf("%s: mailReceipt changed: %s -> %s", n.Label(), o.MailReceipt, n.MailReceipt))
			}
		}
	}
	return out
}

// setDiff returns the values of b not in a and of a not in b, sorted.
func setDiff(a, b []string) (added, removed []string) {
	for _, v := range b {
		if !slices.Contains(a, v) {
			added = append(added, v)
		}
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			removed = append(removed, v)
		}
	}
	sort.Strings(added)
	sort.Strings(removed)
	return
}

func providerKey(name, unit string) string {
	return strings.ToLower(strings.TrimSpace(name)) + "\x00" + strings.ToLower(strings.TrimSpace(unit))
}

// normDomain lower-cases a domain or the domain of an address.
func normDomain(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	return strings.ToLower(s)
}

// normHash lower-cases a hex hash and drops colons and spaces.
func normHash(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == ':' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	return strings.ToLower(s)
}
