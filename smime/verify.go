package smime

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pecgo/pec/internal/rawmime"
	"github.com/smallstep/pkcs7"
)

func init() {
	// Some CA certificates in the wild mark the authority key identifier
	// critical, which Go's parser refuses since 1.24; parse them as older
	// Go did rather than reject a provider's chain for it.
	pkcs7.SetFallbackLegacyX509CertificateParserEnabled(true)
}

// Result is what verification found out about a multipart/signed message.
type Result struct {
	Protocol string      // the signature part's media type as received
	Micalg   string      // the micalg parameter as received
	Digest   crypto.Hash // the CMS digest algorithm
	// MicalgMismatch is set when micalg names another digest than the
	// CMS one (RFC 5751 §3.4.3.2).
	MicalgMismatch bool

	Signer       *x509.Certificate   // nil when the CMS names no certificate it carries
	Certificates []*x509.Certificate // every certificate embedded in the CMS
	SignerSHA1   string              // lower-case hex SHA-1 of the signer's DER certificate
	SigningTime  time.Time           // zero when the CMS has no signingTime attribute

	// SignatureErr is nil when the CMS signature is valid for the signed
	// content: digest matches and the signer's key verifies the signature.
	SignatureErr error
	// ChainErr is nil when the signer certificate chains to one of the
	// roots at the signing time (now when there is no signing time).
	// ErrNoRoots when no roots were given.
	ChainErr error
	Chains   [][]*x509.Certificate
	// ChainNote says how the chain was judged when that is not plain
	// crypto/x509: SHA-1 certificate signatures accepted because the
	// message was signed before Roots.SHA1Cutoff (PEC-SPEC §6.7).
	ChainNote string

	// Content is the signed entity (the first body part) in canonical form.
	Content []byte
}

// Valid reports whether both the signature and the chain verified.
func (r *Result) Valid() bool { return r.SignatureErr == nil && r.ChainErr == nil }

// ErrNoRoots is the ChainErr when Verify was given no trusted roots.
var ErrNoRoots = errors.New("smime: no trusted roots configured, chain not checked")

// Errors for input that is not a verifiable multipart/signed message.
var (
	ErrNotSigned    = errors.New("smime: not an S/MIME multipart/signed message")
	ErrNoSignature  = errors.New("smime: multipart/signed without a pkcs7-signature part")
	ErrBadSignedCMS = errors.New("smime: signature part is not a CMS SignedData")
)

// Verify checks the multipart/signed message raw (a whole RFC 5322
// message; LF line ends are canonicalised to CRLF first). The error is
// non-nil only when raw is not a signed message at all or its signature
// part cannot be decoded; a signature that does not verify is reported in
// Result.SignatureErr, an untrusted chain in Result.ChainErr.
func Verify(raw []byte, roots *Roots) (*Result, error) {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return nil, err
	}
	return VerifyEntity(h, body, roots)
}

// VerifyEntity is Verify for an entity already split into header and body.
func VerifyEntity(h rawmime.Header, body []byte, roots *Roots) (*Result, error) {
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	if mt != "multipart/signed" {
		return nil, fmt.Errorf("%w (Content-Type is %s)", ErrNotSigned, mt)
	}
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil {
		return nil, fmt.Errorf("smime: %w", err)
	}
	if len(parts) != 2 {
		return nil, fmt.Errorf("smime: multipart/signed has %d parts, want 2 (content and signature)", len(parts))
	}
	sh, sbody, err := rawmime.Split(parts[1])
	if err != nil {
		return nil, fmt.Errorf("smime: signature part: %w", err)
	}
	smt, _ := rawmime.MediaType(sh.Get("Content-Type"))
	if smt != "application/pkcs7-signature" && smt != "application/x-pkcs7-signature" {
		return nil, fmt.Errorf("%w (second part is %s)", ErrNoSignature, smt)
	}
	der, err := decodeBase64(sbody, sh.Get("Content-Transfer-Encoding"))
	if err != nil {
		return nil, fmt.Errorf("smime: signature part: %w", err)
	}
	r, err := VerifyDetached(parts[0], der, roots)
	if err != nil {
		return nil, err
	}
	r.Protocol = smt
	r.Micalg = params["micalg"]
	if mh, ok := MicalgHash(r.Micalg); !ok || mh != r.Digest {
		r.MicalgMismatch = true
	}
	return r, nil
}

func decodeBase64(b []byte, cte string) ([]byte, error) {
	cte = strings.ToLower(strings.TrimSpace(cte))
	if cte != "" && cte != "base64" {
		if cte == "binary" || cte == "8bit" || cte == "7bit" {
			return b, nil
		}
		return nil, fmt.Errorf("unsupported Content-Transfer-Encoding %q", cte)
	}
	return rawmime.DecodeBase64(b)
}

// VerifyDetached verifies a detached CMS SignedData (DER or BER) over content.
func VerifyDetached(content, cms []byte, roots *Roots) (r *Result, err error) {
	defer func() {
		// the CMS parser is third-party code fed with hostile input
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("%w: %v", ErrBadSignedCMS, p)
		}
	}()
	p7, err := pkcs7.Parse(cms)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignedCMS, err)
	}
	if len(p7.Signers) != 1 {
		return nil, fmt.Errorf("%w: %d signer infos, want 1", ErrBadSignedCMS, len(p7.Signers))
	}
	si := p7.Signers[0]
	r = &Result{Content: content, Certificates: p7.Certificates}
	for _, c := range p7.Certificates {
		if c.SerialNumber != nil && si.IssuerAndSerialNumber.SerialNumber != nil &&
			c.SerialNumber.Cmp(si.IssuerAndSerialNumber.SerialNumber) == 0 &&
			bytes.Equal(c.RawIssuer, si.IssuerAndSerialNumber.IssuerName.FullBytes) {
			r.Signer = c
		}
	}
	r.Digest = hashFor(si.DigestAlgorithm.Algorithm)
	if r.Signer == nil {
		r.SignatureErr = errors.New("smime: the CMS does not carry the signer's certificate (RFC 6109 §2.1 wants it embedded)")
		r.ChainErr = r.SignatureErr
		return r, nil
	}
	r.SignerSHA1 = CertSHA1(r.Signer)
	var attrs [][]byte
	var msgDigest []byte
	for _, a := range si.AuthenticatedAttributes {
		enc, err := asn1.Marshal(struct {
			Type  asn1.ObjectIdentifier
			Value asn1.RawValue
		}{a.Type, a.Value})
		if err != nil {
			return nil, fmt.Errorf("%w: signed attribute: %v", ErrBadSignedCMS, err)
		}
		attrs = append(attrs, enc)
		switch {
		case a.Type.Equal(oidMessageDigest):
			if _, err := asn1.Unmarshal(a.Value.Bytes, &msgDigest); err != nil {
				return nil, fmt.Errorf("%w: messageDigest: %v", ErrBadSignedCMS, err)
			}
		case a.Type.Equal(oidSigningTime):
			var t time.Time
			if _, err := asn1.Unmarshal(a.Value.Bytes, &t); err == nil {
				r.SigningTime = t.UTC()
			}
		}
	}
	r.SignatureErr = checkSignature(r, si.DigestEncryptionAlgorithm.Algorithm, content, attrs, msgDigest, si.EncryptedDigest)
	r.ChainErr = checkChain(r, roots)
	return r, nil
}

func hashFor(oid asn1.ObjectIdentifier) crypto.Hash {
	for h, o := range hashOIDs {
		if o.Equal(oid) {
			return h
		}
	}
	return 0
}

func checkSignature(r *Result, sigOID asn1.ObjectIdentifier, content []byte, attrs [][]byte, msgDigest, sig []byte) error {
	if r.Digest == 0 || !r.Digest.Available() {
		return errors.New("smime: unsupported CMS digest algorithm")
	}
	h := r.Digest.New()
	h.Write(content)
	sum := h.Sum(nil)
	signed := content
	if len(attrs) > 0 {
		if msgDigest == nil {
			return errors.New("smime: signed attributes without messageDigest")
		}
		if subtle.ConstantTimeCompare(sum, msgDigest) != 1 {
			return errors.New("smime: the signed content was changed (message digest mismatch)")
		}
		// the signature covers the DER SET OF the attributes (RFC 5652 §5.4)
		signed = tlv(0x31, attrs...)
	}
	alg, err := signatureAlgorithm(sigOID, r.Digest)
	if err != nil {
		return err
	}
	if err := r.Signer.CheckSignature(alg, signed, sig); err != nil {
		return fmt.Errorf("smime: signature does not verify: %v", err)
	}
	return nil
}

func signatureAlgorithm(oid asn1.ObjectIdentifier, h crypto.Hash) (x509.SignatureAlgorithm, error) {
	rsaBy := map[crypto.Hash]x509.SignatureAlgorithm{crypto.SHA1: x509.SHA1WithRSA, crypto.SHA256: x509.SHA256WithRSA, crypto.SHA384: x509.SHA384WithRSA, crypto.SHA512: x509.SHA512WithRSA}
	ecBy := map[crypto.Hash]x509.SignatureAlgorithm{crypto.SHA1: x509.ECDSAWithSHA1, crypto.SHA256: x509.ECDSAWithSHA256, crypto.SHA384: x509.ECDSAWithSHA384, crypto.SHA512: x509.ECDSAWithSHA512}
	rsaOIDs := map[string]x509.SignatureAlgorithm{
		"1.2.840.113549.1.1.5": x509.SHA1WithRSA, "1.2.840.113549.1.1.11": x509.SHA256WithRSA,
		"1.2.840.113549.1.1.12": x509.SHA384WithRSA, "1.2.840.113549.1.1.13": x509.SHA512WithRSA,
	}
	switch {
	case oid.Equal(oidRSA):
		return rsaBy[h], nil
	case oid.Equal(oidECPublicKey):
		return ecBy[h], nil
	}
	if a, ok := rsaOIDs[oid.String()]; ok {
		return a, nil
	}
	for hh, o := range ecdsaOIDs {
		if o.Equal(oid) {
			return ecBy[hh], nil
		}
	}
	return 0, fmt.Errorf("smime: unsupported signature algorithm %v", oid)
}

func checkChain(r *Result, roots *Roots) error {
	at := r.SigningTime
	if at.IsZero() {
		at = time.Now()
	}
	if at.Before(r.Signer.NotBefore) || at.After(r.Signer.NotAfter) {
		return fmt.Errorf("smime: signer certificate not valid at the signing time %s (valid %s to %s)",
			at.Format(time.RFC3339), r.Signer.NotBefore.Format(time.RFC3339), r.Signer.NotAfter.Format(time.RFC3339))
	}
	if roots == nil {
		return ErrNoRoots
	}
	inter := x509.NewCertPool()
	for _, c := range r.Certificates {
		if c != r.Signer {
			inter.AddCert(c)
		}
	}
	chains, err := r.Signer.Verify(x509.VerifyOptions{
		Roots: roots.pool, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err == nil {
		r.Chains = chains
		return nil
	}
	if !hasSHA1(r.Certificates) && !hasSHA1(roots.certs) {
		return fmt.Errorf("smime: signer certificate does not chain to a trusted root at %s: %v", at.Format(time.RFC3339), err)
	}
	// crypto/x509 refuses SHA-1 certificate signatures; 2014-era provider
	// chains carry them (PEC-SPEC §6.7). Judged at the signing time, they
	// are accepted for messages signed before the cut-off only.
	if roots.SHA1Cutoff.IsZero() || r.SigningTime.IsZero() || !r.SigningTime.Before(roots.SHA1Cutoff) {
		cut := "never"
		if !roots.SHA1Cutoff.IsZero() {
			cut = "only for messages signed before " + roots.SHA1Cutoff.Format(time.RFC3339)
		}
		return fmt.Errorf("smime: signer certificate does not chain to a trusted root at %s: %v (SHA-1 certificate signatures are accepted %s)",
			at.Format(time.RFC3339), err, cut)
	}
	var inters []*x509.Certificate
	for _, c := range r.Certificates {
		if c != r.Signer {
			inters = append(inters, c)
		}
	}
	chain, lerr := legacyChain(r.Signer, inters, roots, at)
	if lerr != nil {
		return fmt.Errorf("smime: signer certificate does not chain to a trusted root at %s: %v; checked with SHA-1 allowed: %v", at.Format(time.RFC3339), err, lerr)
	}
	if !hasSHA1(chain[:len(chain)-1]) {
		// crypto/x509 refused a chain without SHA-1 signatures: its
		// verdict stands, the walk here only stands in for SHA-1
		return fmt.Errorf("smime: signer certificate does not chain to a trusted root at %s: %v", at.Format(time.RFC3339), err)
	}
	r.Chains = [][]*x509.Certificate{chain}
	r.ChainNote = fmt.Sprintf("chain includes SHA-1 certificate signatures, accepted because the message was signed at %s, before the cut-off %s",
		at.Format(time.RFC3339), roots.SHA1Cutoff.Format(time.RFC3339))
	return nil
}
