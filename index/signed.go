package index

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/smallstep/pkcs7"
)

// LoadSignedLDIF verifies a CMS SignedData carrying the LDIF inside it
// (opaque signed-data, application/pkcs7-mime; smime-type=signed-data, the
// .p7m that IGPEC and each provider publish, RFC 6109 §4.5) and parses the
// LDIF. data is DER, PEM ("PKCS7" or "CMS" block) or bare base64 of the DER.
//
// The signature must verify and the signer's certificate must chain to
// roots (at the CMS signingTime when present, else now); roots is
// mandatory. A tampered, unsigned or detached file is refused with an error
// saying which check failed.
func LoadSignedLDIF(data []byte, roots *x509.CertPool) (*Index, error) {
	if roots == nil {
		return nil, errors.New("index: signed LDIF: no trust roots given, refusing to load without checking the signer")
	}
	der, err := cmsDER(data)
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("index: signed LDIF: not a CMS SignedData: %v", err)
	}
	if len(p7.Signers) == 0 {
		return nil, errors.New("index: signed LDIF refused: the CMS structure carries no signature")
	}
	if len(p7.Content) == 0 {
		return nil, errors.New("index: signed LDIF refused: no LDIF inside the CMS structure (detached signature?)")
	}
	if err := p7.VerifyWithChain(roots); err != nil {
		var mismatch *pkcs7.MessageDigestMismatchError
		if errors.As(err, &mismatch) {
			return nil, fmt.Errorf("index: signed LDIF refused: the LDIF does not match its signature (altered after signing): %v", err)
		}
		return nil, fmt.Errorf("index: signed LDIF refused: signature or signer certificate check failed: %v", err)
	}
	ix, err := ParseLDIF(bytes.NewReader(p7.Content))
	if err != nil {
		return nil, fmt.Errorf("index: signed LDIF (signature valid): %w", err)
	}
	ix.signer = p7.GetOnlySigner()
	var at time.Time
	if err := p7.UnmarshalSignedAttribute(pkcs7.OIDAttributeSigningTime, &at); err == nil {
		ix.signedAt = at
	}
	return ix, nil
}

// cmsDER returns the DER bytes of a DER, PEM or base64 CMS structure.
func cmsDER(data []byte) ([]byte, error) {
	t := bytes.TrimSpace(data)
	if len(t) == 0 {
		return nil, errors.New("index: signed LDIF: empty file")
	}
	if t[0] == 0x30 {
		return data, nil
	}
	if bytes.HasPrefix(t, []byte("-----BEGIN ")) {
		blk, _ := pem.Decode(t)
		if blk == nil {
			return nil, errors.New("index: signed LDIF: malformed PEM")
		}
		switch blk.Type {
		case "PKCS7", "CMS", "PKCS #7 SIGNED DATA":
			return blk.Bytes, nil
		}
		return nil, fmt.Errorf("index: signed LDIF: PEM block %q is not PKCS7/CMS", blk.Type)
	}
	if bytes.HasPrefix(t, []byte("dn:")) || bytes.HasPrefix(t, []byte("version:")) || t[0] == '#' {
		return nil, errors.New("index: signed LDIF refused: the file is plain LDIF, not signed (a CMS SignedData is required)")
	}
	b, err := base64.StdEncoding.DecodeString(string(bytes.Join(bytes.Fields(t), nil)))
	if err != nil || len(b) == 0 || b[0] != 0x30 {
		return nil, errors.New("index: signed LDIF: not a CMS SignedData (neither DER, PEM nor base64 DER)")
	}
	return b, nil
}

// SignLDIF wraps ldif in an opaque CMS SignedData (DER, SHA-256, with
// signingTime), signed by key/cert with chain (intermediates) embedded: the
// form a provider publishes its own LDIF in and IGPEC distributes the whole
// directory in (RFC 6109 §4.5). key may be any crypto.Signer (file or HSM).
func SignLDIF(ldif []byte, key crypto.Signer, cert *x509.Certificate, chain []*x509.Certificate) ([]byte, error) {
	if key == nil || cert == nil {
		return nil, errors.New("index: SignLDIF needs a key and a certificate")
	}
	sd, err := pkcs7.NewSignedData(ldif)
	if err != nil {
		return nil, fmt.Errorf("index: SignLDIF: %v", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("index: SignLDIF: %v", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("index: SignLDIF: %v", err)
	}
	return der, nil
}
