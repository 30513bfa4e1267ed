// Package revocation checks certificates against the certificate
// revocation lists (RFC 5280 §5) named in their CRL distribution points,
// as the incoming point must for the signer of a PEC message (RFC 6109
// §2.2.2 check 3; PEC-SPEC §6.2 step 3: "CRL (cache allowed but
// refreshed)").
//
// Only http:// and https:// distribution points are fetched. CRLs are
// kept in memory until their nextUpdate or Checker.MaxAge, whichever comes
// first; concurrent checks share one download per URL.
package revocation

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"
)

var (
	// ErrRevoked: a certificate of the chain is on its issuer's CRL. The
	// error returned is a *RevokedError.
	ErrRevoked = errors.New("revocation: certificate revoked")
	// ErrUnavailable: a certificate has CRL distribution points but no
	// CRL could be fetched, parsed and verified from any of them; the
	// wrapped text says why.
	ErrUnavailable = errors.New("revocation: CRL not available")
)

// RevokedError is the ErrRevoked error: errors.Is(err, ErrRevoked) holds.
type RevokedError struct {
	Subject   string    // the revoked certificate's subject
	Serial    *big.Int  // its serial number
	RevokedAt time.Time // the CRL entry's revocationDate
	Reason    int       // RFC 5280 §5.3.1 CRLReason code (0 when absent)
	URL       string    // the CRL that lists it
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("revocation: certificate %q serial %s revoked at %s, reason %s (CRL %s)",
		e.Subject, e.Serial, e.RevokedAt.UTC().Format(time.RFC3339), ReasonName(e.Reason), e.URL)
}

// Is makes errors.Is(err, ErrRevoked) true.
func (e *RevokedError) Is(target error) bool { return target == ErrRevoked }

// ReasonName is the RFC 5280 §5.3.1 name of a CRLReason code.
func ReasonName(code int) string {
	names := map[int]string{0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
		4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
		9: "privilegeWithdrawn", 10: "aACompromise"}
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("code %d", code)
}

const (
	// DefaultMaxAge is Checker.MaxAge when zero.
	DefaultMaxAge = 24 * time.Hour
	// MaxCRLSize bounds a downloaded CRL.
	MaxCRLSize = 64 << 20
	// clockSkew tolerated on a CRL's thisUpdate.
	clockSkew = 5 * time.Minute
	// staleRetry: when a refresh fails but the cached CRL is still within
	// its nextUpdate, it is used and the download retried after this.
	staleRetry = time.Minute
)

// defaultClient is used when Checker.Client is nil: the context bounds a
// check, this bounds a download when the context has no deadline.
var defaultClient = &http.Client{Timeout: 30 * time.Second}

// Checker checks chains against CRLs. The zero value is ready to use; it
// may be used from many goroutines at once.
type Checker struct {
	Client *http.Client     // nil: a client with a 30 s timeout
	Now    func() time.Time // nil: time.Now
	// MaxAge: a cached CRL is fetched again after this even if its
	// nextUpdate is later. Default 24h.
	MaxAge time.Duration

	mu      sync.Mutex
	cache   map[string]*entry
	flights map[string]*flight
	failed  map[string]failure // recent failed downloads, not retried before until
}

// failure is a download that failed; messages arriving meanwhile get the
// same answer at once instead of waiting for the same unreachable server.
type failure struct {
	err   error
	until time.Time
}

// entry is one downloaded, verified CRL.
type entry struct {
	url     string
	crl     *x509.RevocationList
	revoked map[string]x509.RevocationListEntry // by serial in decimal
	scope   scope
	expires time.Time // refetch from then on
}

type flight struct {
	done chan struct{}
	e    *entry
	err  error
	// cancelled: the downloader gave up because its own context ended,
	// not because the server failed
	cancelled bool
}

// Check checks chain, the leaf first then its issuers up to the root (as
// x509.Certificate.Verify builds it): every certificate but the last is
// looked up in the CRL of its distribution points, verified with the next
// certificate's key. A certificate without http(s) distribution points is
// not checked. The result is nil, a *RevokedError (ErrRevoked) or an
// error wrapping ErrUnavailable.
//
// Any listed certificate counts as revoked, whatever its revocation date:
// the CMS signing time is chosen by the signer, so a signature claiming to
// predate the revocation proves nothing.
func (c *Checker) Check(ctx context.Context, chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := c.checkCert(ctx, chain[i], chain[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func (c *Checker) checkCert(ctx context.Context, cert, issuer *x509.Certificate) error {
	var why reasons
	n := 0
	for _, u := range cert.CRLDistributionPoints {
		if l := strings.ToLower(u); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
			continue
		}
		n++
		e, err := c.crl(ctx, u, issuer)
		if err == nil {
			err = e.scope.covers(cert)
		}
		if err != nil {
			why = append(why, err)
			continue
		}
		if r, ok := e.revoked[cert.SerialNumber.String()]; ok {
			return &RevokedError{Subject: cert.Subject.String(), Serial: cert.SerialNumber, RevokedAt: r.RevocationTime, Reason: r.ReasonCode, URL: u}
		}
		return nil
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w for %q serial %s: %w", ErrUnavailable, cert.Subject.String(), cert.SerialNumber, why)
}

// reasons are why each distribution point failed.
type reasons []error

func (r reasons) Error() string {
	s := make([]string, len(r))
	for i, e := range r {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

func (r reasons) Unwrap() []error { return r }

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checker) maxAge() time.Duration {
	if c.MaxAge > 0 {
		return c.MaxAge
	}
	return DefaultMaxAge
}

// crl returns the CRL at url verified with issuer's key: from the cache,
// from a download in progress, or downloaded now.
func (c *Checker) crl(ctx context.Context, url string, issuer *x509.Certificate) (*entry, error) {
	// the same URL under two issuers (two keys) is two cache entries
	fp := sha256.Sum256(issuer.Raw)
	key := url + "\x00" + string(fp[:])
	for {
		now := c.now()
		c.mu.Lock()
		old := c.cache[key]
		if old != nil && now.Before(old.expires) {
			c.mu.Unlock()
			return old, nil
		}
		if fl, ok := c.failed[key]; ok && now.Before(fl.until) && (old == nil || !old.validAt(now)) {
			c.mu.Unlock()
			return nil, fl.err
		}
		if f := c.flights[key]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("%s: %w", url, ctx.Err())
			}
			if f.err != nil && f.cancelled && ctx.Err() == nil {
				continue // the downloader gave up on its own deadline: try with ours
			}
			return f.e, f.err
		}
		f := &flight{done: make(chan struct{})}
		if c.flights == nil {
			c.flights = map[string]*flight{}
			c.cache = map[string]*entry{}
			c.failed = map[string]failure{}
		}
		c.flights[key] = f
		c.mu.Unlock()

		f.e, f.err = c.fetch(ctx, url, issuer, now)
		f.cancelled = f.err != nil && ctx.Err() != nil
		if f.err == nil && old != nil && f.e.crl.ThisUpdate.Before(old.crl.ThisUpdate) {
			// an older CRL than the one we have (a replayed copy could
			// drop a revocation): keep ours
			f.e, f.err = nil, fmt.Errorf("%s: CRL issued %s, older than the cached one (%s)", url,
				f.e.crl.ThisUpdate.UTC().Format(time.RFC3339), old.crl.ThisUpdate.UTC().Format(time.RFC3339))
		}
		if f.err != nil && old != nil && old.validAt(now) {
			// refresh failed, but the cached CRL has not reached its
			// nextUpdate: keep using it, try again soon
			e := *old
			e.expires = now.Add(staleRetry)
			if nu := old.crl.NextUpdate; !nu.IsZero() && nu.Before(e.expires) {
				e.expires = nu
			}
			f.e, f.err = &e, nil
		}
		c.mu.Lock()
		delete(c.flights, key)
		if f.err != nil && !f.cancelled {
			c.failed[key] = failure{err: f.err, until: now.Add(staleRetry)}
		}
		if f.err == nil {
			delete(c.failed, key)
			c.cache[key] = f.e
			for k, e := range c.cache {
				if !e.validAt(now) {
					delete(c.cache, k)
				}
			}
		}
		c.mu.Unlock()
		close(f.done)
		return f.e, f.err
	}
}

func (e *entry) validAt(now time.Time) bool {
	return e.crl.NextUpdate.IsZero() || now.Before(e.crl.NextUpdate)
}

// fetch downloads, parses and verifies one CRL.
func (c *Checker) fetch(ctx context.Context, url string, issuer *x509.Certificate, now time.Time) (*entry, error) {
	client := c.Client
	if client == nil {
		client = defaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err // *url.Error names the URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxCRLSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if len(b) > MaxCRLSize {
		return nil, fmt.Errorf("%s: CRL larger than %d bytes", url, MaxCRLSize)
	}
	if blk, _ := pem.Decode(b); blk != nil && blk.Type == "X509 CRL" {
		b = blk.Bytes // RFC 5280 wants DER over HTTP; some serve PEM
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) && crl.Issuer.String() != issuer.Subject.String() {
		return nil, fmt.Errorf("%s: CRL issued by %q, not by the certificate's issuer %q", url, crl.Issuer.String(), issuer.Subject.String())
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("%s: CRL signature: %w", url, err)
	}
	if crl.ThisUpdate.After(now.Add(clockSkew)) {
		return nil, fmt.Errorf("%s: CRL thisUpdate %s is in the future", url, crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
		return nil, fmt.Errorf("%s: CRL expired at its nextUpdate %s", url, crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	sc, err := crlScope(crl)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	e := &entry{url: url, crl: crl, scope: sc, revoked: make(map[string]x509.RevocationListEntry, len(crl.RevokedCertificateEntries))}
	for _, r := range crl.RevokedCertificateEntries {
		if r.ReasonCode == 8 { // removeFromCRL: only meaningful in delta CRLs
			continue
		}
		e.revoked[r.SerialNumber.String()] = r
	}
	e.expires = now.Add(c.maxAge())
	if !crl.NextUpdate.IsZero() && crl.NextUpdate.Before(e.expires) {
		e.expires = crl.NextUpdate
	}
	return e, nil
}

var (
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDP         = asn1.ObjectIdentifier{2, 5, 29, 28}
)

// scope is what an issuingDistributionPoint extension (RFC 5280 §5.2.5)
// restricts a CRL to.
type scope struct{ onlyUser, onlyCA bool }

// covers reports an error when the CRL does not cover cert.
func (s scope) covers(cert *x509.Certificate) error {
	isCA := cert.BasicConstraintsValid && cert.IsCA
	switch {
	case s.onlyUser && isCA:
		return errors.New("CRL covers end-entity certificates only")
	case s.onlyCA && !isCA:
		return errors.New("CRL covers CA certificates only")
	}
	return nil
}

// issuingDP is the RFC 5280 IssuingDistributionPoint (implicit tags).
type issuingDP struct {
	DistributionPoint          asn1.RawValue  `asn1:"optional,tag:0"`
	OnlyContainsUserCerts      bool           `asn1:"optional,tag:1"`
	OnlyContainsCACerts        bool           `asn1:"optional,tag:2"`
	OnlySomeReasons            asn1.BitString `asn1:"optional,tag:3"`
	IndirectCRL                bool           `asn1:"optional,tag:4"`
	OnlyContainsAttributeCerts bool           `asn1:"optional,tag:5"`
}

// crlScope refuses CRLs that are not a complete list of the issuer's
// revoked certificates: delta CRLs, reason-partitioned, indirect and
// attribute-certificate CRLs.
func crlScope(crl *x509.RevocationList) (scope, error) {
	var s scope
	for _, ext := range crl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return s, errors.New("a delta CRL, not a complete one")
		case ext.Id.Equal(oidIssuingDP):
			var idp issuingDP
			if rest, err := asn1.Unmarshal(ext.Value, &idp); err != nil || len(rest) > 0 {
				return s, fmt.Errorf("bad issuingDistributionPoint extension: %v", err)
			}
			switch {
			case idp.OnlySomeReasons.BitLength > 0:
				return s, errors.New("CRL partitioned by reason (onlySomeReasons)")
			case idp.IndirectCRL:
				return s, errors.New("indirect CRL")
			case idp.OnlyContainsAttributeCerts:
				return s, errors.New("CRL of attribute certificates")
			}
			s = scope{onlyUser: idp.OnlyContainsUserCerts, onlyCA: idp.OnlyContainsCACerts}
		}
	}
	return s, nil
}
