package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
)

// DefaultSHA1Cutoff is the signing time from which a SHA-1 certificate
// signature in the signer's chain is refused (PEC-SPEC §6.7: 2014-era
// provider chains such as DigitPA CA1 are signed with sha1WithRSA).
var DefaultSHA1Cutoff = time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)

// Roots are the trusted roots the signer's chain is judged against. The
// certificates are kept beside the pool because crypto/x509 refuses SHA-1
// certificate signatures outright and has no switch for it: the chains of
// messages signed before SHA1Cutoff are then walked here (legacyChain).
type Roots struct {
	pool  *x509.CertPool
	certs []*x509.Certificate
	// SHA1Cutoff: a SHA-1 certificate signature is accepted when the CMS
	// signing time precedes it. Zero refuses SHA-1 always.
	SHA1Cutoff time.Time
}

// NewRoots returns roots holding certs, with DefaultSHA1Cutoff.
func NewRoots(certs ...*x509.Certificate) *Roots {
	r := &Roots{pool: x509.NewCertPool(), SHA1Cutoff: DefaultSHA1Cutoff}
	for _, c := range certs {
		r.Add(c)
	}
	return r
}

// Add trusts one more root.
func (r *Roots) Add(c *x509.Certificate) {
	r.pool.AddCert(c)
	r.certs = append(r.certs, c)
}

// AppendPEM trusts every certificate of a PEM bundle; it reports whether
// there was one.
func (r *Roots) AppendPEM(pemCerts []byte) bool {
	n := len(r.certs)
	for {
		var blk *pem.Block
		blk, pemCerts = pem.Decode(pemCerts)
		if blk == nil {
			return len(r.certs) > n
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			r.Add(c)
		}
	}
}

// Len is the number of roots.
func (r *Roots) Len() int {
	if r == nil {
		return 0
	}
	return len(r.certs)
}

// Pool is the roots as a crypto/x509 pool (nil for nil roots).
func (r *Roots) Pool() *x509.CertPool {
	if r == nil {
		return nil
	}
	return r.pool
}

func (r *Roots) isRoot(c *x509.Certificate) bool {
	for _, x := range r.certs {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

func isSHA1(a x509.SignatureAlgorithm) bool {
	return a == x509.SHA1WithRSA || a == x509.ECDSAWithSHA1 || a == x509.DSAWithSHA1
}

// hasSHA1 reports whether a certificate that could be part of the chain
// is signed with SHA-1 (self-signed roots do not count: their signature
// is never checked).
func hasSHA1(certs []*x509.Certificate) bool {
	for _, c := range certs {
		if isSHA1(c.SignatureAlgorithm) && !bytes.Equal(c.RawIssuer, c.RawSubject) {
			return true
		}
	}
	return false
}

// maxChainLen bounds the legacy chain walk (a loop in hostile input).
const maxChainLen = 8

// legacyChain builds and checks the signer's chain at time at like
// crypto/x509 does, except that it verifies SHA-1 certificate signatures
// itself. Checked for every certificate: validity at at, no unhandled
// critical extension; for every issuer: CA basic constraints, keyCertSign
// key usage, path length, e-mail and DNS name constraints over the
// certificates below it (RFC 5280 §4.2.1.3, §4.2.1.9, §4.2.1.10).
func legacyChain(signer *x509.Certificate, inter []*x509.Certificate, roots *Roots, at time.Time) ([]*x509.Certificate, error) {
	chain := []*x509.Certificate{signer}
	var lastErr error
	var walk func(cur *x509.Certificate) bool
	walk = func(cur *x509.Certificate) bool {
		if len(chain) > maxChainLen {
			lastErr = errors.New("chain longer than 8 certificates")
			return false
		}
		for _, cand := range append(append([]*x509.Certificate{}, roots.certs...), inter...) {
			if !bytes.Equal(cand.RawSubject, cur.RawIssuer) || inChain(chain, cand) {
				continue
			}
			if len(cur.AuthorityKeyId) > 0 && len(cand.SubjectKeyId) > 0 && !bytes.Equal(cur.AuthorityKeyId, cand.SubjectKeyId) {
				continue
			}
			if err := checkIssued(cur, cand); err != nil {
				lastErr = err
				continue
			}
			chain = append(chain, cand)
			if roots.isRoot(cand) {
				if err := checkChainAt(chain, at); err != nil {
					lastErr = err
				} else {
					return true
				}
			} else if walk(cand) {
				return true
			}
			chain = chain[:len(chain)-1]
		}
		return false
	}
	if walk(signer) {
		return chain, nil
	}
	if lastErr == nil {
		lastErr = errors.New("no issuer found among the CMS certificates and the trusted roots")
	}
	return nil, lastErr
}

func inChain(chain []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range chain {
		if bytes.Equal(x.Raw, c.Raw) {
			return true
		}
	}
	return false
}

// checkIssued verifies that issuer signed c and may issue certificates.
func checkIssued(c, issuer *x509.Certificate) error {
	if !issuer.BasicConstraintsValid || !issuer.IsCA {
		return fmt.Errorf("%q is not a CA certificate", issuer.Subject.CommonName)
	}
	if issuer.KeyUsage != 0 && issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("%q may not sign certificates (key usage)", issuer.Subject.CommonName)
	}
	if !isSHA1(c.SignatureAlgorithm) {
		return c.CheckSignatureFrom(issuer)
	}
	sum := sha1.Sum(c.RawTBSCertificate)
	switch pub := issuer.PublicKey.(type) {
	case *rsa.PublicKey:
		if c.SignatureAlgorithm != x509.SHA1WithRSA {
			break
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, sum[:], c.Signature); err != nil {
			return fmt.Errorf("SHA-1 signature of %q by %q does not verify: %v", c.Subject.CommonName, issuer.Subject.CommonName, err)
		}
		return nil
	case *ecdsa.PublicKey:
		if c.SignatureAlgorithm != x509.ECDSAWithSHA1 {
			break
		}
		if !ecdsa.VerifyASN1(pub, sum[:], c.Signature) {
			return fmt.Errorf("SHA-1 signature of %q by %q does not verify", c.Subject.CommonName, issuer.Subject.CommonName)
		}
		return nil
	}
	return fmt.Errorf("unsupported signature %v of %q", c.SignatureAlgorithm, c.Subject.CommonName)
}

// checkChainAt checks validity periods, critical extensions, path length
// and name constraints of a complete chain (leaf first, root last).
func checkChainAt(chain []*x509.Certificate, at time.Time) error {
	for i, c := range chain {
		if at.Before(c.NotBefore) || at.After(c.NotAfter) {
			return fmt.Errorf("%q not valid at %s (valid %s to %s)", c.Subject.CommonName, at.Format(time.RFC3339),
				c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339))
		}
		if len(c.UnhandledCriticalExtensions) > 0 {
			return fmt.Errorf("%q has an unhandled critical extension %v", c.Subject.CommonName, c.UnhandledCriticalExtensions[0])
		}
		if i == 0 {
			continue
		}
		// i-1 CA certificates stand between c and the leaf
		if c.BasicConstraintsValid && c.MaxPathLen >= 0 && i-1 > c.MaxPathLen {
			return fmt.Errorf("%q allows a path length of %d, the chain has %d intermediates below it", c.Subject.CommonName, c.MaxPathLen, i-1)
		}
		for _, below := range chain[:i] {
			if err := checkNameConstraints(c, below); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkNameConstraints applies ca's e-mail and DNS name constraints to c's
// subject alternative names (as crypto/x509 does); a constraint of a kind
// not checked here, over names of that kind, fails closed.
func checkNameConstraints(ca, c *x509.Certificate) error {
	if len(ca.PermittedURIDomains)+len(ca.ExcludedURIDomains) > 0 && len(c.URIs) > 0 ||
		len(ca.PermittedIPRanges)+len(ca.ExcludedIPRanges) > 0 && len(c.IPAddresses) > 0 {
		return fmt.Errorf("%q has URI or IP name constraints, not supported for SHA-1-era chains", ca.Subject.CommonName)
	}
	for _, e := range c.EmailAddresses {
		a, err := mail.ParseAddress(e)
		if err != nil {
			return fmt.Errorf("%q: e-mail name %q: %v", c.Subject.CommonName, e, err)
		}
		if !permitted(a.Address, ca.PermittedEmailAddresses, ca.ExcludedEmailAddresses, matchEmail) {
			return fmt.Errorf("e-mail address %s of %q violates the name constraints of %q", e, c.Subject.CommonName, ca.Subject.CommonName)
		}
	}
	for _, d := range c.DNSNames {
		if !permitted(d, ca.PermittedDNSDomains, ca.ExcludedDNSDomains, matchDomain) {
			return fmt.Errorf("DNS name %s of %q violates the name constraints of %q", d, c.Subject.CommonName, ca.Subject.CommonName)
		}
	}
	return nil
}

func permitted(name string, permit, exclude []string, match func(name, constraint string) bool) bool {
	for _, x := range exclude {
		if match(name, x) {
			return false
		}
	}
	if len(permit) == 0 {
		return true
	}
	for _, p := range permit {
		if match(name, p) {
			return true
		}
	}
	return false
}

// matchEmail: a constraint is a whole address, a host ("example.it": that
// host only) or a domain (".example.it": its subdomains), RFC 5280 §4.2.1.10.
func matchEmail(addr, constraint string) bool {
	if strings.Contains(constraint, "@") {
		return strings.EqualFold(addr, constraint)
	}
	_, host, _ := strings.Cut(addr, "@")
	if strings.HasPrefix(constraint, ".") {
		return strings.HasSuffix(strings.ToLower(host), strings.ToLower(constraint))
	}
	return strings.EqualFold(host, constraint)
}

// matchDomain: the domain itself or any subdomain (RFC 5280 §4.2.1.10).
func matchDomain(name, constraint string) bool {
	name, constraint = strings.ToLower(name), strings.ToLower(strings.TrimPrefix(constraint, "."))
	return name == constraint || strings.HasSuffix(name, "."+constraint)
}
