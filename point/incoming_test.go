package point_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/revocation"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

// two providers: A sends, B (us) receives. A's certificate domain is not
// among its managed domains, as in real life (PEC-SPEC §6.6 rule 11).
type incomingEnv struct {
	pki     *testpki.PKI
	a, b    *build.Provider
	aID     *testpki.Provider
	cfg     *config.Config
	ix      *index.Index
	scanner scanner
}

const anna = "anna.blu@pec-b.example.test"

func newIncoming(t *testing.T) *incomingEnv { return newIncomingWith(t, testpki.Options{}) }

// newIncomingWith issues provider A's certificate with opts.
func newIncomingWith(t *testing.T, opts testpki.Options) *incomingEnv {
	pki := testpki.New("pec.provider-a.example.test", "pec-b.example.test")
	aID := pki.IssueWith("Provider A S.p.A.", "posta-certificata@pec.provider-a.example.test", opts)
	bID := pki.Issue("Provider B S.p.A.", "posta-certificata@pec-b.example.test", time.Time{}, time.Time{}, false)
	e := &incomingEnv{pki: pki, aID: aID,
		a: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec.provider-a.example.test", Signer: &smime.Signer{Key: aID.Key, Cert: aID.Cert, Chain: aID.Chain}},
		b: &build.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Signer: &smime.Signer{Key: bID.Key, Cert: bID.Cert, Chain: bID.Chain}},
		cfg: &config.Config{
			Provider: config.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", ManagedDomains: []string{"pec-b.example.test"}, MailReceipt: "posta-certificata@pec-b.example.test"},
			Policy: config.Policy{OrdinaryMail: "accept", FromDomainCheck: "warn", Mailboxes: map[string]config.Mailbox{
				anna: {OrdinaryMail: "refuse"}, carla: {ForwardTo: "carla@mail.example.org"}}},
		}}
	ix, err := index.ParseLDIF(bytes.NewReader(index.TestLDIF(
		index.TestProvider{Name: "Provider A S.p.A.", MailReceipt: "posta-certificata@pec.provider-a.example.test", Domains: []string{"pec-a.example.test"}, Certs: []*x509.Certificate{aID.Cert}},
		index.TestProvider{Name: "Provider B S.p.A.", Domains: []string{"pec-b.example.test"}, Certs: []*x509.Certificate{bID.Cert}},
	)))
	if err != nil {
		t.Fatal(err)
	}
	e.ix = ix
	return e
}

func (e *incomingEnv) incoming() *point.Incoming {
	return &point.Incoming{Provider: e.b, Policy: e.cfg.RulePolicy(), Roots: e.pki.Pool(), Scanner: e.scanner,
		Index: func() (point.Directory, error) { return service.Directory{Ix: e.ix}, nil }}
}

// envelope makes A's transport envelope for rcpts.
func (e *incomingEnv) envelope(t *testing.T, signer *build.Provider, subject string, rcpts ...string) ([]byte, *build.Tx) {
	raw := "From: " + mario + "\r\nTo: " + strings.Join(rcpts, ", ") + "\r\nSubject: " + subject + "\r\nMessage-ID: <x@client.example.test>\r\n\r\nciao\r\n"
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	tx := o.Tx(signer.NewIDAt(at), mario, func(string) daticert.DestTipo { return daticert.Certificato })
	m, err := signer.TransportEnvelope(at, tx, o, rcpts)
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes(), tx
}

func (e *incomingEnv) check(t *testing.T, name string, raw []byte) {
	conformance.Check(t, name, raw, testpki.PEM(e.pki.Root.Cert))
}

func TestIncomingValidEnvelope(t *testing.T) {
	e := newIncoming(t)
	raw, tx := e.envelope(t, e.a, "valida", luigi, carla, paolo)
	d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}, raw, at)
	if d.Action != point.Accept || d.Replace != nil {
		t.Fatalf("%v %q: a valid envelope is delivered unchanged", d.Action, d.Reason)
	}
	if d.Kind != kind.PostaCertificata {
		t.Errorf("decision kind %q, want the envelope's", d.Kind)
	}
	if len(d.Txn.Outbox) != 1 {
		t.Fatalf("%d notices, want one take-charge for the transaction", len(d.Txn.Outbox))
	}
	n := d.Txn.Outbox[0]
	p, _ := parse.Parse(n.Data)
	if p.Kind != kind.PresaInCarico || n.Rcpts[0] != "posta-certificata@pec.provider-a.example.test" || n.MailFrom != "posta-certificata@pec-b.example.test" {
		t.Fatalf("%s to %v from %s", p.Kind, n.Rcpts, n.MailFrom)
	}
	if strings.Join(p.Daticert.Ricezione, ",") != luigi+","+carla {
		t.Fatalf("ricezione %v", p.Daticert.Ricezione)
	}
	// intestazione, identificativo and msgid travel unchanged (PEC-SPEC §6.6 rules 3-4)
	if p.Daticert.Identificativo != tx.ID || p.Daticert.Msgid != tx.MsgID || len(p.Daticert.Destinatari) != 3 || p.Daticert.Mittente != mario {
		t.Fatalf("daticert %+v", p.Daticert)
	}
	if h := p.Header.Get("X-Riferimento-Message-ID"); h != tx.MsgID || p.Header.Get("Message-ID") == "<"+tx.ID+">" {
		t.Fatalf("X-Riferimento %q Message-ID %q: a notice has its own fresh Message-ID", h, p.Header.Get("Message-ID"))
	}
	e.check(t, "presa-in-carico", n.Data)
}

func TestIncomingAnomalies(t *testing.T) {
	e := newIncoming(t)
	intruder := e.pki.Issue("Intruso", "posta-certificata@pec.provider-a.example.test", time.Time{}, time.Time{}, false)
	forged := &build.Provider{Name: "Intruso", Domain: "pec.provider-a.example.test", Signer: &smime.Signer{Key: intruder.Key, Cert: intruder.Cert, Chain: intruder.Chain}}
	unknown, _ := e.envelope(t, forged, "sconosciuto", luigi)
	tampered, _ := e.envelope(t, e.a, "alterato", luigi)
	tampered = bytes.Replace(tampered, []byte("ciao"), []byte("CIAO"), 1)
	unsigned, _ := e.envelope(t, e.a, "non firmato", luigi)
	// strip the signature: keep the headers, replace the body
	unsigned = append(bytes.SplitN(unsigned, []byte("\r\n\r\n"), 2)[0][:0:0], []byte("X-Trasporto: posta-certificata\r\nFrom: posta-certificata@pec.provider-a.example.test\r\nTo: "+luigi+"\r\nSubject: POSTA CERTIFICATA: non firmato\r\n\r\nciao\r\n")...)
	for name, c := range map[string]struct {
		raw  []byte
		want string
	}{
		"unknown-signer": {unknown, "non appartiene a un gestore"},
		"tampered":       {tampered, "alterato"},
		// PEC type headers without any signature: ordinary mail (wrapped
		// here; refused where the mailbox refuses ordinary mail, below)
		"unsigned": {unsigned, "non è un messaggio di posta certificata"},
	} {
		t.Run(name, func(t *testing.T) {
			d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, c.raw, at)
			if d.Action != point.Accept || d.Replace == nil || d.Replace.Kind != kind.Anomalia || !strings.Contains(d.Reason, c.want) {
				t.Fatalf("%v %q", d.Action, d.Reason)
			}
			if len(d.Txn.Outbox) != 0 {
				t.Fatal("an anomaly must not produce a take-charge")
			}
			e.check(t, name, d.Replace.Bytes())
		})
	}
}

// Spam dressed as PEC (type headers, no signature) meets the mailbox's
// refusal like any ordinary mail; a "DSN" without the null reverse-path is
// not a DSN.
func TestIncomingPolicyNotBypassed(t *testing.T) {
	e := newIncoming(t)
	fake := []byte("X-Ricevuta: accettazione\r\nFrom: posta-certificata@pec.provider-a.example.test\r\nTo: " + anna + "\r\nSubject: ACCETTAZIONE: x\r\n\r\nx\r\n")
	if d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: "spam@mail.example.org", Rcpts: []string{anna}}, fake, at); d.Action != point.Reject {
		t.Fatalf("unsigned PEC look-alike to a refusing mailbox: %v %q", d.Action, d.Reason)
	}
	// signed, but by a key outside the index (anyone can make one): not PEC either
	intruder := e.pki.Issue("Intruso", "posta-certificata@pec.provider-a.example.test", time.Time{}, time.Time{}, false)
	forged := &build.Provider{Name: "Intruso", Domain: "pec.provider-a.example.test", Signer: &smime.Signer{Key: intruder.Key, Cert: intruder.Cert, Chain: intruder.Chain}}
	signed, _ := e.envelope(t, forged, "firmato da chiunque", anna)
	if d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{anna}}, signed, at); d.Action != point.Reject {
		t.Fatalf("unknown signer to a refusing mailbox: %v %q", d.Action, d.Reason)
	}
	dsn := []byte("From: x@mail.example.org\r\nTo: " + anna + "\r\nSubject: s\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\n\r\nx\r\n--r--\r\n")
	if d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: "x@mail.example.org", Rcpts: []string{anna}}, dsn, at); d.Action != point.Reject {
		t.Fatalf("report with a reverse-path to a refusing mailbox: %v %q", d.Action, d.Reason)
	}
}

// An anomaly envelope signed by another provider is delivered unchanged
// (it has no daticert).
func TestIncomingForeignAnomalyEnvelope(t *testing.T) {
	e := newIncoming(t)
	o, _ := build.ParseOriginal([]byte("From: x@mail.example.org\r\nTo: " + luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	a, err := e.a.Anomalia(at, o, "x@mail.example.org", []string{luigi}, "prova")
	if err != nil {
		t.Fatal(err)
	}
	d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: "x@mail.example.org", Rcpts: []string{luigi}}, a.Bytes(), at)
	if d.Action != point.Accept || d.Replace != nil {
		t.Fatalf("%v %q", d.Action, d.Reason)
	}
}

// The chain is judged at the signing time, so a live message may not
// bring an old (or future) one: an expired certificate could sign with a
// backdated time.
func TestIncomingBackdatedSignature(t *testing.T) {
	e := newIncoming(t)
	raw, _ := e.envelope(t, e.a, "retrodatato", luigi)
	for _, now := range []time.Time{at.Add(26 * time.Hour), at.Add(-time.Hour)} {
		d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, now)
		if d.Replace == nil || d.Replace.Kind != kind.Anomalia || !strings.Contains(d.Reason, "ora di firma") {
			t.Fatalf("checked at %v: %v %q", now, d.Action, d.Reason)
		}
	}
	if d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at.Add(20*time.Hour)); d.Replace != nil {
		t.Fatalf("a day-old signature (queue delay) must pass: %q", d.Reason)
	}
}

func TestIncomingOrdinaryMail(t *testing.T) {
	e := newIncoming(t)
	raw := []byte("From: paolo@mail.example.org\r\nTo: " + luigi + ", " + anna + ", " + carla + "\r\nSubject: ciao\r\n\r\nciao\r\n")
	in := e.incoming()
	d := in.Check(context.Background(), point.Envelope{MailFrom: paolo, Rcpts: []string{luigi, anna, carla}}, raw, at)
	if d.Action != point.Accept || d.Replace.Kind != kind.Anomalia {
		t.Fatalf("%v %q", d.Action, d.Reason)
	}
	if d.Kind != "" {
		t.Errorf("decision kind %q for ordinary mail, want none", d.Kind)
	}
	if len(d.RemoveRcpts) != 1 || d.RemoveRcpts[0] != anna {
		t.Fatalf("removed %v, want the mailbox that refuses ordinary mail", d.RemoveRcpts)
	}
	if len(d.Txn.Outbox) != 1 || d.Txn.Outbox[0].Rcpts[0] != "carla@mail.example.org" || !bytes.Equal(d.Txn.Outbox[0].Data, raw) {
		t.Fatalf("forward copy: %+v", d.Txn.Outbox)
	}
	if from := d.Txn.Outbox[0].MailFrom; from != "posta-certificata@"+e.b.Domain {
		t.Errorf("forward copy MAIL FROM %q, want our posta-certificata@ (the only sender re-injection takes)", from)
	}
	// only anna: refused at SMTP level
	d = in.Check(context.Background(), point.Envelope{MailFrom: paolo, Rcpts: []string{anna}}, raw, at)
	if d.Action != point.Reject || d.Code != 554 {
		t.Fatalf("refusing mailbox: %v %d", d.Action, d.Code)
	}
	// a DSN to a PEC sender is wrapped even where ordinary mail is refused
	dsn := []byte("From: MAILER-DAEMON@mail.example.org\r\nTo: " + anna + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.org\r\n\r\nFinal-Recipient: rfc822; x@mail.example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n")
	d = in.Check(context.Background(), point.Envelope{MailFrom: "", Rcpts: []string{anna}}, dsn, at)
	// (a real DSN has the null reverse-path)
	if d.Action != point.Accept || d.Replace == nil || d.Replace.Kind != kind.Anomalia {
		t.Fatalf("DSN: %v %q", d.Action, d.Reason)
	}
	e.check(t, "anomalia-dsn", d.Replace.Bytes())
}

func TestIncomingVirusInEnvelope(t *testing.T) {
	e := newIncoming(t)
	e.scanner = scanner{infected: "Test.EICAR.NDB.UNOFFICIAL"}
	raw, _ := e.envelope(t, e.a, "infetto", luigi, carla)
	d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}, raw, at)
	if d.Action != point.Discard || len(d.Txn.Outbox) != 2 || len(d.Txn.Virus) != 1 {
		t.Fatalf("%v: %d notices %d virus items", d.Action, len(d.Txn.Outbox), len(d.Txn.Virus))
	}
	if d.Kind != kind.PostaCertificata {
		t.Errorf("decision kind %q, want the infected envelope's", d.Kind)
	}
	for i, rcpt := range []string{luigi, carla} {
		p, _ := parse.Parse(d.Txn.Outbox[i].Data)
		if p.Kind != kind.RilevazioneVirus || p.Daticert.Consegna != rcpt || p.Header.Get("X-Mittente") != mario ||
			d.Txn.Outbox[i].Rcpts[0] != "posta-certificata@pec.provider-a.example.test" {
			t.Fatalf("notice %d: %s consegna %s", i, p.Kind, p.Daticert.Consegna)
		}
		e.check(t, "rilevazione-virus", d.Txn.Outbox[i].Data)
	}
}

// RFC 6109 §7: From domain within the signer's managed domains; warn by
// default (real envelopes come from the certificate's domain), enforce on demand.
func TestIncomingFromDomainCheck(t *testing.T) {
	e := newIncoming(t)
	raw, _ := e.envelope(t, e.a, "dominio", luigi)
	if d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at); d.Replace != nil {
		t.Fatalf("warn mode wrapped the envelope: %q", d.Reason)
	}
	e.cfg.Policy.FromDomainCheck = "enforce"
	d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at)
	if d.Replace == nil || d.Replace.Kind != kind.Anomalia || !strings.Contains(d.Reason, "RFC 6109 §7") {
		t.Fatalf("enforce: %v %q", d.Action, d.Reason)
	}
}

// A virus-detection notice reaching our service mailbox about our sender
// produces the virus non-delivery notice to that sender (RFC 6109 §3.2.4).
func TestIncomingVirusNoticeForOurSender(t *testing.T) {
	e := newIncoming(t)
	// roles reversed: B is the sender's provider, A detected the virus
	raw := "From: " + "maria@pec-b.example.test" + "\r\nTo: x@pec-a.example.test\r\nSubject: s\r\nMessage-ID: <v@client.example.test>\r\n\r\nciao\r\n"
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx("pec9@pec-b.example.test", "maria@pec-b.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	n, err := e.a.RilevazioneVirus(at, tx, "posta-certificata@pec-b.example.test", "x@pec-a.example.test", "Test.EICAR")
	if err != nil {
		t.Fatal(err)
	}
	d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: n.MailFrom, Rcpts: n.Rcpts}, n.Bytes(), at)
	if d.Action != point.Accept || len(d.Txn.Outbox) != 1 {
		t.Fatalf("%v %q %d", d.Action, d.Reason, len(d.Txn.Outbox))
	}
	p, _ := parse.Parse(d.Txn.Outbox[0].Data)
	if p.Kind != kind.ErroreConsegnaVirus || d.Txn.Outbox[0].Rcpts[0] != "maria@pec-b.example.test" || p.Daticert.Consegna != "x@pec-a.example.test" {
		t.Fatalf("%s to %v", p.Kind, d.Txn.Outbox[0].Rcpts)
	}
	e.check(t, "errore-consegna-virus", d.Txn.Outbox[0].Data)

	// with the store's answer: only an envelope we tracked to that recipient
	in := e.incoming()
	in.History = history{} // tracks nothing
	if d := in.Check(context.Background(), point.Envelope{MailFrom: n.MailFrom, Rcpts: n.Rcpts}, n.Bytes(), at); len(d.Txn.Outbox) != 0 {
		t.Fatal("virus notice about an envelope we never sent to that recipient produced a notice")
	}
	// about a recipient A does not manage, or an envelope we did not issue: nothing
	for _, c := range []struct{ id, rcpt string }{{"pec9@pec-b.example.test", "x@pec-c.example.test"}, {"pec9@elsewhere.example.test", "x@pec-a.example.test"}} {
		tx.ID = c.id
		n, _ := e.a.RilevazioneVirus(at, tx, "posta-certificata@pec-b.example.test", c.rcpt, "Test.EICAR")
		d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: n.MailFrom, Rcpts: n.Rcpts}, n.Bytes(), at)
		if d.Action != point.Accept || len(d.Txn.Outbox) != 0 {
			t.Fatalf("%s/%s: %v, %d notices", c.id, c.rcpt, d.Action, len(d.Txn.Outbox))
		}
	}
}

// Revocation (RFC 6109 §2.2.2 check 3): provider A's certificate names a
// CRL on a loopback server; the intermediate signs it.
func TestIncomingRevocation(t *testing.T) {
	var crl atomic.Pointer[[]byte] // nil: 404
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b := crl.Load()
		if b == nil || r.URL.Path != "/ca1.crl" {
			http.NotFound(w, r)
			return
		}
		w.Write(*b)
	}))
	defer srv.Close()
	e := newIncomingWith(t, testpki.Options{CRLDistributionPoints: []string{srv.URL + "/ca1.crl"}})
	other := e.pki.Issue("Provider C S.p.A.", "posta-certificata@pec-c.example.test", time.Time{}, time.Time{}, false)
	raw, _ := e.envelope(t, e.a, "revoca", luigi)
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}
	// a fresh checker (empty cache) for each case
	incoming := func(hard bool) *point.Incoming {
		in := e.incoming()
		c := &revocation.Checker{Client: srv.Client(), Now: func() time.Time { return at }}
		in.Revocation, in.RevocationHard = c.Check, hard
		return in
	}
	takeCharge := func(t *testing.T, d point.Decision) {
		t.Helper()
		if d.Action != point.Accept || d.Replace != nil || len(d.Txn.Outbox) != 1 {
			t.Fatalf("%v %q, %d notices: want the envelope delivered with a take-charge", d.Action, d.Reason, len(d.Txn.Outbox))
		}
		if p, _ := parse.Parse(d.Txn.Outbox[0].Data); p.Kind != kind.PresaInCarico {
			t.Fatalf("%s", p.Kind)
		}
	}

	t.Run("clean", func(t *testing.T) {
		crl.Store(ptr(e.pki.Intermediate.CRL(at.Add(-time.Hour), at.Add(23*time.Hour), testpki.Revoked(other.Cert, at.Add(-time.Hour), 1))))
		hits.Store(0)
		for _, hard := range []bool{false, true} {
			takeCharge(t, incoming(hard).Check(context.Background(), env, raw, at))
		}
		if n := hits.Load(); n != 2 {
			t.Fatalf("%d CRL downloads, want one per checker", n)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		crl.Store(ptr(e.pki.Intermediate.CRL(at.Add(-time.Hour), at.Add(23*time.Hour), testpki.Revoked(e.aID.Cert, at.Add(-2*time.Hour), 1))))
		for _, hard := range []bool{false, true} {
			d := incoming(hard).Check(context.Background(), env, raw, at)
			if d.Action != point.Accept || d.Replace == nil || d.Replace.Kind != kind.Anomalia || len(d.Txn.Outbox) != 0 ||
				!strings.Contains(d.Reason, "certificato di firma revocato (") || !strings.Contains(d.Reason, "keyCompromise") ||
				!strings.Contains(d.Reason, e.aID.Cert.SerialNumber.String()) {
				t.Fatalf("hard=%v: %v %q", hard, d.Action, d.Reason)
			}
			e.check(t, "anomalia-revoca", d.Replace.Bytes())
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		crl.Store(nil)
		d := incoming(true).Check(context.Background(), env, raw, at)
		if d.Action != point.TempFail || d.Code != 451 || d.Status != "4.7.0" || len(d.Txn.Events) != 0 {
			t.Fatalf("hard: %v %d %s %q", d.Action, d.Code, d.Status, d.Reason)
		}
		takeCharge(t, incoming(false).Check(context.Background(), env, raw, at))
		// an expired CRL is no better than none
		crl.Store(ptr(e.pki.Intermediate.CRL(at.Add(-48*time.Hour), at.Add(-24*time.Hour))))
		if d := incoming(true).Check(context.Background(), env, raw, at); d.Action != point.TempFail {
			t.Fatalf("expired CRL, hard: %v %q", d.Action, d.Reason)
		}
	})
	t.Run("chain", func(t *testing.T) {
		// the check gets the verified chain, leaf first; it runs only for
		// a signer found in the index
		in := e.incoming()
		var got [][]*x509.Certificate
		in.Revocation = func(_ context.Context, chain []*x509.Certificate) error {
			got = append(got, chain)
			return errors.New("unreachable")
		}
		takeCharge(t, in.Check(context.Background(), env, raw, at))
		if len(got) != 1 || len(got[0]) != 3 || !got[0][0].Equal(e.aID.Cert) || !got[0][1].Equal(e.pki.Intermediate.Cert) || !got[0][2].Equal(e.pki.Root.Cert) {
			t.Fatalf("chain %v", got)
		}
		intruder := e.pki.Issue("Intruso", "posta-certificata@pec.provider-a.example.test", time.Time{}, time.Time{}, false)
		forged := &build.Provider{Name: "Intruso", Domain: "pec.provider-a.example.test", Signer: &smime.Signer{Key: intruder.Key, Cert: intruder.Cert, Chain: intruder.Chain}}
		unknown, _ := e.envelope(t, forged, "sconosciuto", luigi)
		in.RevocationHard = true
		if d := in.Check(context.Background(), env, unknown, at); d.Replace == nil || len(got) != 1 {
			t.Fatalf("unknown signer: %v %q, %d checks", d.Action, d.Reason, len(got))
		}
	})
}

func ptr[T any](v T) *T { return &v }

// RFC 6109 §3.2.1: a take-charge covers the recipients the envelope is
// addressed to, once: a replay of the same envelope gets none, a
// recipient outside destinatari is not taken in charge (the delivery point
// wraps what reaches it), and a store that cannot say fails closed.
func TestIncomingTakeChargeOncePerAddressee(t *testing.T) {
	e := newIncoming(t)
	raw, tx := e.envelope(t, e.a, "una volta", luigi)
	in := e.incoming()
	var charged []string
	in.History = history{events: func(q store.Query) ([]store.Event, error) {
		if q.PECID != tx.ID || q.Type != store.TypePresaInCarico {
			t.Fatalf("asked about %+v", q)
		}
		return []store.Event{{Recipients: charged}}, nil
	}}
	// a non-addressee of ours beside the addressee
	d := in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}, raw, at)
	if d.Action != point.Accept || len(d.Txn.Outbox) != 1 {
		t.Fatalf("%v %q, %d notices", d.Action, d.Reason, len(d.Txn.Outbox))
	}
	p, _ := parse.Parse(d.Txn.Outbox[0].Data)
	if strings.Join(p.Daticert.Ricezione, ",") != luigi {
		t.Fatalf("ricezione %v, want only the addressee", p.Daticert.Ricezione)
	}
	charged = d.Txn.Events[0].Recipients
	// the same envelope again (a replay, or the sender's retry)
	d = in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at.Add(time.Minute))
	if d.Action != point.Accept || len(d.Txn.Outbox) != 0 || len(d.Txn.Events) != 0 {
		t.Fatalf("replay: %v %q, %d notices %d events, want accepted without a second take-charge", d.Action, d.Reason, len(d.Txn.Outbox), len(d.Txn.Events))
	}
	// only a non-addressee
	charged = nil
	d = in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{carla}}, raw, at)
	if d.Action != point.Accept || len(d.Txn.Outbox) != 0 {
		t.Fatalf("non-addressee: %v %q, %d notices", d.Action, d.Reason, len(d.Txn.Outbox))
	}
	in.History = history{events: func(store.Query) ([]store.Event, error) { return nil, errors.New("database is locked") }}
	if d = in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at); d.Action != point.TempFail {
		t.Fatalf("store down: %v, want a tempfail", d.Action)
	}
}
