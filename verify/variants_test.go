package verify_test

// Signature variants real providers emit (PEC-SPEC §5.1, §6.7): both
// protocol names, SHA-1 and SHA-256 with their micalg, micalg that
// disagrees, the smime.p7s on one long line, CMS in BER with indefinite
// lengths. Messages are built with package build at test time and signed
// with a key from internal/testpki; variants outside the signed part are
// mutations of the built message.

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const original = "From: Mario Rossi <mario.rossi@pec.example.test>\r\n" +
	"To: luigi.verdi@pec.example.test, paolo@mail.example.org\r\n" +
	"Subject: Fattura n. 12\r\n" +
	"Message-ID: <20261123150400.abc@client.example.org>\r\n" +
	"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=\"iso-8859-1\"\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"In allegato la fattura, perch=E9 s=EC.\r\n"

var (
	pkiOnce sync.Once
	pki     *testpki.PKI
	id      *testpki.Provider
)

func identity() (*testpki.PKI, *testpki.Provider) {
	pkiOnce.Do(func() {
		pki = testpki.New("pec.example.test")
		id = pki.Issue("Test PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	})
	return pki, id
}

// envelope builds a transport envelope signed with digest h and the given
// signature protocol name ("" is the signer's default).
func envelope(t testing.TB, h crypto.Hash, protocol string) []byte {
	t.Helper()
	_, ident := identity()
	p := &build.Provider{Name: "Test PEC S.p.A.", Domain: "pec.example.test",
		Signer: &smime.Signer{Key: ident.Key, Cert: ident.Cert, Chain: ident.Chain, Hash: h, Protocol: protocol}}
	o, err := build.ParseOriginal([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	tx := o.Tx(p.NewIDAt(at), o.From[0], func(a string) daticert.DestTipo {
		if strings.HasSuffix(a, "@pec.example.test") {
			return daticert.Certificato
		}
		return daticert.Esterno
	})
	m, err := p.TransportEnvelope(at, tx, o, append(o.To, o.Cc...))
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

func valid(t testing.TB, raw []byte) *verify.Report {
	t.Helper()
	p, _ := identity()
	r := verify.Message(raw, p.Pool())
	if !r.Valid() {
		t.Fatalf("verify: %v", r.Err)
	}
	if r.Message.Kind != kind.PostaCertificata || r.Message.Daticert == nil {
		t.Fatalf("kind %s daticert %v", r.Message.Kind, r.Message.Daticert)
	}
	return r
}

// signatureBase64 returns the base64 text of the smime.p7s part of raw,
// exactly as it is in raw.
func signatureBase64(t testing.TB, raw []byte) []byte {
	t.Helper()
	h, body, err := rawmime.Split(raw)
	if err != nil {
		t.Fatal(err)
	}
	_, params := rawmime.MediaType(h.Get("Content-Type"))
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil || len(parts) != 2 {
		t.Fatalf("%d parts, %v", len(parts), err)
	}
	_, sbody, err := rawmime.Split(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(raw, sbody) != 1 {
		t.Fatal("test bug: signature text not unique in the message")
	}
	return sbody
}

// Both application/pkcs7-signature (current) and
// application/x-pkcs7-signature (every provider up to 2024) verify.
func TestVariantSignatureProtocolNames(t *testing.T) {
	for _, proto := range []string{"application/pkcs7-signature", "application/x-pkcs7-signature"} {
		t.Run(proto, func(t *testing.T) {
			raw := envelope(t, crypto.SHA256, proto)
			if !bytes.Contains(raw, []byte(`protocol="`+proto+`"`)) || !bytes.Contains(raw, []byte("Content-Type: "+proto+";")) {
				t.Fatal("test bug: protocol name not in the message")
			}
			r := valid(t, raw)
			if r.Signature.Protocol != proto {
				t.Fatalf("protocol %q", r.Signature.Protocol)
			}
		})
	}
}

// SHA-1 CMS with micalg="sha1" (2014–2024 providers); "sha-1" is the RFC
// 5751 spelling and is accepted too.
func TestVariantDigestSHA1MicalgSha1(t *testing.T) {
	raw := envelope(t, crypto.SHA1, "application/x-pkcs7-signature")
	if !bytes.Contains(raw, []byte(`micalg="sha1"`)) {
		t.Fatal("micalg sha1 not written")
	}
	r := valid(t, raw)
	if r.Signature.Digest != crypto.SHA1 || r.Signature.MicalgMismatch {
		t.Fatalf("digest %v micalg %q", r.Signature.Digest, r.Signature.Micalg)
	}
	for _, spelling := range []string{`micalg=SHA-1`, `micalg="sha-1"`, `micalg=sha1`} {
		r := valid(t, bytes.Replace(raw, []byte(`micalg="sha1"`), []byte(spelling), 1))
		if r.Signature.MicalgMismatch || len(r.Warnings) != 0 {
			t.Fatalf("%s: mismatch %v warnings %q", spelling, r.Signature.MicalgMismatch, r.Warnings)
		}
	}
}

// SHA-256 CMS with micalg="sha-256" (2021– providers).
func TestVariantDigestSHA256MicalgSha256(t *testing.T) {
	raw := envelope(t, crypto.SHA256, "application/pkcs7-signature")
	if !bytes.Contains(raw, []byte(`micalg="sha-256"`)) {
		t.Fatal("micalg sha-256 not written")
	}
	r := valid(t, raw)
	if r.Signature.Digest != crypto.SHA256 || r.Signature.MicalgMismatch {
		t.Fatalf("digest %v micalg %q", r.Signature.Digest, r.Signature.Micalg)
	}
	// Register.it writes sha256 without the dash
	for _, spelling := range []string{`micalg=sha256`, `micalg="SHA-256"`} {
		r := valid(t, bytes.Replace(raw, []byte(`micalg="sha-256"`), []byte(spelling), 1))
		if r.Signature.MicalgMismatch || len(r.Warnings) != 0 {
			t.Fatalf("%s: mismatch %v warnings %q", spelling, r.Signature.MicalgMismatch, r.Warnings)
		}
	}
}

// micalg that names another digest than the CMS one (or none) is reported
// by verify although the signature itself is good (RFC 5751 §3.4.3.2).
func TestVariantMicalgMismatch(t *testing.T) {
	for _, tc := range []struct {
		h        crypto.Hash
		from, to string
	}{
		{crypto.SHA1, `micalg="sha1"`, `micalg="sha-256"`},
		{crypto.SHA256, `micalg="sha-256"`, `micalg="sha1"`},
		{crypto.SHA256, `micalg="sha-256"`, `micalg="md5"`},
		{crypto.SHA256, ` micalg="sha-256";`, ``},
	} {
		t.Run(fmt.Sprintf("%v->%s", tc.h, tc.to), func(t *testing.T) {
			raw := envelope(t, tc.h, "")
			bad := bytes.Replace(raw, []byte(tc.from), []byte(tc.to), 1)
			if bytes.Equal(bad, raw) {
				t.Fatal("test bug: micalg not replaced")
			}
			// RFC 5751 §3.4.3.2: the CMS signature alone decides; the
			// wrong micalg is a warning
			r := valid(t, bad)
			if r.Signature.SignatureErr != nil || r.Signature.ChainErr != nil || !r.Signature.MicalgMismatch {
				t.Fatalf("signature result %+v", r.Signature)
			}
			if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "does not name the CMS digest "+tc.h.String()) {
				t.Fatalf("warnings %q", r.Warnings)
			}
		})
	}
}

// The smime.p7s base64 on one very long line (no 76-column wrapping).
func TestVariantP7sOneLongLine(t *testing.T) {
	raw := envelope(t, crypto.SHA256, "")
	sig := signatureBase64(t, raw)
	one := bytes.ReplaceAll(sig, []byte("\r\n"), nil)
	if len(one) < 1000 {
		t.Fatalf("test bug: signature only %d characters", len(one))
	}
	long := bytes.Replace(raw, sig, one, 1)
	valid(t, long)
	// and at 64 columns, as openssl writes it
	var b bytes.Buffer
	for s := one; len(s) > 0; {
		n := min(64, len(s))
		b.Write(s[:n])
		b.WriteString("\r\n")
		s = s[n:]
	}
	valid(t, bytes.Replace(raw, sig, b.Bytes(), 1))
}

// CMS in BER with indefinite lengths (Aruba's 2026 platform): openssl
// signs the envelope's signed part in streaming mode, the encapsulated
// copy of the content is cut out (it is not covered by the signature) so
// the SignedData is detached, and the result replaces smime.p7s.
func TestVariantBERIndefiniteLength(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed (scripts/install-deps installs it)")
	}
	raw := envelope(t, crypto.SHA256, "application/pkcs7-signature")
	m, err := parse.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, ident := identity()
	dir := t.TempDir() // the key lives here for the test only
	rootFile, _, keyFile := p.WriteFiles(dir, ident)
	certFile := filepath.Join(dir, "signer.pem")
	chainFile := filepath.Join(dir, "chain.pem")
	contentFile := filepath.Join(dir, "content.eml")
	sigFile := filepath.Join(dir, "sig.ber")
	for f, data := range map[string][]byte{certFile: testpki.PEM(ident.Cert), chainFile: testpki.PEM(ident.Chain...), contentFile: m.Content} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("openssl", "cms", "-sign", "-binary", "-stream", "-md", "sha256",
		"-in", contentFile, "-signer", certFile, "-inkey", keyFile, "-certfile", chainFile,
		"-outform", "DER", "-out", sigFile).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl cms -sign: %v\n%s", err, out)
	}
	ber, err := os.ReadFile(sigFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(ber) < 2 || ber[0] != 0x30 || ber[1] != 0x80 {
		t.Fatalf("openssl did not write indefinite lengths: % x", ber[:min(len(ber), 8)])
	}
	detached, err := detach(ber)
	if err != nil {
		t.Fatal(err)
	}
	// openssl agrees that the cut signature is a valid detached one
	detFile := filepath.Join(dir, "detached.ber")
	os.WriteFile(detFile, detached, 0o600)
	if out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", detFile,
		"-content", contentFile, "-CAfile", rootFile, "-purpose", "any", "-out", os.DevNull).CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify of the detached BER: %v\n%s", err, out)
	}

	var b bytes.Buffer
	smime.WriteBase64(&b, detached)
	msg := bytes.Replace(raw, signatureBase64(t, raw), bytes.TrimSuffix(b.Bytes(), []byte("\r\n")), 1)
	res, err := smime.Verify(msg, p.Pool())
	if err != nil {
		t.Fatalf("smime.Verify: %v", err)
	}
	if !res.Valid() || res.Digest != crypto.SHA256 || res.SigningTime.IsZero() || res.Signer == nil || !res.Signer.Equal(ident.Cert) {
		t.Fatalf("BER CMS: signature %v chain %v digest %v signing time %v", res.SignatureErr, res.ChainErr, res.Digest, res.SigningTime)
	}
	valid(t, msg)

	// a changed byte in the signed part still fails with the BER CMS
	i := bytes.Index(msg, []byte("Il messaggio originale"))
	bad := bytes.Clone(msg)
	bad[i] ^= 0x20
	if r := verify.Message(bad, p.Pool()); r.Valid() || r.Signature == nil || r.Signature.SignatureErr == nil {
		t.Fatalf("changed content verifies: %v", r.Err)
	}
}

// detach removes eContent from a BER ContentInfo{SignedData} whose
// enclosing elements all have indefinite lengths, so nothing else changes.
func detach(ber []byte) ([]byte, error) {
	// ContentInfo ::= SEQUENCE { contentType OID, [0] EXPLICIT SignedData }
	pos, err := enterIndef(ber, 0) // ContentInfo
	if err != nil {
		return nil, err
	}
	if pos, err = skip(ber, pos); err != nil { // contentType
		return nil, err
	}
	if pos, err = enterIndef(ber, pos); err != nil { // [0]
		return nil, err
	}
	if pos, err = enterIndef(ber, pos); err != nil { // SignedData
		return nil, err
	}
	for range 2 { // version, digestAlgorithms
		if pos, err = skip(ber, pos); err != nil {
			return nil, err
		}
	}
	if pos, err = enterIndef(ber, pos); err != nil { // encapContentInfo
		return nil, err
	}
	if pos, err = skip(ber, pos); err != nil { // eContentType
		return nil, err
	}
	if ber[pos] != 0xa0 {
		return nil, fmt.Errorf("no eContent at offset %d (tag %#x)", pos, ber[pos])
	}
	n, err := elemLen(ber[pos:])
	if err != nil {
		return nil, err
	}
	return append(append([]byte{}, ber[:pos]...), ber[pos+n:]...), nil
}

func enterIndef(b []byte, pos int) (int, error) {
	if pos+2 > len(b) || b[pos]&0x20 == 0 || b[pos+1] != 0x80 {
		return 0, fmt.Errorf("want a constructed indefinite-length element at offset %d", pos)
	}
	return pos + 2, nil
}

func skip(b []byte, pos int) (int, error) {
	n, err := elemLen(b[pos:])
	return pos + n, err
}

// elemLen is the encoded length of the BER element at the start of b.
func elemLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errors.New("truncated BER")
	}
	if b[0]&0x1f == 0x1f {
		return 0, errors.New("high tag numbers not expected in CMS")
	}
	l := int(b[1])
	switch {
	case l == 0x80:
		if b[0]&0x20 == 0 {
			return 0, errors.New("indefinite length on a primitive element")
		}
		pos := 2
		for {
			if pos+2 > len(b) {
				return 0, errors.New("unterminated indefinite length")
			}
			if b[pos] == 0 && b[pos+1] == 0 {
				return pos + 2, nil
			}
			n, err := elemLen(b[pos:])
			if err != nil {
				return 0, err
			}
			pos += n
		}
	case l < 0x80:
		if 2+l > len(b) {
			return 0, errors.New("truncated BER")
		}
		return 2 + l, nil
	}
	nb := l & 0x7f
	if nb > 3 || 2+nb > len(b) {
		return 0, errors.New("unexpected length of length")
	}
	n := 0
	for _, c := range b[2 : 2+nb] {
		n = n<<8 | int(c)
	}
	if 2+nb+n > len(b) {
		return 0, errors.New("truncated BER")
	}
	return 2 + nb + n, nil
}
