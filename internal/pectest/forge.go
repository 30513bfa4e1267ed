package pectest

import (
	"bytes"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// ForgeEnvelope builds a transport envelope signed by id as if an access
// point had accepted a plain message from sender to rcpt: used to send
// envelopes straight to a provider's port 25 (tampered, unknown signer,
// infected content).
func ForgeEnvelope(t testing.TB, id *testpki.Provider, sender, rcpt, subject string) []byte {
	return ForgeEnvelopeBody(t, id, sender, rcpt, subject, "Content-Type: text/plain\r\n\r\nBuongiorno.\r\n")
}

// ForgeEnvelopeBody is ForgeEnvelope with a given MIME body (headers from
// Content-Type on).
func ForgeEnvelopeBody(t testing.TB, id *testpki.Provider, sender, rcpt, subject, body string) []byte {
	t.Helper()
	domain := "forged.example.test"
	if len(id.Cert.EmailAddresses) > 0 {
		_, domain, _ = cut(id.Cert.EmailAddresses[0])
	}
	p := &build.Provider{Name: "Forged", Domain: domain, Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}
	raw := "From: " + sender + "\r\nTo: " + rcpt + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + time.Now().Format("150405.000000") + "@client.example.test>\r\nMIME-Version: 1.0\r\n" + body
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tx := o.Tx(p.NewIDAt(now), sender, func(string) daticert.DestTipo { return daticert.Certificato })
	m, err := p.TransportEnvelope(now, tx, o, []string{rcpt})
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

func cut(addr string) (string, string, bool) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == '@' {
			return addr[:i], addr[i+1:], true
		}
	}
	return addr, "", false
}

// Resign signs the content of raw (a PEC message) again with id at time
// at, after editDaticert changed its decoded daticert.xml and editHeader
// (nil: none) its outer header section: a message as signed by a provider
// that wrote such a daticert (PEC-SPEC §6.7). Digest and boundaries are
// the builder's defaults, so the outer Content-Type stays as it was.
func Resign(t testing.TB, id *testpki.Provider, raw []byte, at time.Time, editDaticert func([]byte) []byte, editHeader func(string) string) []byte {
	t.Helper()
	raw = rawmime.CRLF(raw)
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	h, body, err := rawmime.Split(raw)
	if err != nil || end < 0 {
		t.Fatalf("resign: %v", err)
	}
	_, params := rawmime.MediaType(h.Get("Content-Type"))
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil || len(parts) != 2 {
		t.Fatalf("resign: signed parts: %d, %v", len(parts), err)
	}
	content := parts[0]
	ch, cbody, err := rawmime.Split(content)
	if err != nil {
		t.Fatal(err)
	}
	_, cparams := rawmime.MediaType(ch.Get("Content-Type"))
	inner, err := rawmime.Parts(cbody, cparams["boundary"])
	if err != nil {
		t.Fatal(err)
	}
	edited := false
	for _, p := range inner {
		ph, pbody, err := rawmime.Split(p)
		if err != nil {
			continue
		}
		if _, dp := rawmime.MediaType(ph.Get("Content-Disposition")); dp["filename"] != "daticert.xml" {
			continue
		}
		x, err := rawmime.DecodeBase64(pbody)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		smime.WriteBase64(&b, editDaticert(x))
		content = bytes.Replace(content, pbody, bytes.TrimRight(b.Bytes(), "\r\n"), 1)
		edited = true
	}
	if !edited {
		t.Fatal("resign: no daticert.xml part")
	}
	signer := &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}
	_, signed, err := signer.Sign(content, at, params["boundary"])
	if err != nil {
		t.Fatal(err)
	}
	header := string(raw[:end+2])
	if editHeader != nil {
		header = editHeader(header)
	}
	return append([]byte(header+"\r\n"), signed...)
}
