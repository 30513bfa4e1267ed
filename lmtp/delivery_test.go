package lmtp_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	anna  = "anna.blu@pec-b.example.test"
	ugo   = "ugo@pec-b.example.test"
)

type bench struct {
	pki  *testpki.PKI
	a, b *build.Provider
	d    *lmtp.Delivery
}

func newBench(t *testing.T) *bench {
	pki := testpki.New("pec-a.example.test", "pec-b.example.test")
	aID := pki.Issue("Provider A S.p.A.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	bID := pki.Issue("Provider B S.p.A.", "posta-certificata@pec-b.example.test", time.Time{}, time.Time{}, false)
	ix, err := index.ParseLDIF(bytes.NewReader(index.TestLDIF(
		index.TestProvider{Name: "Provider A S.p.A.", Domains: []string{"pec-a.example.test"}, Certs: []*x509.Certificate{aID.Cert}},
		index.TestProvider{Name: "Provider B S.p.A.", Domains: []string{"pec-b.example.test"}, Certs: []*x509.Certificate{bID.Cert}})))
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{pki: pki,
		a: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Signer: &smime.Signer{Key: aID.Key, Cert: aID.Cert, Chain: aID.Chain}},
		b: &build.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Signer: &smime.Signer{Key: bID.Key, Cert: bID.Cert, Chain: bID.Chain}},
	}
	b.d = &lmtp.Delivery{Provider: b.b, Roots: pki.Pool(),
		Config: &config.Config{Provider: config.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", ManagedDomains: []string{"pec-b.example.test"}}},
		Index:  func() (filter.Directory, error) { return service.Directory{Ix: ix}, nil }}
	return b
}

func (b *bench) envelope(t *testing.T, signer *build.Provider, tipo string, rcpts ...string) []byte {
	raw := "From: " + mario + "\r\nTo: " + luigi + ", " + anna + ", " + ugo + "\r\nCc: " + carla + "\r\nSubject: prova\r\nMessage-ID: <p@client.example.test>\r\n"
	if tipo != "" {
		raw += "X-TipoRicevuta: " + tipo + "\r\n"
	}
	raw += "\r\nciao\r\n"
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx(signer.NewIDAt(at), mario, func(string) daticert.DestTipo { return daticert.Certificato })
	m, err := signer.TransportEnvelope(at, tx, o, rcpts)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}

func TestDecideReceipts(t *testing.T) {
	b := newBench(t)
	raw := b.envelope(t, b.a, "", luigi, carla, anna, ugo)
	m, err := b.d.Classify(raw)
	if err != nil || !m.PEC || m.Ours {
		t.Fatalf("classify: %v %+v", err, m)
	}
	temp := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	out, err := b.d.Decide(at, m, mario, []lmtp.Result{
		{Rcpt: luigi},
		{Rcpt: carla},
		{Rcpt: anna, Err: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "User doesn't exist"}},
		{Rcpt: ugo, Err: temp},
	})
	if err != nil {
		t.Fatal(err)
	}
	// stored and permanently failed recipients: 250 (the receipt is the answer); temporary: the error
	if out.Status[luigi] != nil || out.Status[carla] != nil || out.Status[anna] != nil || !errors.Is(out.Status[ugo], temp) {
		t.Fatalf("statuses %v", out.Status)
	}
	if len(out.Txn.Outbox) != 3 {
		t.Fatalf("%d receipts, want 3 (none for the temporary failure)", len(out.Txn.Outbox))
	}
	got := map[string]*parse.Message{}
	for _, o := range out.Txn.Outbox {
		if o.Rcpts[0] != mario || o.MailFrom != "posta-certificata@pec-b.example.test" {
			t.Fatalf("receipt to %v from %s", o.Rcpts, o.MailFrom)
		}
		p, err := parse.Parse(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[p.Daticert.Consegna] = p
		conformance.Check(t, string(p.Kind)+"-"+p.Daticert.Consegna, o.Data, testpki.PEM(b.pki.Root.Cert))
	}
	if got[luigi].Kind != kind.AvvenutaConsegna || got[luigi].Original == nil {
		t.Error("To recipient: completa receipt with the original")
	}
	if got[carla].Kind != kind.AvvenutaConsegna || got[carla].Original != nil || got[carla].Daticert.Ricevuta != daticert.Completa {
		t.Error("Cc recipient: sintetica form, ricevuta still the requested completa")
	}
	if e := got[anna].Daticert; got[anna].Kind != kind.ErroreConsegna || e.Errore != daticert.NoDest || e.ErroreEsteso != "5.1.1 - Provider B S.p.A. - casella del destinatario inesistente" {
		t.Errorf("no-dest: %s %s %q", got[anna].Kind, e.Errore, e.ErroreEsteso)
	}
}

func TestDecideMailboxFullAndDomain(t *testing.T) {
	b := newBench(t)
	m, _ := b.d.Classify(b.envelope(t, b.a, "", luigi, "x@pec-c.example.test"))
	out, err := b.d.Decide(at, m, mario, []lmtp.Result{
		{Rcpt: luigi, Err: &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Quota exceeded"}},
		{Rcpt: "x@pec-c.example.test", Err: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "no such domain"}},
	})
	if err != nil || len(out.Txn.Outbox) != 2 {
		t.Fatalf("%v %d", err, len(out.Txn.Outbox))
	}
	full, _ := parse.Parse(out.Txn.Outbox[0].Data)
	dom, _ := parse.Parse(out.Txn.Outbox[1].Data)
	if full.Daticert.Errore != daticert.Altro || full.Daticert.ErroreEsteso != "5.2.2 - Provider B S.p.A. - casella del destinatario piena" {
		t.Errorf("full: %s %q", full.Daticert.Errore, full.Daticert.ErroreEsteso)
	}
	if dom.Daticert.Errore != daticert.NoDominio {
		t.Errorf("domain: %s %q", dom.Daticert.Errore, dom.Daticert.ErroreEsteso)
	}
}

func TestDecideNonPECAndNotices(t *testing.T) {
	b := newBench(t)
	fail := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no"}
	m, _ := b.d.Classify([]byte("From: a@mail.example.org\r\nTo: " + luigi + "\r\nSubject: x\r\n\r\nx\r\n"))
	out, _ := b.d.Decide(at, m, "a@mail.example.org", []lmtp.Result{{Rcpt: luigi, Err: fail}})
	if out.Status[luigi] != fail || len(out.Txn.Outbox) != 0 {
		t.Fatal("ordinary mail: Dovecot's answer passes through, no receipt")
	}
	// a valid notice for one of our users: delivered, no receipt, and
	// correlated for the timers when its signer manages the recipient
	o, _ := build.ParseOriginal([]byte("From: maria@pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec7@pec-b.example.test", "maria@pec-b.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	n, _ := b.a.AvvenutaConsegna(at, tx, "z@pec-a.example.test", true, nil)
	m, err := b.d.Classify(n.Bytes())
	if err != nil || m.PEC || m.Notice == nil {
		t.Fatalf("notice: %v %+v", err, m)
	}
	out, _ = b.d.Decide(at, m, n.MailFrom, []lmtp.Result{{Rcpt: "maria@pec-b.example.test"}})
	if len(out.Txn.Outbox) != 0 || len(out.Txn.Marks) != 1 || out.Txn.Marks[0].PECID != "pec7@pec-b.example.test" || out.Txn.Marks[0].Rcpt != "z@pec-a.example.test" {
		t.Fatalf("notice marks %+v", out.Txn.Marks)
	}
	// a receipt about a recipient its signer does not manage is not trusted for the timers
	forged, _ := b.a.AvvenutaConsegna(at, tx, "z@pec-b.example.test", true, nil)
	m, _ = b.d.Classify(forged.Bytes())
	out, _ = b.d.Decide(at, m, forged.MailFrom, []lmtp.Result{{Rcpt: "maria@pec-b.example.test"}})
	if len(out.Txn.Marks) != 0 {
		t.Fatalf("foreign receipt marked %+v", out.Txn.Marks)
	}
}

// Our own envelope (same provider): the delivery point also sends the
// take-charge to our own mailReceipt.
func TestDecideOwnEnvelope(t *testing.T) {
	b := newBench(t)
	m, _ := b.d.Classify(b.envelope(t, b.b, "", luigi, carla))
	if !m.Ours {
		t.Fatal("own envelope not recognised")
	}
	out, _ := b.d.Decide(at, m, mario, []lmtp.Result{{Rcpt: luigi}, {Rcpt: carla}})
	if len(out.Txn.Outbox) != 3 {
		t.Fatalf("%d messages, want take-charge + 2 receipts", len(out.Txn.Outbox))
	}
	p, _ := parse.Parse(out.Txn.Outbox[0].Data)
	if p.Kind != kind.PresaInCarico || out.Txn.Outbox[0].Rcpts[0] != "posta-certificata@pec-b.example.test" || len(p.Daticert.Ricezione) != 2 {
		t.Fatalf("%s to %v ricezione %v", p.Kind, out.Txn.Outbox[0].Rcpts, p.Daticert.Ricezione)
	}
}
