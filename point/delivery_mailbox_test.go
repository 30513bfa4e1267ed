package point_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/deliverytest"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// TestPlanClosedMailbox: a transport envelope for a closed or suspended
// mailbox is not handed to Dovecot and gets a non-delivery notice (RFC
// 6109 §3.3.3) naming a disabled mailbox, recorded once; an active one
// gets its delivery receipt; ordinary mail for a closed mailbox is
// refused with 5.2.1; a receipt still reaches a closed mailbox within
// its read-only period but not a disabled one; an unreadable registry
// stops the transaction (the adapter tempfails).
func TestPlanClosedMailbox(t *testing.T) {
	const (
		mario, luigi, carla = deliverytest.Mario, deliverytest.Luigi, deliverytest.Carla
		ugo, anna           = deliverytest.Ugo, deliverytest.Anna
	)
	b := deliverytest.New(t)
	b.D.Mailboxes = registry{m: map[string]point.MailboxStatus{
		luigi: {State: store.MailboxClosed}, ugo: {State: store.MailboxSuspended},
		carla: {State: store.MailboxActive}, anna: {State: store.MailboxDisabled}}}
	raw := b.Envelope(t, b.A, "", luigi, carla, ugo)
	_, p, out := run(t, b, raw, point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, ugo}}, nil, nil)
	if len(p.Groups) != 1 || strings.Join(p.Groups[0].Rcpts, ",") != carla {
		t.Fatalf("handed to Dovecot: %+v", p.Groups)
	}
	for _, r := range []string{luigi, carla, ugo} {
		if out.Status[r] != nil {
			t.Errorf("%s answered %v, want 250 (the notice is the answer)", r, out.Status[r])
		}
	}
	got := map[string]string{}
	for _, n := range parseAll(t, out.Txn.Outbox) {
		got[n.Daticert.Consegna] = string(n.Kind) + " " + n.Daticert.ErroreEsteso
		if n.Kind == kind.ErroreConsegna && n.Daticert.Errore != daticert.Altro {
			t.Errorf("errore %s", n.Daticert.Errore)
		}
	}
	closed := string(kind.ErroreConsegna) + " 5.2.1 - Provider B S.p.A. - casella del destinatario disabilitata"
	if got[luigi] != closed || got[ugo] != closed || got[carla] != string(kind.AvvenutaConsegna)+" " {
		t.Fatalf("notices %v", got)
	}
	var failed []string
	for _, d := range out.Txn.Deliveries {
		if d.To == store.DeliveryFailed {
			failed = append(failed, d.Rcpt)
		}
	}
	if strings.Join(failed, ",") != luigi+","+ugo {
		t.Fatalf("deliveries recorded failed: %v (a retry must not send a second notice)", failed)
	}

	// ordinary mail: refused for the closed mailbox
	ord := []byte("From: someone@mail.example.org\r\nTo: " + luigi + "\r\nSubject: hi\r\nMessage-ID: <o@mail.example.org>\r\n\r\nhi\r\n")
	_, _, out = run(t, b, ord, point.Envelope{MailFrom: "someone@mail.example.org", Rcpts: []string{luigi}}, nil, nil)
	if code(out.Status[luigi]) != 550 || len(out.Txn.Outbox) != 0 {
		t.Fatalf("ordinary mail to a closed mailbox: %v, %d queued", out.Status[luigi], len(out.Txn.Outbox))
	}

	// a receipt: delivered to the closed mailbox, refused to the disabled one
	rec := b.Receipt(t, b.A)
	_, p, out = run(t, b, rec, point.Envelope{MailFrom: "posta-certificata@pec-a.example.test", Rcpts: []string{luigi, anna}}, nil, nil)
	if len(p.Groups) != 1 || strings.Join(p.Groups[0].Rcpts, ",") != luigi || code(out.Status[anna]) != 550 {
		t.Fatalf("receipt: plan %+v, disabled answered %v", p.Groups, out.Status[anna])
	}

	b.D.Mailboxes = registry{err: errors.New("database is down")}
	m, err := b.D.Classify(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.D.Plan(deliverytest.At, m, point.Envelope{MailFrom: mario, Rcpts: []string{carla}}, nil); err == nil {
		t.Fatal("Plan went on without the registry")
	}
}
