package index

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"

	"github.com/pecgo/pec/smime"
)

// record is one directory entry as read from LDIF or from LDAP.
type record struct {
	dn    string
	line  int // LDIF line of the dn: line; 0 for entries read from LDAP
	attrs []attr
}

// attr is one attribute value of a record.
type attr struct {
	desc  string // attribute description as written, e.g. "providerCertificate;binary"
	typ   string // lower-cased type, options dropped, known OIDs mapped to names
	value []byte
	err   error // the value could not be decoded (bad base64)
	line  int
}

// Attribute types of the schema (RFC 6109 §4.5.1–§4.5.7), lower-cased.
const (
	atHash        = "providercertificatehash"
	atCert        = "providercertificate"
	atName        = "providername"
	atMailReceipt = "mailreceipt"
	atDomains     = "manageddomains"
	atLocation    = "ldiflocationurl"
	atUnit        = "providerunit"
	atDescription = "description"
	atObjectClass = "objectclass"
)

// canonical spells the attribute types as the schema does, for messages
// and for WriteLDIF.
var canonical = map[string]string{
	atHash: "providerCertificateHash", atCert: "providerCertificate", atName: "providerName",
	atMailReceipt: "mailReceipt", atDomains: "managedDomains", atLocation: "LDIFLocationURL",
	atUnit: "providerUnit", atDescription: "description", atObjectClass: "objectClass",
}

// oidNames maps numeric attribute descriptions to names (an LDAP server or
// LDIF export may use either form).
var oidNames = map[string]string{
	"1.3.6.1.4.1.16572.2.2.1": atHash,
	"1.3.6.1.4.1.16572.2.2.2": atCert,
	"1.3.6.1.4.1.16572.2.2.3": atName,
	"1.3.6.1.4.1.16572.2.2.4": atMailReceipt,
	"1.3.6.1.4.1.16572.2.2.5": atDomains,
	"1.3.6.1.4.1.16572.2.2.6": atLocation,
	"1.3.6.1.4.1.16572.2.2.7": atUnit,
	"2.5.4.0":                 atObjectClass,
	"2.5.4.13":                atDescription,
}

// attrType reduces an attribute description ("providerCertificate;binary",
// "description;lang-it", "1.3.6.1.4.1.16572.2.2.5") to its lower-cased type.
func attrType(desc string) string {
	t := desc
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	t = strings.ToLower(strings.TrimSpace(t))
	if n, ok := oidNames[t]; ok {
		return n
	}
	return t
}

func (r *record) values(typ string) []attr {
	var out []attr
	for _, a := range r.attrs {
		if a.typ == typ {
			out = append(out, a)
		}
	}
	return out
}

func (r *record) hasObjectClass(oc string) bool {
	for _, a := range r.values(atObjectClass) {
		if a.err == nil && strings.EqualFold(strings.TrimSpace(string(a.value)), oc) {
			return true
		}
	}
	return false
}

func (r *record) where() string {
	if r.line > 0 {
		return fmt.Sprintf("line %d: entry %q", r.line, r.dn)
	}
	return fmt.Sprintf("entry %q", r.dn)
}

func (a *attr) where() string {
	if a.line > 0 {
		return fmt.Sprintf("%s at line %d", a.desc, a.line)
	}
	return a.desc
}

// buildIndex turns records into a snapshot. base is the root entry's DN.
func buildIndex(recs []record, base string) (*Index, error) {
	baseDN, _ := ldap.ParseDN(base)
	ix := &Index{byDomain: map[string]int{}, byHash: map[string][]int{}}
	seen := map[string]string{}
	var skipped []string
	for i := range recs {
		r := &recs[i]
		if !r.hasObjectClass("provider") {
			if d, err := ldap.ParseDN(r.dn); err == nil && baseDN != nil && d.EqualFold(baseDN) {
				ix.rootURL = r.first(atLocation)
				ix.rootDescription = r.first(atDescription)
			}
			continue
		}
		p, warns, err := r.provider()
		ix.warnings = append(ix.warnings, warns...)
		if err != nil {
			w := fmt.Sprintf("%s skipped: %v", r.where(), err)
			ix.warnings = append(ix.warnings, w)
			skipped = append(skipped, w)
			continue
		}
		k := providerKey(p.Name, p.Unit)
		if prev, dup := seen[k]; dup {
			w := fmt.Sprintf("%s skipped: same providerName and providerUnit as the %s", r.where(), prev)
			ix.warnings = append(ix.warnings, w)
			skipped = append(skipped, w)
			continue
		}
		seen[k] = r.where()
		ix.providers = append(ix.providers, *p)
	}
	if len(ix.providers) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("index: no usable provider entry (%d skipped; %s)", len(skipped), skipped[0])
		}
		return nil, errors.New("index: no provider entry (objectClass provider) found")
	}
	ix.finish()
	return ix, nil
}

// finish fills the lookup maps and adds the cross-entry warnings.
func (ix *Index) finish() {
	mains := map[string]bool{}
	for i := range ix.providers {
		p := &ix.providers[i]
		if p.Unit == "" {
			mains[strings.ToLower(p.Name)] = true
		}
	}
	for i := range ix.providers {
		p := &ix.providers[i]
		for _, d := range p.Domains {
			if j, taken := ix.byDomain[d]; taken {
				ix.warnings = append(ix.warnings, fmt.Sprintf("managed domain %s is listed by both %q and %q; the first wins",
					d, ix.providers[j].Label(), p.Label()))
				continue
			}
			ix.byDomain[d] = i
		}
		for _, h := range p.CertHashes {
			ix.byHash[h] = append(ix.byHash[h], i)
		}
		if p.Unit != "" && !mains[strings.ToLower(p.Name)] {
			ix.warnings = append(ix.warnings, fmt.Sprintf("secondary environment %q has no main-environment entry named %q (RFC 6109 §4.5.7)", p.Label(), p.Name))
		}
	}
	for _, is := range ix.byHash {
		sort.SliceStable(is, func(a, b int) bool {
			return ix.providers[is[a]].Unit == "" && ix.providers[is[b]].Unit != ""
		})
	}
}

func (r *record) first(typ string) string {
	for _, a := range r.values(typ) {
		if a.err == nil {
			return strings.TrimSpace(string(a.value))
		}
	}
	return ""
}

// provider validates a provider entry. An error means the entry is unusable
// and is skipped; warnings are kept for the log.
func (r *record) provider() (*Provider, []string, error) {
	var warns []string
	warn := func(format string, args ...any) {
		warns = append(warns, r.where()+": "+fmt.Sprintf(format, args...))
	}
	for _, a := range r.attrs {
		if a.err == nil {
			continue
		}
		if _, used := canonical[a.typ]; used {
			return nil, warns, fmt.Errorf("%s: %v", a.where(), a.err)
		}
		warn("%s ignored: %v", a.where(), a.err)
	}
	single := func(typ string, must bool) (string, error) {
		vs := r.values(typ)
		if len(vs) == 0 {
			if must {
				return "", fmt.Errorf("mandatory attribute %s missing", canonical[typ])
			}
			return "", nil
		}
		if len(vs) > 1 {
			warn("%s is single-valued but has %d values; the first is used", canonical[typ], len(vs))
		}
		v := strings.TrimSpace(string(vs[0].value))
		if !utf8.ValidString(v) {
			return "", fmt.Errorf("%s: not UTF-8", vs[0].where())
		}
		if v == "" && must {
			return "", fmt.Errorf("%s is empty", vs[0].where())
		}
		return v, nil
	}
	p := &Provider{DN: r.dn}
	var err error
	if p.Name, err = single(atName, true); err != nil {
		return nil, warns, err
	}
	if p.Unit, err = single(atUnit, false); err != nil {
		return nil, warns, err
	}
	if p.MailReceipt, err = single(atMailReceipt, true); err != nil {
		return nil, warns, err
	}
	if !validMailbox(p.MailReceipt) {
		return nil, warns, fmt.Errorf("mailReceipt %q is not dot-atom@dot-atom (RFC 6109 §4.5.4)", p.MailReceipt)
	}
	if p.Description, err = single(atDescription, false); err != nil {
		return nil, warns, err
	}
	if p.LDIFLocationURL, err = single(atLocation, false); err != nil {
		return nil, warns, err
	}
	if p.LDIFLocationURL != "" {
		if p.Unit != "" {
			warn("LDIFLocationURL on a secondary environment entry (RFC 6109 §4.5.6 forbids it)")
		}
		if u, err := url.Parse(p.LDIFLocationURL); err != nil || u.Scheme != "https" {
			warn("LDIFLocationURL %q is not an https URL", p.LDIFLocationURL)
		}
	}

	for _, a := range r.values(atDomains) {
		d := normDomain(string(a.value))
		if strings.Contains(strings.TrimSpace(string(a.value)), "@") || !validDomain(d) {
			warn("%s: %q is not a dot-atom domain, ignored", a.where(), string(a.value))
			continue
		}
		if !slices.Contains(p.Domains, d) {
			p.Domains = append(p.Domains, d)
		}
	}
	if len(p.Domains) == 0 {
		return nil, warns, errors.New("no usable managedDomains value")
	}

	for _, a := range r.values(atHash) {
		h := normHash(string(a.value))
		if !isSHA1Hex(h) {
			warn("%s: %q is not a SHA-1 in hex (40 digits), ignored", a.where(), string(a.value))
			continue
		}
		if !slices.Contains(p.CertHashes, h) {
			p.CertHashes = append(p.CertHashes, h)
		}
	}
	if len(p.CertHashes) == 0 {
		return nil, warns, errors.New("no usable providerCertificateHash value")
	}

	for _, a := range r.values(atCert) {
		c, err := x509.ParseCertificate(a.value)
		if err != nil {
			return nil, warns, fmt.Errorf("%s: not an X.509 DER certificate: %v", a.where(), err)
		}
		if slices.ContainsFunc(p.Certificates, func(o *x509.Certificate) bool { return bytes.Equal(o.Raw, c.Raw) }) {
			continue
		}
		p.Certificates = append(p.Certificates, c)
	}
	if len(p.Certificates) == 0 {
		return nil, warns, errors.New("mandatory attribute providerCertificate missing")
	}
	for _, c := range p.Certificates {
		if h := smime.CertSHA1(c); !slices.Contains(p.CertHashes, h) {
			warn("certificate %q (SHA-1 %s) is not listed in providerCertificateHash: signatures with it will not be recognised", c.Subject.String(), h)
		}
	}
	for _, h := range p.CertHashes {
		if !slices.ContainsFunc(p.Certificates, func(c *x509.Certificate) bool { return smime.CertSHA1(c) == h }) {
			warn("providerCertificateHash %s has no matching providerCertificate: ByCertificate will refuse it", h)
		}
	}

	// The DN should agree with the attributes (the RFC 6109 §4.5.10 example
	// does not: its secondary entry's providerName differs from the DN).
	if d, err := ldap.ParseDN(r.dn); err != nil {
		warn("DN does not parse: %v", err)
	} else {
		for _, rdn := range d.RDNs {
			for _, tv := range rdn.Attributes {
				switch attrType(tv.Type) {
				case atName:
					if !strings.EqualFold(strings.TrimSpace(tv.Value), p.Name) {
						warn("DN says providerName=%q but the providerName attribute is %q", tv.Value, p.Name)
					}
				case atUnit:
					if !strings.EqualFold(strings.TrimSpace(tv.Value), p.Unit) {
						warn("DN says providerUnit=%q but the providerUnit attribute is %q", tv.Value, p.Unit)
					}
				}
			}
		}
	}
	return p, warns, nil
}

func isSHA1Hex(s string) bool {
	if len(s) != 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// isAtext reports RFC 5322 atext (ASCII only).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && !isAtext(s[i]) {
			return false
		}
	}
	return true
}

func validDomain(d string) bool { return len(d) <= 253 && isDotAtom(d) }

func validMailbox(m string) bool {
	i := strings.LastIndexByte(m, '@')
	return i > 0 && isDotAtom(m[:i]) && validDomain(m[i+1:])
}
