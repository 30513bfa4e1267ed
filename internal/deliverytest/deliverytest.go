// Package deliverytest is the delivery point's test bench, shared by the
// rule tests (package point) and the LMTP adapter's tests (package lmtp):
// two providers of an index, a third signer outside it, and a
// point.Delivery for provider B.
package deliverytest

import (
	"bytes"
	"crypto/x509"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
)

// At is the instant of the bench's messages.
var At = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// The bench's mailboxes: Mario at provider A, the others at B.
const (
	Mario   = "mario.rossi@pec-a.example.test"
	Luigi   = "luigi.verdi@pec-b.example.test"
	Carla   = "carla.neri@pec-b.example.test"
	Anna    = "anna.blu@pec-b.example.test" // refuses ordinary mail
	Ugo     = "ugo@pec-b.example.test"
	Intruso = "intruso@pec-b.example.test" // a mailbox of B the sender never wrote to
)

// Bench holds the providers and the delivery rules of provider B.
type Bench struct {
	PKI     *testpki.PKI
	A, B, X *build.Provider // X: signs with a certificate outside the index
	D       *point.Delivery
}

// New is a fresh bench: its own CA, index and rules.
func New(t testing.TB) *Bench {
	pki := testpki.New("pec-a.example.test", "pec-b.example.test")
	aID := pki.Issue("Provider A S.p.A.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	bID := pki.Issue("Provider B S.p.A.", "posta-certificata@pec-b.example.test", time.Time{}, time.Time{}, false)
	xID := pki.Issue("Intruso S.r.l.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	ix, err := index.ParseLDIF(bytes.NewReader(index.TestLDIF(
		index.TestProvider{Name: "Provider A S.p.A.", Domains: []string{"pec-a.example.test"}, Certs: []*x509.Certificate{aID.Cert}},
		index.TestProvider{Name: "Provider B S.p.A.", Domains: []string{"pec-b.example.test"}, Certs: []*x509.Certificate{bID.Cert}})))
	if err != nil {
		t.Fatal(err)
	}
	signer := func(id *testpki.Provider) *smime.Signer {
		return &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}
	}
	b := &Bench{PKI: pki,
		A: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Signer: signer(aID)},
		B: &build.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Signer: signer(bID)},
		X: &build.Provider{Name: "Intruso S.r.l.", Domain: "pec-a.example.test", Signer: signer(xID)},
	}
	b.D = &point.Delivery{Provider: b.B, Roots: pki.Pool(),
		Policy: &point.Policy{ManagedDomains: []string{"pec-b.example.test"}, ServiceMailbox: "posta-certificata@pec-b.example.test",
			OrdinaryMail: "accept", Mailboxes: map[string]point.MailboxPolicy{Anna: {OrdinaryMail: "refuse"}}},
		Index: func() (point.Directory, error) { return service.Directory{Ix: ix}, nil }}
	return b
}

// Root is the PEM of the test CA.
func (b *Bench) Root() []byte { return testpki.PEM(b.PKI.Root.Cert) }

// Envelope: Mario writes To Luigi, Anna, Ugo and Cc Carla (the daticert's
// destinatari); rcpts is the SMTP envelope.
func (b *Bench) Envelope(t testing.TB, signer *build.Provider, tipo string, rcpts ...string) []byte {
	raw := "From: " + Mario + "\r\nTo: " + Luigi + ", " + Anna + ", " + Ugo + ", x@pec-c.example.test\r\nCc: " + Carla + "\r\nSubject: prova\r\nMessage-ID: <p@client.example.test>\r\n"
	if tipo != "" {
		raw += "X-TipoRicevuta: " + tipo + "\r\n"
	}
	raw += "\r\nciao\r\n"
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx(signer.NewIDAt(At), Mario, func(string) daticert.DestTipo { return daticert.Certificato })
	m, err := signer.TransportEnvelope(At, tx, o, rcpts)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

// Receipt is a delivery receipt about Luigi for an envelope of Mario's.
func (b *Bench) Receipt(t testing.TB, signer *build.Provider) []byte {
	o, _ := build.ParseOriginal([]byte("From: " + Mario + "\r\nTo: " + Luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec7@pec-a.example.test", Mario, func(string) daticert.DestTipo { return daticert.Certificato })
	n, err := signer.AvvenutaConsegna(At, tx, Luigi, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n.Bytes()
}
