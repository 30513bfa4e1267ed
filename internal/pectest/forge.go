package pectest

import (
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
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
