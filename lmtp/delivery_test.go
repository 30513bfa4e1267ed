package lmtp_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const (
	mario   = "mario.rossi@pec-a.example.test"
	luigi   = "luigi.verdi@pec-b.example.test"
	carla   = "carla.neri@pec-b.example.test"
	anna    = "anna.blu@pec-b.example.test" // refuses ordinary mail
	ugo     = "ugo@pec-b.example.test"
	intruso = "intruso@pec-b.example.test" // a mailbox of ours the sender never wrote to
)

type bench struct {
	pki     *testpki.PKI
	a, b, x *build.Provider // x: signs with a certificate outside the index
	d       *lmtp.Delivery
}

func newBench(t *testing.T) *bench {
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
	b := &bench{pki: pki,
		a: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Signer: signer(aID)},
		b: &build.Provider{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Signer: signer(bID)},
		x: &build.Provider{Name: "Intruso S.r.l.", Domain: "pec-a.example.test", Signer: signer(xID)},
	}
	b.d = &lmtp.Delivery{Provider: b.b, Roots: pki.Pool(),
		Policy: &point.Policy{ManagedDomains: []string{"pec-b.example.test"}, ServiceMailbox: "posta-certificata@pec-b.example.test",
			OrdinaryMail: "accept", Mailboxes: map[string]point.MailboxPolicy{anna: {OrdinaryMail: "refuse"}}},
		Index: func() (point.Directory, error) { return service.Directory{Ix: ix}, nil }}
	return b
}

func (b *bench) root() []byte { return testpki.PEM(b.pki.Root.Cert) }

// envelope: mario writes To luigi, anna, ugo and Cc carla (the daticert's
// destinatari); rcpts is the SMTP envelope.
func (b *bench) envelope(t *testing.T, signer *build.Provider, tipo string, rcpts ...string) []byte {
	raw := "From: " + mario + "\r\nTo: " + luigi + ", " + anna + ", " + ugo + ", x@pec-c.example.test\r\nCc: " + carla + "\r\nSubject: prova\r\nMessage-ID: <p@client.example.test>\r\n"
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

// receipt is a delivery receipt about luigi for an envelope of mario's.
func (b *bench) receipt(t *testing.T, signer *build.Provider) []byte {
	o, _ := build.ParseOriginal([]byte("From: " + mario + "\r\nTo: " + luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec7@pec-a.example.test", mario, func(string) daticert.DestTipo { return daticert.Certificato })
	n, err := signer.AvvenutaConsegna(at, tx, luigi, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	return n.Bytes()
}

// answers stands in for Dovecot: every recipient of every group gets
// want[rcpt] (nil: stored); a recipient refused at RCPT has no intent.
func answers(p *lmtp.Plan, want map[string]error) [][]lmtp.Result {
	out := make([][]lmtp.Result, len(p.Groups))
	for i, g := range p.Groups {
		out[i] = append(out[i], g.Done...)
		for _, r := range g.Rcpts {
			res := lmtp.Result{Rcpt: r, Err: want[r], Owner: "me/1"}
			var se *smtp.SMTPError
			if errors.As(want[r], &se) && se.Message == "at rcpt" {
				res.Owner = ""
			}
			out[i] = append(out[i], res)
		}
	}
	return out
}

func (b *bench) run(t *testing.T, raw []byte, env lmtp.Envelope, seen map[string]lmtp.Seen, want map[string]error) (*lmtp.Message, *lmtp.Plan, lmtp.Outcome) {
	t.Helper()
	m, err := b.d.Classify(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.d.Plan(at, m, env, seen)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.d.Decide(at, m, env, p, answers(p, want))
	if err != nil {
		t.Fatal(err)
	}
	return m, p, out
}

func parseAll(t *testing.T, out []store.Outgoing) []*parse.Message {
	var ps []*parse.Message
	for _, o := range out {
		p, err := parse.Parse(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestDecideReceipts(t *testing.T) {
	b := newBench(t)
	raw := b.envelope(t, b.a, "", luigi, carla, anna, ugo)
	temp := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	m, _, out := b.run(t, raw, lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, anna, ugo}}, nil, map[string]error{
		anna: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "at rcpt"},
		ugo:  temp,
	})
	if m.Class != lmtp.ClassEnvelope || m.Ours || m.Key != m.Tx.ID {
		t.Fatalf("classify: %+v", m)
	}
	// stored and permanently failed recipients: 250 (the receipt is the answer); temporary: the error
	if out.Status[luigi] != nil || out.Status[carla] != nil || out.Status[anna] != nil || !errors.Is(out.Status[ugo], temp) {
		t.Fatalf("statuses %v", out.Status)
	}
	if len(out.Txn.Outbox) != 3 {
		t.Fatalf("%d receipts, want 3 (none for the temporary failure)", len(out.Txn.Outbox))
	}
	got := map[string]*parse.Message{}
	for i, p := range parseAll(t, out.Txn.Outbox) {
		if o := out.Txn.Outbox[i]; o.Rcpts[0] != mario || o.MailFrom != "posta-certificata@pec-b.example.test" {
			t.Fatalf("receipt to %v from %s", o.Rcpts, o.MailFrom)
		}
		got[p.Daticert.Consegna] = p
		conformance.Check(t, string(p.Kind)+"-"+p.Daticert.Consegna, out.Txn.Outbox[i].Data, b.root())
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
	// each settled recipient's row moves with its receipt; the temporary
	// failure's intent is dropped so that the retry starts over
	want := map[string]string{luigi: "pending>stored", carla: "pending>stored", anna: ">failed", ugo: "pending>"}
	if len(out.Txn.Deliveries) != len(want) {
		t.Fatalf("delivery marks %+v", out.Txn.Deliveries)
	}
	for _, d := range out.Txn.Deliveries {
		if d.Key != m.Tx.ID || want[d.Rcpt] != d.From+">"+d.To {
			t.Errorf("mark %+v, want %s", d, want[d.Rcpt])
		}
	}
	// the log names the provider that sent the envelope, not us
	for _, e := range out.Txn.Events {
		if e.Provider != "Provider A S.p.A." {
			t.Errorf("%s row names provider %q, want the sender's", e.Type, e.Provider)
		}
	}
}

// takeCharges is a log holding the incoming point's take-charges.
type takeCharges []store.Event

func (h takeCharges) CountSenderEvents(string, store.EventType, time.Time) (int, error) { return 0, nil }
func (h takeCharges) Tracking(string) ([]store.TrackingState, error)                    { return nil, nil }
func (h takeCharges) Events(q store.Query) ([]store.Event, error) {
	var out []store.Event
	for _, e := range h {
		if e.PECID == q.PECID && e.Type == q.Type && e.Point == q.Point {
			out = append(out, e)
		}
	}
	return out, nil
}

type brokenLog struct{ takeCharges }

func (brokenLog) Events(store.Query) ([]store.Event, error) { return nil, errors.New("database is locked") }

// The index changes between the incoming point and the delivery point:
// the envelope got our take-charge under the old copy, the delivery
// point's copy no longer lists its signer. The incoming point's verdict
// stands: the recipients it took in charge get the envelope as PEC and
// their receipts (the sender's provider must not get a 24 h notice for a
// delivered message); an addressee it did not take in charge gets it
// wrapped; without a take-charge the envelope is not from PEC; a log
// that cannot be read fails closed.
func TestClassifyIndexReloaded(t *testing.T) {
	b := newBench(t)
	raw := b.envelope(t, b.a, "", luigi, carla)
	onlyB, err := index.ParseLDIF(bytes.NewReader(index.TestLDIF(
		index.TestProvider{Name: "Provider B S.p.A.", Domains: []string{"pec-b.example.test"}, Certs: []*x509.Certificate{b.b.Signer.Cert}})))
	if err != nil {
		t.Fatal(err)
	}
	b.d.Index = func() (point.Directory, error) { return service.Directory{Ix: onlyB}, nil }
	env := lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}

	// no take-charge recorded: not from PEC, wrapped
	m, _, out := b.run(t, raw, env, nil, nil)
	if m.Class != lmtp.ClassNotPEC || !m.UnknownSigner {
		t.Fatalf("without a take-charge: %s", m.Class)
	}
	if len(out.Txn.Outbox) != 0 {
		t.Fatalf("%d receipts for an envelope of an unknown signer", len(out.Txn.Outbox))
	}

	p, _ := parse.Parse(raw)
	b.d.History = takeCharges{{Point: store.AtIncoming, Type: store.TypePresaInCarico, PECID: p.Daticert.Identificativo,
		Recipients: []string{luigi}, Provider: "Provider A S.p.A."}}
	m, plan, out := b.run(t, raw, env, nil, nil)
	if m.Class != lmtp.ClassEnvelope || m.UnknownSigner || m.Provider != "Provider A S.p.A." {
		t.Fatalf("taken in charge: %s unknown=%v provider %q", m.Class, m.UnknownSigner, m.Provider)
	}
	var asPEC, wrapped []string
	for _, g := range plan.Groups {
		switch g.Treatment {
		case lmtp.AsPEC:
			asPEC = append(asPEC, g.Rcpts...)
		case lmtp.Wrapped:
			wrapped = append(wrapped, g.Rcpts...)
		}
	}
	if strings.Join(asPEC, ",") != luigi || strings.Join(wrapped, ",") != carla {
		t.Fatalf("as PEC %v, wrapped %v; want the recipient taken in charge as PEC, the other wrapped", asPEC, wrapped)
	}
	ps := parseAll(t, out.Txn.Outbox)
	if len(ps) != 1 || ps[0].Kind != kind.AvvenutaConsegna || ps[0].Daticert.Consegna != luigi {
		t.Fatalf("receipts %d, want luigi's delivery receipt", len(ps))
	}
	conformance.Check(t, "avvenuta-consegna-reloaded", out.Txn.Outbox[0].Data, b.root())

	b.d.History = brokenLog{}
	if _, err := b.d.Classify(raw); err == nil {
		t.Fatal("a log that cannot be read: classified anyway, want an error (tempfail)")
	}
}

func TestDecideMailboxFullAndDomain(t *testing.T) {
	b := newBench(t)
	_, _, out := b.run(t, b.envelope(t, b.a, "", luigi, "x@pec-c.example.test"), lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, "x@pec-c.example.test"}}, nil, map[string]error{
		luigi:                  &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Quota exceeded"},
		"x@pec-c.example.test": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 2}, Message: "at rcpt"},
	})
	if len(out.Txn.Outbox) != 2 {
		t.Fatalf("%d notices", len(out.Txn.Outbox))
	}
	ps := parseAll(t, out.Txn.Outbox)
	if ps[0].Daticert.Errore != daticert.Altro || ps[0].Daticert.ErroreEsteso != "5.2.2 - Provider B S.p.A. - casella del destinatario piena" {
		t.Errorf("full: %s %q", ps[0].Daticert.Errore, ps[0].Daticert.ErroreEsteso)
	}
	if ps[1].Daticert.Errore != daticert.NoDominio {
		t.Errorf("domain: %s %q", ps[1].Daticert.Errore, ps[1].Daticert.ErroreEsteso)
	}
}

func TestDecideNotices(t *testing.T) {
	b := newBench(t)
	// a valid notice for one of our users: delivered unchanged, no receipt,
	// and correlated for the timers when its signer manages the recipient
	o, _ := build.ParseOriginal([]byte("From: maria@pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec7@pec-b.example.test", "maria@pec-b.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	n, _ := b.a.AvvenutaConsegna(at, tx, "z@pec-a.example.test", true, nil)
	env := lmtp.Envelope{MailFrom: n.MailFrom, Rcpts: []string{"maria@pec-b.example.test"}}
	m, p, out := b.run(t, n.Bytes(), env, nil, nil)
	if m.Class != lmtp.ClassNotice || len(p.Groups) != 1 || p.Groups[0].Treatment != lmtp.Unchanged || !bytes.Equal(p.Groups[0].Data, n.Bytes()) {
		t.Fatalf("notice: class %v plan %+v", m.Class, p.Groups)
	}
	if len(out.Txn.Outbox) != 0 || len(out.Txn.Marks) != 1 || out.Txn.Marks[0].PECID != "pec7@pec-b.example.test" || out.Txn.Marks[0].Rcpt != "z@pec-a.example.test" {
		t.Fatalf("notice marks %+v", out.Txn.Marks)
	}
	// a receipt about a recipient its signer does not manage is not trusted for the timers
	forged, _ := b.a.AvvenutaConsegna(at, tx, "z@pec-b.example.test", true, nil)
	_, _, out = b.run(t, forged.Bytes(), env, nil, nil)
	if len(out.Txn.Marks) != 0 {
		t.Fatalf("foreign receipt marked %+v", out.Txn.Marks)
	}
}

// Our own envelope (same provider): the delivery point also sends the
// take-charge to our own mailReceipt — once per recipient, however often
// the envelope comes back.
func TestDecideOwnEnvelope(t *testing.T) {
	b := newBench(t)
	raw := b.envelope(t, b.b, "", luigi, carla)
	env := lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}
	m, _, out := b.run(t, raw, env, nil, nil)
	if !m.Ours {
		t.Fatal("own envelope not recognised")
	}
	if len(out.Txn.Outbox) != 3 {
		t.Fatalf("%d messages, want take-charge + 2 receipts", len(out.Txn.Outbox))
	}
	p := parseAll(t, out.Txn.Outbox)[0]
	if p.Kind != kind.PresaInCarico || out.Txn.Outbox[0].Rcpts[0] != "posta-certificata@pec-b.example.test" || len(p.Daticert.Ricezione) != 2 {
		t.Fatalf("%s to %v ricezione %v", p.Kind, out.Txn.Outbox[0].Rcpts, p.Daticert.Ricezione)
	}
	// a retry or replay to the same recipients after the delivery was
	// recorded: 250, nothing handed to Dovecot, no take-charge, no receipt
	seen := map[string]lmtp.Seen{luigi: {State: store.DeliveryStored}, carla: {State: store.DeliveryStored}}
	_, plan, out := b.run(t, raw, env, seen, nil)
	if len(plan.Groups) != 0 || len(plan.Duplicate) != 2 || out.Status[luigi] != nil || out.Status[carla] != nil {
		t.Fatalf("replay: groups %+v duplicates %v status %v", plan.Groups, plan.Duplicate, out.Status)
	}
	if len(out.Txn.Outbox) != 0 || len(out.Txn.Events) != 0 || len(out.Txn.Deliveries) != 0 {
		t.Fatalf("replay emitted %+v", out.Txn)
	}
	// one take-charge per transaction: carla settled in a later
	// transaction (after a temporary failure) gets her own take-charge,
	// covering only her; luigi, settled before, is not named again
	temp := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "try later"}
	_, _, out = b.run(t, raw, env, nil, map[string]error{carla: temp})
	if p := parseAll(t, out.Txn.Outbox)[0]; p.Kind != kind.PresaInCarico || strings.Join(p.Daticert.Ricezione, ",") != luigi {
		t.Fatalf("first transaction: %s ricezione %v, want luigi only", p.Kind, p.Daticert.Ricezione)
	}
	_, _, out = b.run(t, raw, env, map[string]lmtp.Seen{luigi: {State: store.DeliveryStored}}, nil)
	ps := parseAll(t, out.Txn.Outbox)
	if len(ps) != 2 || ps[0].Kind != kind.PresaInCarico || strings.Join(ps[0].Daticert.Ricezione, ",") != carla {
		t.Fatalf("retry: %d messages, want carla's take-charge and receipt", len(ps))
	}
}

// RFC 6109 §3.3.2: a receipt certifies delivery to a recipient the sender
// chose; a genuine envelope handed over for someone else is an anomaly.
func TestPlanNonAddressee(t *testing.T) {
	b := newBench(t)
	for _, signer := range []*build.Provider{b.a, b.b} {
		raw := b.envelope(t, signer, "", luigi)
		env := lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, intruso}}
		m, p, out := b.run(t, raw, env, nil, nil)
		if len(p.Groups) != 2 || p.Groups[0].Treatment != lmtp.AsPEC || strings.Join(p.Groups[0].Rcpts, ",") != luigi ||
			p.Groups[1].Treatment != lmtp.Wrapped || strings.Join(p.Groups[1].Rcpts, ",") != intruso {
			t.Fatalf("groups %+v", p.Groups)
		}
		a, err := parse.Parse(p.Groups[1].Data)
		if err != nil || a.Kind != kind.Anomalia || !bytes.Contains(a.Original, []byte("X-Trasporto: posta-certificata")) {
			t.Fatalf("the non-addressee's message: %v %v", a.Kind, err)
		}
		conformance.Check(t, "anomalia-non-destinatario", p.Groups[1].Data, b.root())
		var receipts, takeCharges []*parse.Message
		for _, x := range parseAll(t, out.Txn.Outbox) {
			switch x.Kind {
			case kind.AvvenutaConsegna:
				receipts = append(receipts, x)
			case kind.PresaInCarico:
				takeCharges = append(takeCharges, x)
			}
		}
		if len(receipts) != 1 || receipts[0].Daticert.Consegna != luigi {
			t.Fatalf("receipts %d", len(receipts))
		}
		if m.Ours != (len(takeCharges) == 1) || (m.Ours && strings.Join(takeCharges[0].Daticert.Ricezione, ",") != luigi) {
			t.Fatalf("take-charge for the non-addressee: ours %v, %d take-charges", m.Ours, len(takeCharges))
		}
		var anomaly *store.Event
		for i, e := range out.Txn.Events {
			if e.Type == "anomalia" {
				anomaly = &out.Txn.Events[i]
			}
		}
		if anomaly == nil || anomaly.PECID != m.Tx.ID || anomaly.Recipients[0] != intruso || anomaly.Related[0] != p.Groups[1].Anomaly.ID {
			t.Fatalf("log rows %+v", out.Txn.Events)
		}
		// the non-addressee's row is on the same (PEC id, recipient) key:
		// a second replay to them is a duplicate
		_, p2, _ := b.run(t, raw, lmtp.Envelope{MailFrom: mario, Rcpts: []string{intruso}}, map[string]lmtp.Seen{intruso: {State: store.DeliveryStored}}, nil)
		if len(p2.Groups) != 0 || len(p2.Duplicate) != 1 {
			t.Fatalf("second replay to the non-addressee: %+v", p2)
		}
	}
}

// What is not a valid PEC message of a provider never reaches a mailbox as
// it came: wrapped in an anomaly envelope or refused by the mailbox's
// policy (RFC 6109 §2.2.2, §3.2.2), like at the incoming point.
func TestClassifyAndWrap(t *testing.T) {
	b := newBench(t)
	unsigned := []byte("From: posta-certificata@pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: CONSEGNA: falsa\r\nX-Ricevuta: avvenuta-consegna\r\n" +
		"Message-ID: <falsa@pec-b.example.test>\r\n\r\nla ricevuta non e' firmata\r\n")
	tampered := b.envelope(t, b.a, "", luigi)
	tampered[bytes.LastIndex(tampered, []byte("ciao"))] = 'C'
	var dsn = []byte("From: MAILER-DAEMON@mx.pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.pec-b.example.test\r\n\r\nFinal-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n")
	someonesDSN := bytes.Replace(dsn, []byte("From: MAILER-DAEMON@"), []byte("From: postmaster@"), 1)
	anomaly, err := b.b.Anomalia(at, mustOriginal(t, "From: p@mail.example.org\r\nTo: "+luigi+"\r\nSubject: o\r\n\r\nx\r\n"), "p@mail.example.org", []string{luigi}, "il messaggio non è un messaggio di posta certificata")
	if err != nil {
		t.Fatal(err)
	}
	wrongFrom := bytes.Replace(b.receipt(t, b.a), []byte("From: posta-certificata@pec-a.example.test"), []byte("From: posta-certificata@pec-b.example.test"), 1)
	const (
		asIs    = iota // delivered unchanged to both
		wrapAll        // wrapped for both (anna's policy does not apply)
		policy         // wrapped for luigi, refused for anna (her policy)
	)
	cases := []struct {
		name     string
		raw      []byte
		mailFrom string
		class    lmtp.Class
		reason   string // part of the anomaly envelope's reason
		want     int
	}{
		{"unsigned X-Ricevuta", unsigned, "posta-certificata@pec-b.example.test", lmtp.ClassNotPEC, "X-Ricevuta: avvenuta-consegna", policy},
		{"receipt signed outside the index", b.receipt(t, b.x), "posta-certificata@pec-a.example.test", lmtp.ClassNotPEC, "non appartiene a un gestore dell'indice", policy},
		{"tampered envelope", tampered, mario, lmtp.ClassNotPEC, "firma non valida", policy},
		{"provider's receipt From another address", wrongFrom, "posta-certificata@pec-a.example.test", lmtp.ClassInvalid, "messaggio di posta certificata non valido", wrapAll},
		{"ordinary mail", []byte("From: p@mail.example.org\r\nTo: " + luigi + "\r\nSubject: o\r\n\r\nx\r\n"), "p@mail.example.org", lmtp.ClassNotPEC, "non è un messaggio di posta certificata", policy},
		{"receipt of a provider", b.receipt(t, b.a), "posta-certificata@pec-a.example.test", lmtp.ClassNotice, "", asIs},
		{"our own receipt", b.receipt(t, b.b), "posta-certificata@pec-b.example.test", lmtp.ClassNotice, "", asIs},
		{"our anomaly envelope", anomaly.Bytes(), "p@mail.example.org", lmtp.ClassNotice, "", asIs},
		{"Postfix's own bounce", dsn, "", lmtp.ClassNotPEC, "", asIs},
		{"a DSN with a reverse-path", dsn, "x@mail.example.org", lmtp.ClassNotPEC, "non è un messaggio di posta certificata", policy},
		{"a DSN from another server", someonesDSN, "", lmtp.ClassNotPEC, "notifica di mancata consegna (DSN)", wrapAll},
		{"Postfix-like bounce with a PEC header", bytes.Replace(dsn, []byte("MIME-Version"), []byte("X-Ricevuta: avvenuta-consegna\r\nMIME-Version"), 1), "", lmtp.ClassNotPEC, "X-Ricevuta", wrapAll},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := lmtp.Envelope{MailFrom: c.mailFrom, Rcpts: []string{luigi, anna}}
			m, p, out := b.run(t, c.raw, env, nil, nil)
			if m.Class != c.class {
				t.Fatalf("class %v, want %v (reason %q)", m.Class, c.class, m.Reason)
			}
			if c.want == asIs {
				if len(p.Groups) != 1 || p.Groups[0].Treatment != lmtp.Unchanged || len(p.Groups[0].Rcpts) != 2 || len(p.Refused) != 0 {
					t.Fatalf("plan %+v refused %v", p.Groups, p.Refused)
				}
				return
			}
			g := p.Groups[len(p.Groups)-1]
			if g.Treatment != lmtp.Wrapped || !strings.Contains(g.Reason, c.reason) {
				t.Fatalf("treatment %v reason %q, want wrapped with %q", g.Treatment, g.Reason, c.reason)
			}
			// anna refuses ordinary mail, but not an anomaly of a
			// provider-signed message nor a DSN (PEC-SPEC §6.6 rule 2)
			refuses := c.want == policy
			if refuses != (len(p.Refused) == 1) || refuses != (out.Status[anna] != nil) || len(g.Rcpts) != map[bool]int{true: 1, false: 2}[refuses] {
				t.Fatalf("anna: refused %v status %v; wrapped for %v", p.Refused, out.Status[anna], g.Rcpts)
			}
			if refuses && code(out.Status[anna]) != 554 {
				t.Fatalf("anna's refusal: %v", out.Status[anna])
			}
			a, err := parse.Parse(g.Data)
			if err != nil || a.Kind != kind.Anomalia || !bytes.Equal(bytes.TrimRight(a.Original, "\r\n"), bytes.TrimRight(c.raw, "\r\n")) {
				t.Fatalf("wrapped message: %v %v", a.Kind, err)
			}
			conformance.Check(t, "anomalia-consegna", g.Data, b.root())
			if len(out.Txn.Outbox) != 0 {
				t.Fatal("a receipt for something that is not a valid envelope")
			}
		})
	}
	// our own notices need no index
	b.d.Index = func() (point.Directory, error) { return nil, errors.New("index down") }
	if m, err := b.d.Classify(b.receipt(t, b.b)); err != nil || m.Class != lmtp.ClassNotice {
		t.Fatalf("own receipt with the index down: %v %v", m, err)
	}
	if _, err := b.d.Classify(b.receipt(t, b.a)); err == nil {
		t.Fatal("another provider's receipt without the index: must tempfail")
	}
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func mustOriginal(t *testing.T, raw string) *build.Original {
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// What the store holds decides before Dovecot is asked: a settled
// delivery is not repeated, an intent of a live transaction waits, an
// orphaned one is closed without a copy and without a receipt, and an
// outcome seen but not recorded is recorded without asking Dovecot again.
func TestPlanRecordedDeliveries(t *testing.T) {
	b := newBench(t)
	raw := b.envelope(t, b.b, "", luigi, carla, anna, ugo)
	seen := map[string]lmtp.Seen{
		luigi: {State: store.DeliveryStored},
		carla: {State: store.DeliveryPending, Owner: "gone/7", Orphaned: true},
		anna:  {State: store.DeliveryPending, Owner: "busy/3"},
		ugo:   {State: store.DeliveryPending, Owner: "me/2", Known: &lmtp.Result{Rcpt: ugo, Owner: "me/2", At: at.Add(-time.Minute)}},
	}
	env := lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, anna, ugo}}
	m, p, out := b.run(t, raw, env, seen, nil)
	if len(p.Groups) != 1 || len(p.Groups[0].Rcpts) != 0 || len(p.Groups[0].Done) != 1 {
		t.Fatalf("nothing is handed to Dovecot: %+v", p.Groups)
	}
	if out.Status[luigi] != nil || out.Status[carla] != nil || out.Status[ugo] != nil || code(out.Status[anna]) != 451 {
		t.Fatalf("statuses %v", out.Status)
	}
	var kinds []string
	for _, x := range parseAll(t, out.Txn.Outbox) {
		kinds = append(kinds, string(x.Kind)+":"+x.Daticert.Consegna+strings.Join(x.Daticert.Ricezione, ","))
	}
	// the take-charge covers the two recipients settled now; only ugo,
	// whose outcome is known, gets a receipt, dated when Dovecot answered
	if strings.Join(kinds, " ") != "presa-in-carico:"+carla+","+ugo+" avvenuta-consegna:"+ugo {
		t.Fatalf("emitted %v", kinds)
	}
	if r, _ := parse.Parse(out.Txn.Outbox[1].Data); r.Daticert.Ora != at.Add(-time.Minute).In(build.Rome).Format("15:04:05") {
		t.Errorf("receipt time %s", r.Daticert.Ora)
	}
	var unknown *store.Event
	for i, e := range out.Txn.Events {
		if e.Type == "consegna-non-confermata" {
			unknown = &out.Txn.Events[i]
		}
	}
	if unknown == nil || unknown.PECID != m.Tx.ID || unknown.Recipients[0] != carla {
		t.Fatalf("log rows %+v", out.Txn.Events)
	}
	want := map[string]string{carla: "pending/gone/7>unknown", ugo: "pending/me/2>stored"}
	if len(out.Txn.Deliveries) != 2 {
		t.Fatalf("marks %+v", out.Txn.Deliveries)
	}
	for _, d := range out.Txn.Deliveries {
		if want[d.Rcpt] != d.From+"/"+d.Owner+">"+d.To {
			t.Errorf("mark %+v", d)
		}
	}
}

// Dovecot took the whole message but its answer never came: the intent
// stays (the retry closes it), Postfix gets a 4xx, no receipt.
func TestDecideUnconfirmed(t *testing.T) {
	b := newBench(t)
	m, err := b.d.Classify(b.envelope(t, b.a, "", luigi))
	if err != nil {
		t.Fatal(err)
	}
	env := lmtp.Envelope{MailFrom: mario, Rcpts: []string{luigi}}
	p, _ := b.d.Plan(at, m, env, nil)
	out, err := b.d.Decide(at, m, env, p, [][]lmtp.Result{{{Rcpt: luigi, Owner: "me/1", Unconfirmed: true,
		Err: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "no answer"}}}})
	if err != nil || out.Status[luigi] == nil || len(out.Txn.Outbox) != 0 || len(out.Txn.Deliveries) != 0 {
		t.Fatalf("%v %v %+v", err, out.Status, out.Txn)
	}
}

// Ordinary mail wrapped at the delivery point follows the whole mailbox
// policy: its forward_to copy too, sent as our service address, once the
// wrapped message is stored.
func TestDecideForwardCopies(t *testing.T) {
	b := newBench(t)
	b.d.Policy.Mailboxes[luigi] = point.MailboxPolicy{ForwardTo: "luigi@mail.example.org"}
	raw := []byte("From: p@mail.example.org\r\nTo: " + luigi + "\r\nSubject: o\r\n\r\nx\r\n")
	env := lmtp.Envelope{MailFrom: "p@mail.example.org", Rcpts: []string{luigi}}
	_, _, out := b.run(t, raw, env, nil, map[string]error{luigi: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "later"}})
	if len(out.Txn.Outbox) != 0 {
		t.Fatalf("a copy for a message not stored: %+v", out.Txn.Outbox)
	}
	_, _, out = b.run(t, raw, env, nil, nil)
	if len(out.Txn.Outbox) != 1 || out.Txn.Outbox[0].Rcpts[0] != "luigi@mail.example.org" ||
		out.Txn.Outbox[0].MailFrom != "posta-certificata@pec-b.example.test" || !bytes.Equal(out.Txn.Outbox[0].Data, raw) {
		t.Fatalf("copies %+v", out.Txn.Outbox)
	}
}
