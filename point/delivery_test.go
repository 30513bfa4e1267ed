package point_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/deliverytest"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// at, mario, luigi, carla (access_test.go) and anna, who refuses ordinary
// mail (incoming_test.go), are shared with the other points' tests.
const (
	ugo     = "ugo@pec-b.example.test"
	intruso = "intruso@pec-b.example.test" // a mailbox of ours the sender never wrote to
)

// answers stands in for Dovecot: every recipient of every group gets
// want[rcpt] (nil: stored); a recipient refused at RCPT has no intent.
func answers(p *point.DeliveryPlan, want map[string]error) [][]point.MailboxResult {
	out := make([][]point.MailboxResult, len(p.Groups))
	for i, g := range p.Groups {
		out[i] = append(out[i], g.Done...)
		for _, r := range g.Rcpts {
			res := point.MailboxResult{Rcpt: r, Err: want[r], Owner: "me/1"}
			var se *smtp.SMTPError
			if errors.As(want[r], &se) && se.Message == "at rcpt" {
				res.Owner = ""
			}
			out[i] = append(out[i], res)
		}
	}
	return out
}

// run classifies, plans and decides raw with the answers want.
func run(t *testing.T, b *deliverytest.Bench, raw []byte, env point.Envelope, seen map[string]point.Seen, want map[string]error) (*point.Classified, *point.DeliveryPlan, point.DeliveryOutcome) {
	t.Helper()
	m, err := b.D.Classify(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.D.Plan(at, m, env, seen)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.D.Decide(at, m, env, p, answers(p, want))
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
	b := deliverytest.New(t)
	raw := b.Envelope(t, b.A, "", luigi, carla, anna, ugo)
	temp := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	m, _, out := run(t, b, raw, point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, anna, ugo}}, nil, map[string]error{
		anna: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "at rcpt"},
		ugo:  temp,
	})
	if m.Class != point.ClassEnvelope || m.Ours || m.Key != m.Tx.ID {
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
		conformance.Check(t, string(p.Kind)+"-"+p.Daticert.Consegna, out.Txn.Outbox[i].Data, b.Root())
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

func (h takeCharges) CountSenderEvents(string, store.EventType, time.Time) (int, error) {
	return 0, nil
}
func (h takeCharges) Tracking(string) ([]store.TrackingState, error) { return nil, nil }
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

func (brokenLog) Events(store.Query) ([]store.Event, error) {
	return nil, errors.New("database is locked")
}

// The index changes between the incoming point and the delivery point:
// the envelope got our take-charge under the old copy, the delivery
// point's copy no longer lists its signer. The incoming point's verdict
// stands: the recipients it took in charge get the envelope as PEC and
// their receipts (the sender's provider must not get a 24 h notice for a
// delivered message); an addressee it did not take in charge gets it
// wrapped; without a take-charge the envelope is not from PEC; a log
// that cannot be read fails closed.
func TestClassifyIndexReloaded(t *testing.T) {
	b := deliverytest.New(t)
	raw := b.Envelope(t, b.A, "", luigi, carla)
	onlyB, err := index.ParseLDIF(bytes.NewReader(index.TestLDIF(
		index.TestProvider{Name: "Provider B S.p.A.", Domains: []string{"pec-b.example.test"}, Certs: []*x509.Certificate{b.B.Signer.Cert}})))
	if err != nil {
		t.Fatal(err)
	}
	b.D.Index = func() (point.Directory, error) { return service.Directory{Ix: onlyB}, nil }
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}

	// no take-charge recorded: not from PEC, wrapped
	m, _, out := run(t, b, raw, env, nil, nil)
	if m.Class != point.ClassNotPEC || !m.UnknownSigner {
		t.Fatalf("without a take-charge: %s", m.Class)
	}
	if len(out.Txn.Outbox) != 0 {
		t.Fatalf("%d receipts for an envelope of an unknown signer", len(out.Txn.Outbox))
	}

	p, _ := parse.Parse(raw)
	b.D.History = takeCharges{{Point: store.AtIncoming, Type: store.TypePresaInCarico, PECID: p.Daticert.Identificativo,
		Recipients: []string{luigi}, Provider: "Provider A S.p.A."}}
	m, plan, out := run(t, b, raw, env, nil, nil)
	if m.Class != point.ClassEnvelope || m.UnknownSigner || m.Provider != "Provider A S.p.A." {
		t.Fatalf("taken in charge: %s unknown=%v provider %q", m.Class, m.UnknownSigner, m.Provider)
	}
	var asPEC, wrapped []string
	for _, g := range plan.Groups {
		switch g.Treatment {
		case point.AsPEC:
			asPEC = append(asPEC, g.Rcpts...)
		case point.Wrapped:
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
	conformance.Check(t, "avvenuta-consegna-reloaded", out.Txn.Outbox[0].Data, b.Root())

	b.D.History = brokenLog{}
	if _, err := b.D.Classify(raw); err == nil {
		t.Fatal("a log that cannot be read: classified anyway, want an error (tempfail)")
	}
}

func TestDecideMailboxFullAndDomain(t *testing.T) {
	b := deliverytest.New(t)
	_, _, out := run(t, b, b.Envelope(t, b.A, "", luigi, "x@pec-c.example.test"), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, "x@pec-c.example.test"}}, nil, map[string]error{
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
	b := deliverytest.New(t)
	// a valid notice for one of our users: delivered unchanged, no receipt,
	// and correlated for the timers when its signer manages the recipient
	o, _ := build.ParseOriginal([]byte("From: maria@pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec7@pec-b.example.test", "maria@pec-b.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	n, _ := b.A.AvvenutaConsegna(at, tx, "z@pec-a.example.test", true, nil)
	env := point.Envelope{MailFrom: n.MailFrom, Rcpts: []string{"maria@pec-b.example.test"}}
	m, p, out := run(t, b, n.Bytes(), env, nil, nil)
	if m.Class != point.ClassNotice || len(p.Groups) != 1 || p.Groups[0].Treatment != point.Unchanged || !bytes.Equal(p.Groups[0].Data, n.Bytes()) {
		t.Fatalf("notice: class %v plan %+v", m.Class, p.Groups)
	}
	if len(out.Txn.Outbox) != 0 || len(out.Txn.Marks) != 1 || out.Txn.Marks[0].PECID != "pec7@pec-b.example.test" || out.Txn.Marks[0].Rcpt != "z@pec-a.example.test" {
		t.Fatalf("notice marks %+v", out.Txn.Marks)
	}
	// its log row names the recipient it is about and the notice itself
	// (its Message-ID), so the sender's provider finds it by either
	var row *store.Event
	for i := range out.Txn.Events {
		if out.Txn.Events[i].Type == store.TypeNotice(kind.AvvenutaConsegna) {
			row = &out.Txn.Events[i]
		}
	}
	if row == nil || !slices.Contains(row.Related, "z@pec-a.example.test") || !slices.Contains(row.Related, n.Get("Message-ID")) {
		t.Fatalf("notice log row %+v, want Related with the recipient and %s", row, n.Get("Message-ID"))
	}
	// a receipt about a recipient its signer does not manage is not trusted for the timers
	forged, _ := b.A.AvvenutaConsegna(at, tx, "z@pec-b.example.test", true, nil)
	_, _, out = run(t, b, forged.Bytes(), env, nil, nil)
	if len(out.Txn.Marks) != 0 {
		t.Fatalf("foreign receipt marked %+v", out.Txn.Marks)
	}
}

// Our own envelope (same provider): the delivery point also sends the
// take-charge to our own mailReceipt — once per recipient, however often
// the envelope comes back.
func TestDecideOwnEnvelope(t *testing.T) {
	b := deliverytest.New(t)
	raw := b.Envelope(t, b.B, "", luigi, carla)
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}}
	m, _, out := run(t, b, raw, env, nil, nil)
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
	seen := map[string]point.Seen{luigi: {State: store.DeliveryStored}, carla: {State: store.DeliveryStored}}
	_, plan, out := run(t, b, raw, env, seen, nil)
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
	_, _, out = run(t, b, raw, env, nil, map[string]error{carla: temp})
	if p := parseAll(t, out.Txn.Outbox)[0]; p.Kind != kind.PresaInCarico || strings.Join(p.Daticert.Ricezione, ",") != luigi {
		t.Fatalf("first transaction: %s ricezione %v, want luigi only", p.Kind, p.Daticert.Ricezione)
	}
	_, _, out = run(t, b, raw, env, map[string]point.Seen{luigi: {State: store.DeliveryStored}}, nil)
	ps := parseAll(t, out.Txn.Outbox)
	if len(ps) != 2 || ps[0].Kind != kind.PresaInCarico || strings.Join(ps[0].Daticert.Ricezione, ",") != carla {
		t.Fatalf("retry: %d messages, want carla's take-charge and receipt", len(ps))
	}
}

// RFC 6109 §3.3.2: a receipt certifies delivery to a recipient the sender
// chose; a genuine envelope handed over for someone else is an anomaly.
func TestPlanNonAddressee(t *testing.T) {
	b := deliverytest.New(t)
	for _, signer := range []*build.Provider{b.A, b.B} {
		raw := b.Envelope(t, signer, "", luigi)
		env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi, intruso}}
		m, p, out := run(t, b, raw, env, nil, nil)
		if len(p.Groups) != 2 || p.Groups[0].Treatment != point.AsPEC || strings.Join(p.Groups[0].Rcpts, ",") != luigi ||
			p.Groups[1].Treatment != point.Wrapped || strings.Join(p.Groups[1].Rcpts, ",") != intruso {
			t.Fatalf("groups %+v", p.Groups)
		}
		a, err := parse.Parse(p.Groups[1].Data)
		if err != nil || a.Kind != kind.Anomalia || !bytes.Contains(a.Original, []byte("X-Trasporto: posta-certificata")) {
			t.Fatalf("the non-addressee's message: %v %v", a.Kind, err)
		}
		conformance.Check(t, "anomalia-non-destinatario", p.Groups[1].Data, b.Root())
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
		_, p2, _ := run(t, b, raw, point.Envelope{MailFrom: mario, Rcpts: []string{intruso}}, map[string]point.Seen{intruso: {State: store.DeliveryStored}}, nil)
		if len(p2.Groups) != 0 || len(p2.Duplicate) != 1 {
			t.Fatalf("second replay to the non-addressee: %+v", p2)
		}
	}
}

// What is not a valid PEC message of a provider never reaches a mailbox as
// it came: wrapped in an anomaly envelope or refused by the mailbox's
// policy (RFC 6109 §2.2.2, §3.2.2), like at the incoming point.
func TestClassifyAndWrap(t *testing.T) {
	b := deliverytest.New(t)
	unsigned := []byte("From: posta-certificata@pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: CONSEGNA: falsa\r\nX-Ricevuta: avvenuta-consegna\r\n" +
		"Message-ID: <falsa@pec-b.example.test>\r\n\r\nla ricevuta non e' firmata\r\n")
	tampered := b.Envelope(t, b.A, "", luigi)
	tampered[bytes.LastIndex(tampered, []byte("ciao"))] = 'C'
	var dsn = []byte("From: MAILER-DAEMON@mx.pec-b.example.test\r\nTo: " + luigi + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.pec-b.example.test\r\n\r\nFinal-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n")
	someonesDSN := bytes.Replace(dsn, []byte("From: MAILER-DAEMON@"), []byte("From: postmaster@"), 1)
	anomaly, err := b.B.Anomalia(at, mustOriginal(t, "From: p@mail.example.org\r\nTo: "+luigi+"\r\nSubject: o\r\n\r\nx\r\n"), "p@mail.example.org", []string{luigi}, "il messaggio non è un messaggio di posta certificata")
	if err != nil {
		t.Fatal(err)
	}
	wrongFrom := bytes.Replace(b.Receipt(t, b.A), []byte("From: posta-certificata@pec-a.example.test"), []byte("From: posta-certificata@pec-b.example.test"), 1)
	const (
		asIs    = iota // delivered unchanged to both
		wrapAll        // wrapped for both (anna's policy does not apply)
		policy         // wrapped for luigi, refused for anna (her policy)
	)
	cases := []struct {
		name     string
		raw      []byte
		mailFrom string
		class    point.Class
		reason   string // part of the anomaly envelope's reason
		want     int
	}{
		{"unsigned X-Ricevuta", unsigned, "posta-certificata@pec-b.example.test", point.ClassNotPEC, "X-Ricevuta: avvenuta-consegna", policy},
		{"receipt signed outside the index", b.Receipt(t, b.X), "posta-certificata@pec-a.example.test", point.ClassNotPEC, "non appartiene a un gestore dell'indice", policy},
		{"tampered envelope", tampered, mario, point.ClassNotPEC, "firma non valida", policy},
		{"provider's receipt From another address", wrongFrom, "posta-certificata@pec-a.example.test", point.ClassInvalid, "messaggio di posta certificata non valido", wrapAll},
		{"ordinary mail", []byte("From: p@mail.example.org\r\nTo: " + luigi + "\r\nSubject: o\r\n\r\nx\r\n"), "p@mail.example.org", point.ClassNotPEC, "non è un messaggio di posta certificata", policy},
		{"receipt of a provider", b.Receipt(t, b.A), "posta-certificata@pec-a.example.test", point.ClassNotice, "", asIs},
		{"our own receipt", b.Receipt(t, b.B), "posta-certificata@pec-b.example.test", point.ClassNotice, "", asIs},
		{"our anomaly envelope", anomaly.Bytes(), "p@mail.example.org", point.ClassNotice, "", asIs},
		{"Postfix's own bounce", dsn, "", point.ClassNotPEC, "", asIs},
		{"a DSN with a reverse-path", dsn, "x@mail.example.org", point.ClassNotPEC, "non è un messaggio di posta certificata", policy},
		{"a DSN from another server", someonesDSN, "", point.ClassNotPEC, "notifica di mancata consegna (DSN)", wrapAll},
		{"Postfix-like bounce with a PEC header", bytes.Replace(dsn, []byte("MIME-Version"), []byte("X-Ricevuta: avvenuta-consegna\r\nMIME-Version"), 1), "", point.ClassNotPEC, "X-Ricevuta", wrapAll},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := point.Envelope{MailFrom: c.mailFrom, Rcpts: []string{luigi, anna}}
			m, p, out := run(t, b, c.raw, env, nil, nil)
			if m.Class != c.class {
				t.Fatalf("class %v, want %v (reason %q)", m.Class, c.class, m.Reason)
			}
			if c.want == asIs {
				if len(p.Groups) != 1 || p.Groups[0].Treatment != point.Unchanged || len(p.Groups[0].Rcpts) != 2 || len(p.Refused) != 0 {
					t.Fatalf("plan %+v refused %v", p.Groups, p.Refused)
				}
				return
			}
			g := p.Groups[len(p.Groups)-1]
			if g.Treatment != point.Wrapped || !strings.Contains(g.Reason, c.reason) {
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
			conformance.Check(t, "anomalia-consegna", g.Data, b.Root())
			if len(out.Txn.Outbox) != 0 {
				t.Fatal("a receipt for something that is not a valid envelope")
			}
		})
	}
	// our own notices need no index
	b.D.Index = func() (point.Directory, error) { return nil, errors.New("index down") }
	if m, err := b.D.Classify(b.Receipt(t, b.B)); err != nil || m.Class != point.ClassNotice {
		t.Fatalf("own receipt with the index down: %v %v", m, err)
	}
	if _, err := b.D.Classify(b.Receipt(t, b.A)); err == nil {
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
	b := deliverytest.New(t)
	raw := b.Envelope(t, b.B, "", luigi, carla, anna, ugo)
	seen := map[string]point.Seen{
		luigi: {State: store.DeliveryStored},
		carla: {State: store.DeliveryPending, Owner: "gone/7", Orphaned: true},
		anna:  {State: store.DeliveryPending, Owner: "busy/3"},
		ugo:   {State: store.DeliveryPending, Owner: "me/2", Known: &point.MailboxResult{Rcpt: ugo, Owner: "me/2", At: at.Add(-time.Minute)}},
	}
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, anna, ugo}}
	m, p, out := run(t, b, raw, env, seen, nil)
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
	b := deliverytest.New(t)
	m, err := b.D.Classify(b.Envelope(t, b.A, "", luigi))
	if err != nil {
		t.Fatal(err)
	}
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}
	p, _ := b.D.Plan(at, m, env, nil)
	out, err := b.D.Decide(at, m, env, p, [][]point.MailboxResult{{{Rcpt: luigi, Owner: "me/1", Unconfirmed: true,
		Err: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "no answer"}}}})
	if err != nil || out.Status[luigi] == nil || len(out.Txn.Outbox) != 0 || len(out.Txn.Deliveries) != 0 {
		t.Fatalf("%v %v %+v", err, out.Status, out.Txn)
	}
}

// Ordinary mail wrapped at the delivery point follows the whole mailbox
// policy: its forward_to copy too, sent as our service address, once the
// wrapped message is stored.
func TestDecideForwardCopies(t *testing.T) {
	b := deliverytest.New(t)
	b.D.Policy.Mailboxes[luigi] = point.MailboxPolicy{ForwardTo: "luigi@mail.example.org"}
	raw := []byte("From: p@mail.example.org\r\nTo: " + luigi + "\r\nSubject: o\r\n\r\nx\r\n")
	env := point.Envelope{MailFrom: "p@mail.example.org", Rcpts: []string{luigi}}
	_, _, out := run(t, b, raw, env, nil, map[string]error{luigi: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "later"}})
	if len(out.Txn.Outbox) != 0 {
		t.Fatalf("a copy for a message not stored: %+v", out.Txn.Outbox)
	}
	_, _, out = run(t, b, raw, env, nil, nil)
	if len(out.Txn.Outbox) != 1 || out.Txn.Outbox[0].Rcpts[0] != "luigi@mail.example.org" ||
		out.Txn.Outbox[0].MailFrom != "posta-certificata@pec-b.example.test" || !bytes.Equal(out.Txn.Outbox[0].Data, raw) {
		t.Fatalf("copies %+v", out.Txn.Outbox)
	}
}
