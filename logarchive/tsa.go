package logarchive

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
)

// RFC 3161 time-stamp protocol: the request is built and the reply parsed
// here with encoding/asn1; the token's CMS signature is checked with
// github.com/smallstep/pkcs7.

var (
	oidTSTInfo     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4} // id-ct-TSTInfo
	oidContentType = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}

	tsHashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
		crypto.SHA256: {2, 16, 840, 1, 101, 3, 4, 2, 1},
		crypto.SHA384: {2, 16, 840, 1, 101, 3, 4, 2, 2},
		crypto.SHA512: {2, 16, 840, 1, 101, 3, 4, 2, 3},
	}
)

// MessageImprint ::= SEQUENCE { hashAlgorithm AlgorithmIdentifier, hashedMessage OCTET STRING }
type messageImprint struct {
	HashAlgorithm pkix.AlgorithmIdentifier
	HashedMessage []byte
}

// TimeStampReq (RFC 3161 §2.4.1). certReq is BOOLEAN DEFAULT FALSE: DER
// omits it when false, which encoding/asn1 does for an optional zero value.
type timeStampReq struct {
	Version        int
	MessageImprint messageImprint
	ReqPolicy      asn1.ObjectIdentifier `asn1:"optional"`
	Nonce          *big.Int              `asn1:"optional"`
	CertReq        bool                  `asn1:"optional"`
	Extensions     []pkix.Extension      `asn1:"optional,tag:0"`
}

// PKIStatusInfo (RFC 3161 §2.4.2).
type pkiStatusInfo struct {
	Status       int
	StatusString []string       `asn1:"optional"` // PKIFreeText: SEQUENCE OF UTF8String
	FailInfo     asn1.BitString `asn1:"optional"`
}

// TimeStampResp (RFC 3161 §2.4.2).
type timeStampResp struct {
	Status         pkiStatusInfo
	TimeStampToken asn1.RawValue `asn1:"optional"`
}

type accuracy struct {
	Seconds int64 `asn1:"optional"`
	Millis  int64 `asn1:"optional,tag:0"`
	Micros  int64 `asn1:"optional,tag:1"`
}

// TSTInfo (RFC 3161 §2.4.2).
type tstInfo struct {
	Version        int
	Policy         asn1.ObjectIdentifier
	MessageImprint messageImprint
	SerialNumber   *big.Int
	GenTime        time.Time        `asn1:"generalized"`
	Accuracy       accuracy         `asn1:"optional"`
	Ordering       bool             `asn1:"optional"`
	Nonce          *big.Int         `asn1:"optional"`
	TSA            asn1.RawValue    `asn1:"optional,tag:0"`
	Extensions     []pkix.Extension `asn1:"optional,tag:1"`
}

// TimestampInfo is what a verified time-stamp token says.
type TimestampInfo struct {
	GenTime      time.Time
	Serial       *big.Int
	Policy       asn1.ObjectIdentifier
	Nonce        *big.Int // nil when the token has none
	Hash         crypto.Hash
	Digest       []byte              // the message imprint
	Signer       *x509.Certificate   // the TSA certificate (nil if the token does not carry it)
	Certificates []*x509.Certificate // every certificate the token carries
	Status       int                 // 0 granted, 1 granted with modifications
}

// TimestampRequest encodes a DER TimeStampReq (RFC 3161 §2.4.1) for
// digest, computed with h (SHA-256, -384 or -512), with the given nonce
// (nil for none) and certReq (ask the TSA to include its certificate).
func TimestampRequest(h crypto.Hash, digest []byte, nonce *big.Int, certReq bool) ([]byte, error) {
	oid, ok := tsHashOIDs[h]
	if !ok {
		return nil, fmt.Errorf("logarchive: time-stamp request: unsupported digest %v", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("logarchive: time-stamp request: digest is %d bytes, %v wants %d", len(digest), h, h.Size())
	}
	req := timeStampReq{
		Version: 1,
		MessageImprint: messageImprint{
			HashAlgorithm: pkix.AlgorithmIdentifier{Algorithm: oid, Parameters: asn1.NullRawValue},
			HashedMessage: digest,
		},
		Nonce:   nonce,
		CertReq: certReq,
	}
	return asn1.Marshal(req)
}

// requestNonce returns the nonce of a DER TimeStampReq.
func requestNonce(der []byte) (*big.Int, error) {
	var req timeStampReq
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, errors.New("trailing data after the TimeStampReq")
	}
	return req.Nonce, nil
}

var failInfoNames = map[int]string{
	0: "badAlg (unrecognized or unsupported algorithm)", 2: "badRequest (transaction not permitted or supported)",
	5: "badDataFormat (the data submitted has the wrong format)", 14: "timeNotAvailable (the TSA's time source is not available)",
	15: "unacceptedPolicy", 16: "unacceptedExtension", 17: "addInfoNotAvailable", 25: "systemFailure",
}

var statusNames = map[int]string{0: "granted", 1: "grantedWithMods", 2: "rejection", 3: "waiting", 4: "revocationWarning", 5: "revocationNotification"}

// ParseTimestampReply decodes a DER TimeStampResp: the status must be
// granted (0) or grantedWithMods (1); the token must be a CMS SignedData
// over a TSTInfo whose signature verifies with the certificate it carries.
// It does not check the message imprint or the TSA's chain: see
// CheckTimestamp.
func ParseTimestampReply(der []byte) (*TimestampInfo, error) {
	var resp timeStampResp
	rest, err := asn1.Unmarshal(der, &resp)
	if err != nil {
		return nil, fmt.Errorf("not an RFC 3161 TimeStampResp: %v", err)
	}
	if len(rest) > 0 {
		return nil, errors.New("trailing data after the TimeStampResp")
	}
	st := resp.Status
	if st.Status != 0 && st.Status != 1 {
		msg := fmt.Sprintf("the TSA refused the request: status %d (%s)", st.Status, statusNames[st.Status])
		if len(st.StatusString) > 0 {
			msg += ": " + strings.Join(st.StatusString, "; ")
		}
		for bit, name := range failInfoNames {
			if st.FailInfo.At(bit) == 1 {
				msg += "; failInfo " + name
			}
		}
		return nil, errors.New(msg)
	}
	if len(resp.TimeStampToken.FullBytes) == 0 {
		return nil, errors.New("the TSA granted the request but sent no token")
	}
	p7, err := pkcs7.Parse(resp.TimeStampToken.FullBytes)
	if err != nil {
		return nil, fmt.Errorf("time-stamp token: %v", err)
	}
	var ct asn1.ObjectIdentifier
	if err := p7.UnmarshalSignedAttribute(oidContentType, &ct); err != nil || !ct.Equal(oidTSTInfo) {
		return nil, errors.New("time-stamp token: the signed content is not a TSTInfo")
	}
	if err := p7.Verify(); err != nil {
		return nil, fmt.Errorf("time-stamp token: the TSA signature does not verify: %v", err)
	}
	var ti tstInfo
	if rest, err := asn1.Unmarshal(p7.Content, &ti); err != nil || len(rest) > 0 {
		return nil, fmt.Errorf("time-stamp token: bad TSTInfo: %v", err)
	}
	info := &TimestampInfo{GenTime: ti.GenTime.UTC(), Serial: ti.SerialNumber, Policy: ti.Policy, Nonce: ti.Nonce,
		Digest: ti.MessageImprint.HashedMessage, Signer: p7.GetOnlySigner(), Certificates: p7.Certificates, Status: st.Status}
	for h, oid := range tsHashOIDs {
		if oid.Equal(ti.MessageImprint.HashAlgorithm.Algorithm) {
			info.Hash = h
		}
	}
	if info.Hash == 0 {
		return nil, fmt.Errorf("time-stamp token: unsupported imprint algorithm %v", ti.MessageImprint.HashAlgorithm.Algorithm)
	}
	return info, nil
}

// CheckTimestamp parses reply and checks that it time-stamps data (its
// message imprint is the hash of data). The TSA's chain is checked
// against roots at the token's time with the timeStamping key usage; a
// failure there is returned as a warning, since the TSA's roots are often
// not the PEC providers' ones.
func CheckTimestamp(reply, data []byte, roots *x509.CertPool) (*TimestampInfo, []string, error) {
	return checkReply(reply, data, roots)
}

func checkReply(reply, data []byte, roots *x509.CertPool) (*TimestampInfo, []string, error) {
	ts, err := ParseTimestampReply(reply)
	if err != nil {
		return nil, nil, err
	}
	hh := ts.Hash.New()
	hh.Write(data)
	if !bytes.Equal(hh.Sum(nil), ts.Digest) {
		return ts, nil, errors.New("the time-stamp is not over this signature (message imprint differs)")
	}
	var warn []string
	switch {
	case ts.Signer == nil:
		warn = append(warn, "the time-stamp token does not carry the TSA certificate: its chain was not checked")
	case roots == nil:
		warn = append(warn, "no trusted roots: the TSA certificate's chain was not checked")
	default:
		inter := x509.NewCertPool()
		for _, c := range ts.Certificates {
			if c != ts.Signer {
				inter.AddCert(c)
			}
		}
		_, err := ts.Signer.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: ts.GenTime,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}})
		if err != nil {
			warn = append(warn, fmt.Sprintf("the TSA certificate %q does not chain to the trusted roots for time-stamping: %v", ts.Signer.Subject.String(), err))
		}
	}
	return ts, warn, nil
}

// MaxReplySize bounds what Timestamp reads from a TSA.
const MaxReplySize = 1 << 20

// RequestTimestamp POSTs a DER TimeStampReq to url as
// application/timestamp-query (RFC 3161 §3.4) and returns the body of a
// 200 reply.
func RequestTimestamp(ctx context.Context, client *http.Client, url string, req []byte) ([]byte, error) {
	if client == nil {
		client = &http.Client{Timeout: time.Minute}
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(req))
	if err != nil {
		return nil, fmt.Errorf("TSA %s: %w", url, err)
	}
	hr.Header.Set("Content-Type", "application/timestamp-query")
	hr.Header.Set("Accept", "application/timestamp-reply")
	resp, err := client.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("TSA %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxReplySize+1))
	if err != nil {
		return nil, fmt.Errorf("TSA %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("TSA %s: HTTP %s", url, resp.Status)
	}
	if len(body) > MaxReplySize {
		return nil, fmt.Errorf("TSA %s: reply larger than %d bytes", url, MaxReplySize)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt != "application/timestamp-reply" && mt != "application/octet-stream" {
			return nil, fmt.Errorf("TSA %s: reply is %s, not application/timestamp-reply (is the URL right?)", url, mt)
		}
	}
	return body, nil
}

// Timestamp asks the TSA at url for a time-stamp over the signature of
// day's archive in dir (SHA-256 of the .p7s file, with a random nonce and
// certReq), checks the reply and writes the .tsq and .tsr files.
func Timestamp(ctx context.Context, client *http.Client, url, dir, day string, roots *x509.CertPool) (*TimestampInfo, []string, error) {
	files := PathsFor(dir, day)
	sig, err := os.ReadFile(files.Signature)
	if err != nil {
		return nil, nil, fmt.Errorf("logarchive: %w", err)
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return nil, nil, err
	}
	d := crypto.SHA256.New()
	d.Write(sig)
	req, err := TimestampRequest(crypto.SHA256, d.Sum(nil), nonce, true)
	if err != nil {
		return nil, nil, err
	}
	reply, err := RequestTimestamp(ctx, client, url, req)
	if err != nil {
		return nil, nil, fmt.Errorf("logarchive: %w", err)
	}
	ts, warn, err := checkReply(reply, sig, roots)
	if err != nil {
		return nil, nil, fmt.Errorf("logarchive: TSA %s: %w", url, err)
	}
	if ts.Nonce == nil || ts.Nonce.Cmp(nonce) != 0 {
		return nil, nil, fmt.Errorf("logarchive: TSA %s: the reply's nonce does not match the request (a replayed or misrouted reply)", url)
	}
	if err := writeAtomic(files.Query, req); err != nil {
		return nil, nil, err
	}
	if err := writeAtomic(files.Reply, reply); err != nil {
		return nil, nil, err
	}
	return ts, warn, nil
}
