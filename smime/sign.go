// Package smime signs and verifies S/MIME multipart/signed entities with a
// detached CMS SignedData signature (RFC 5751 §3.4.3, RFC 5652), the form
// every PEC message takes (RFC 6109 §2.1).
//
// Signing writes the CMS structure itself so that the signingTime attribute
// is the transaction instant the caller passes (RFC 6109 §4.1: one instant
// for Date, daticert and signature) and so that any crypto.Signer, file key
// or HSM, can sign. Verification accepts what real providers emit: both
// protocol names, SHA-1 to SHA-512, BER with indefinite lengths, LF or CRLF.
package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"
)

// Object identifiers used in CMS (RFC 5652, RFC 5754, RFC 3279, RFC 5758).
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningTime   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidECPublicKey   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

	hashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 3, 14, 3, 2, 26},
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	}
	ecdsaOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA1:   {1, 2, 840, 10045, 4, 1},
		crypto.SHA256: {1, 2, 840, 10045, 4, 3, 2},
		crypto.SHA384: {1, 2, 840, 10045, 4, 3, 3},
		crypto.SHA512: {1, 2, 840, 10045, 4, 3, 4},
	}
	// micalg parameter values (RFC 5751 §3.4.3.2). SHA-1 is written "sha1"
	// as every PEC provider does; both spellings are accepted on input.
	micalgs = map[crypto.Hash]string{crypto.SHA1: "sha1", crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512"}
)

// Signer signs PEC messages with the provider's key.
type Signer struct {
	Key   crypto.Signer       // RSA or ECDSA; file key or PKCS#11
	Cert  *x509.Certificate   // the provider's signing certificate (rfc822Name = From address)
	Chain []*x509.Certificate // intermediates embedded after Cert
	Hash  crypto.Hash         // digest; zero means SHA-256
	// Protocol is the signature part's media type; empty means
	// application/pkcs7-signature (RFC 5751). Older providers write
	// application/x-pkcs7-signature; both are valid.
	Protocol string
}

func (s *Signer) hash() crypto.Hash {
	if s.Hash == 0 {
		return crypto.SHA256
	}
	return s.Hash
}

// CertSHA1 returns the lower-case hex SHA-1 of the DER certificate, the
// providerCertificateHash of the providers' index (RFC 6109 §4.5).
func CertSHA1(c *x509.Certificate) string {
	h := sha1.Sum(c.Raw)
	return hex.EncodeToString(h[:])
}

// Sign wraps content, a complete MIME entity (headers, blank line, body)
// with CRLF line ends, in multipart/signed. It returns the value of the
// outer Content-Type header and the multipart body. at is the CMS
// signingTime; boundary must not occur in content.
func (s *Signer) Sign(content []byte, at time.Time, boundary string) (contentType string, body []byte, err error) {
	ct, prefix, suffix, err := s.SignParts(content, at, boundary)
	if err != nil {
		return "", nil, err
	}
	body = make([]byte, 0, len(prefix)+len(content)+len(suffix))
	body = append(append(append(body, prefix...), content...), suffix...)
	return ct, body, nil
}

// SignParts is Sign without copying content: the multipart body is
// prefix + content + suffix. Large messages are written out from the three
// pieces (RFC 6109 §2.1 envelopes can be tens of megabytes).
func (s *Signer) SignParts(content []byte, at time.Time, boundary string) (contentType string, prefix, suffix []byte, err error) {
	if s.Key == nil || s.Cert == nil {
		return "", nil, nil, errors.New("smime: signer needs a key and a certificate")
	}
	if n := bytes.Count(content, []byte("\n")); n > 0 && n != bytes.Count(content, []byte("\r\n")) {
		return "", nil, nil, errors.New("smime: content must use CRLF line ends only (RFC 5751 §3.1.1 canonical form)")
	}
	if bytes.Contains(content, []byte("--"+boundary)) {
		return "", nil, nil, errors.New("smime: boundary occurs in the signed content")
	}
	der, err := s.signDetached(content, at)
	if err != nil {
		return "", nil, nil, err
	}
	proto := s.Protocol
	if proto == "" {
		proto = "application/pkcs7-signature"
	}
	prefix = []byte("This is an S/MIME signed message\r\n\r\n--" + boundary + "\r\n")
	var b bytes.Buffer
	b.WriteString("\r\n--" + boundary + "\r\n")
	fmt.Fprintf(&b, "Content-Type: %s; name=\"smime.p7s\"\r\n", proto)
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"smime.p7s\"\r\n")
	b.WriteString("Content-Description: S/MIME Cryptographic Signature\r\n\r\n")
	WriteBase64(&b, der)
	b.WriteString("\r\n--" + boundary + "--\r\n")
	ct := fmt.Sprintf("multipart/signed; protocol=\"%s\"; micalg=\"%s\";\r\n\tboundary=\"%s\"", proto, micalgs[s.hash()], boundary)
	return ct, prefix, b.Bytes(), nil
}

// WriteBase64 writes data as base64 in lines of 76 characters, each ended
// by CRLF (RFC 2045 §6.8).
func WriteBase64(b *bytes.Buffer, data []byte) {
	enc := base64.StdEncoding.EncodeToString(data)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	if enc != "" {
		b.WriteString(enc + "\r\n")
	}
}

// SignDetachedDER returns a detached CMS SignedData (DER ContentInfo) over
// content with signingTime at: the .p7s of a file (e.g. a daily log
// archive; openssl cms -verify -binary -inform DER -content FILE).
func (s *Signer) SignDetachedDER(content []byte, at time.Time) ([]byte, error) {
	if s.Key == nil || s.Cert == nil {
		return nil, errors.New("smime: signer needs a key and a certificate")
	}
	return s.signDetached(content, at)
}

// signDetached returns a DER ContentInfo holding a SignedData over content
// with no encapsulated content (RFC 5652 §5).
func (s *Signer) signDetached(content []byte, at time.Time) ([]byte, error) {
	h := s.hash()
	hOID, ok := hashOIDs[h]
	if !ok || !h.Available() {
		return nil, fmt.Errorf("smime: unsupported digest %v (use SHA-1, SHA-256, SHA-384 or SHA-512)", h)
	}
	md := h.New()
	md.Write(content)
	digest := md.Sum(nil)

	// Signed attributes (RFC 5652 §5.3, §11): contentType, signingTime, messageDigest.
	attrs := [][]byte{
		attribute(oidContentType, mustMarshal(oidData)),
		attribute(oidSigningTime, signingTime(at)),
		attribute(oidMessageDigest, mustMarshal(digest)),
	}
	// DER: the members of a SET OF are sorted by their encodings.
	sort.Slice(attrs, func(i, j int) bool { return bytes.Compare(attrs[i], attrs[j]) < 0 })
	attrSet := tlv(0x31, attrs...)
	ad := h.New()
	ad.Write(attrSet)
	sig, err := s.Key.Sign(rand.Reader, ad.Sum(nil), h)
	if err != nil {
		return nil, fmt.Errorf("smime: signing with the provider key failed: %w", err)
	}
	var sigAlg []byte
	switch s.Key.Public().(type) {
	case *rsa.PublicKey:
		sigAlg = algID(oidRSA, true)
	case *ecdsa.PublicKey:
		sigAlg = algID(ecdsaOIDs[h], false)
	default:
		return nil, fmt.Errorf("smime: unsupported key type %T (use RSA or ECDSA)", s.Key.Public())
	}
	ias := tlv(0x30, s.Cert.RawIssuer, mustMarshal(s.Cert.SerialNumber))
	signerInfo := tlv(0x30,
		mustMarshal(1),
		ias,
		algID(hOID, true),
		tlv(0xa0, attrs...), // [0] IMPLICIT SignedAttributes
		sigAlg,
		mustMarshal(sig),
	)
	certs := [][]byte{s.Cert.Raw}
	for _, c := range s.Chain {
		certs = append(certs, c.Raw)
	}
	signedData := tlv(0x30,
		mustMarshal(1),
		tlv(0x31, algID(hOID, true)),
		tlv(0x30, mustMarshal(oidData)), // detached: no eContent
		tlv(0xa0, certs...),             // [0] IMPLICIT CertificateSet
		tlv(0x31, signerInfo),
	)
	return tlv(0x30, mustMarshal(oidSignedData), tlv(0xa0, signedData)), nil
}

// signingTime encodes t as UTCTime for 1950–2049 and GeneralizedTime
// otherwise (RFC 5652 §11.3), in whole seconds.
func signingTime(t time.Time) []byte {
	t = t.UTC().Truncate(time.Second)
	if t.Year() >= 1950 && t.Year() < 2050 {
		b, _ := asn1.MarshalWithParams(t, "utc")
		return b
	}
	b, _ := asn1.MarshalWithParams(t, "generalized")
	return b
}

func attribute(oid asn1.ObjectIdentifier, value []byte) []byte {
	return tlv(0x30, mustMarshal(oid), tlv(0x31, value))
}

func algID(oid asn1.ObjectIdentifier, nullParams bool) []byte {
	if nullParams {
		return tlv(0x30, mustMarshal(oid), []byte{0x05, 0x00})
	}
	return tlv(0x30, mustMarshal(oid))
}

func mustMarshal(v any) []byte {
	switch x := v.(type) {
	case int:
		v = big.NewInt(int64(x))
	}
	b, err := asn1.Marshal(v)
	if err != nil {
		panic("smime: asn1 marshal: " + err.Error())
	}
	return b
}

// tlv encodes a DER tag-length-value with the concatenated contents.
func tlv(tag byte, contents ...[]byte) []byte {
	n := 0
	for _, c := range contents {
		n += len(c)
	}
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	case n < 0x1000000:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, c := range contents {
		out = append(out, c...)
	}
	return out
}

// MicalgHash maps a micalg parameter to its hash, accepting "sha1" and "sha-1".
func MicalgHash(micalg string) (crypto.Hash, bool) {
	switch strings.ToLower(strings.TrimSpace(micalg)) {
	case "sha1", "sha-1":
		return crypto.SHA1, true
	case "sha-256", "sha256":
		return crypto.SHA256, true
	case "sha-384", "sha384":
		return crypto.SHA384, true
	case "sha-512", "sha512":
		return crypto.SHA512, true
	}
	return 0, false
}
