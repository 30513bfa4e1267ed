// Package tsatest is a fake RFC 3161 time-stamp authority for tests: an
// http.Handler that answers a TimeStampReq with a TimeStampResp whose
// token is a CMS SignedData over a TSTInfo, signed by a test TSA
// certificate generated at test time (no key lives in the repository).
// It encodes everything itself with encoding/asn1, independently of the
// client in logarchive, and can be told to misbehave.
package tsatest

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/pecgo/pec/internal/testpki"
)

var (
	oidSignedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidTSTInfo       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidContentType   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidRSA           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidEKU           = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidTimeStamping  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
	// Policy is the TSA policy the fake writes in every TSTInfo.
	Policy = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1, 1}
)

type algorithm struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type imprint struct {
	Alg    algorithm
	Digest []byte
}

// Request is a decoded TimeStampReq.
type Request struct {
	Version    int
	Imprint    imprint
	Policy     asn1.ObjectIdentifier `asn1:"optional"`
	Nonce      *big.Int              `asn1:"optional"`
	CertReq    bool                  `asn1:"optional"`
	Extensions asn1.RawValue         `asn1:"optional,tag:0"`
}

// HashOID is the request's message imprint algorithm.
func (r *Request) HashOID() asn1.ObjectIdentifier { return r.Imprint.Alg.Algorithm }

// Digest is the request's hashed message.
func (r *Request) Digest() []byte { return r.Imprint.Digest }

type tstInfo struct {
	Version int
	Policy  asn1.ObjectIdentifier
	Imprint imprint
	Serial  *big.Int
	GenTime time.Time `asn1:"generalized"`
	Nonce   *big.Int  `asn1:"optional"`
}

type statusInfo struct {
	Status   int
	Text     []asn1.RawValue `asn1:"optional"` // UTF8String elements
	FailInfo asn1.BitString  `asn1:"optional"`
}

// TSA is the fake authority. Set the fields before serving to misbehave.
type TSA struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate
	Now   func() time.Time // nil: time.Now

	Status   int    // 0 granted (default); anything else is a refusal
	FailBit  int    // the failInfo bit set on a refusal
	Text     string // statusString on a refusal
	Nonce    *big.Int
	Digest   []byte // overrides the imprint (a reply about other data)
	HTTPCode int    // overrides 200

	mu       sync.Mutex
	serial   int64
	Requests [][]byte // every request body received
}

// New makes a TSA whose certificate (critical extKeyUsage timeStamping,
// as RFC 3161 §2.3 requires) is issued by pki's intermediate.
func New(pki *testpki.PKI) *TSA {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidTimeStamping})
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{Country: []string{"IT"}, Organization: []string{"Test TSA"}, CommonName: "Test Time-Stamping Unit"},
		NotBefore:    testpki.Epoch, NotAfter: testpki.Epoch.AddDate(15, 0, 0),
		KeyUsage:        x509.KeyUsageDigitalSignature,
		ExtraExtensions: []pkix.Extension{{Id: oidEKU, Critical: true, Value: eku}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pki.Intermediate.Cert, &key.PublicKey, pki.Intermediate.Key)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &TSA{Cert: c, Key: key, Chain: []*x509.Certificate{pki.Intermediate.Cert}}
}

// WriteFiles writes the TSA's certificate, key (PKCS#8) and chain as PEM
// into dir, for openssl ts -reply.
func (a *TSA) WriteFiles(dir string) (cert, key, chain string) {
	cert, key, chain = filepath.Join(dir, "tsa.pem"), filepath.Join(dir, "tsa-key.pem"), filepath.Join(dir, "tsa-chain.pem")
	k, _ := x509.MarshalPKCS8PrivateKey(a.Key)
	must(os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw}), 0o644))
	must(os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k}), 0o600))
	must(os.WriteFile(chain, testpki.PEM(a.Chain...), 0o644))
	return
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// ParseRequest decodes a DER TimeStampReq.
func ParseRequest(der []byte) (*Request, error) {
	var r Request
	rest, err := asn1.Unmarshal(der, &r)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("trailing data after the TimeStampReq")
	}
	return &r, nil
}

// ServeHTTP implements http.Handler: POST application/timestamp-query.
func (a *TSA) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("Content-Type") != "application/timestamp-query" {
		http.Error(w, "want application/timestamp-query", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	a.Requests = append(a.Requests, body)
	a.mu.Unlock()
	resp, err := a.Reply(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/timestamp-reply")
	if a.HTTPCode != 0 {
		w.WriteHeader(a.HTTPCode)
	}
	w.Write(resp)
}

// Reply answers a DER TimeStampReq with a DER TimeStampResp.
func (a *TSA) Reply(reqDER []byte) ([]byte, error) {
	req, err := ParseRequest(reqDER)
	if err != nil {
		return nil, err
	}
	if a.Status != 0 {
		si := statusInfo{Status: a.Status}
		if a.Text != "" {
			si.Text = []asn1.RawValue{{Tag: asn1.TagUTF8String, Bytes: []byte(a.Text)}}
		}
		bits := make([]byte, 4)
		bits[a.FailBit/8] |= 0x80 >> (a.FailBit % 8)
		si.FailInfo = asn1.BitString{Bytes: bits, BitLength: a.FailBit + 1}
		return asn1.Marshal(struct{ Status statusInfo }{si})
	}
	now := time.Now
	if a.Now != nil {
		now = a.Now
	}
	a.mu.Lock()
	a.serial++
	serial := a.serial
	a.mu.Unlock()
	ti := tstInfo{Version: 1, Policy: Policy, Imprint: req.Imprint, Serial: big.NewInt(serial),
		GenTime: now().UTC().Truncate(time.Second), Nonce: req.Nonce}
	if a.Nonce != nil {
		ti.Nonce = a.Nonce
	}
	if a.Digest != nil {
		ti.Imprint.Digest = a.Digest
	}
	tst, err := asn1.Marshal(ti)
	if err != nil {
		return nil, err
	}
	token, err := a.sign(tst, req.CertReq)
	if err != nil {
		return nil, err
	}
	status, _ := asn1.Marshal(statusInfo{Status: 0})
	return tlv(0x30, status, token), nil
}

// sign wraps tst in a CMS SignedData (RFC 5652) with eContentType
// id-ct-TSTInfo and signed attributes contentType and messageDigest.
func (a *TSA) sign(tst []byte, withCerts bool) ([]byte, error) {
	md := sha256.Sum256(tst)
	ct, _ := asn1.Marshal(oidTSTInfo)
	mdv, _ := asn1.Marshal(md[:])
	attr := func(oid asn1.ObjectIdentifier, v []byte) []byte {
		o, _ := asn1.Marshal(oid)
		return tlv(0x30, o, tlv(0x31, v))
	}
	attrs := [][]byte{attr(oidContentType, ct), attr(oidMessageDigest, mdv)}
	sort.Slice(attrs, func(i, j int) bool { return bytes.Compare(attrs[i], attrs[j]) < 0 })
	h := sha256.Sum256(tlv(0x31, attrs...))
	sig, err := a.Key.Sign(rand.Reader, h[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	null := []byte{0x05, 0x00}
	alg := func(oid asn1.ObjectIdentifier) []byte { o, _ := asn1.Marshal(oid); return tlv(0x30, o, null) }
	one, _ := asn1.Marshal(1)
	three, _ := asn1.Marshal(3)
	serial, _ := asn1.Marshal(a.Cert.SerialNumber)
	sigv, _ := asn1.Marshal(sig)
	si := tlv(0x30, one, tlv(0x30, a.Cert.RawIssuer, serial), alg(oidSHA256), tlv(0xa0, attrs...), alg(oidRSA), sigv)
	octets, _ := asn1.Marshal(tst)
	eci, _ := asn1.Marshal(oidTSTInfo)
	parts := [][]byte{three, tlv(0x31, alg(oidSHA256)), tlv(0x30, eci, tlv(0xa0, octets))}
	if withCerts {
		certs := [][]byte{a.Cert.Raw}
		for _, c := range a.Chain {
			certs = append(certs, c.Raw)
		}
		parts = append(parts, tlv(0xa0, certs...))
	}
	parts = append(parts, tlv(0x31, si))
	sd, _ := asn1.Marshal(oidSignedData)
	return tlv(0x30, sd, tlv(0xa0, tlv(0x30, parts...))), nil
}

func tlv(tag byte, contents ...[]byte) []byte {
	var body []byte
	for _, c := range contents {
		body = append(body, c...)
	}
	n := len(body)
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}
