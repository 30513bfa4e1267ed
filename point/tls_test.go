package point_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// require_tls_from_providers (Aruba §7.3.3): a provider's envelope that
// came without TLS is tempfailed with a log row and no take-charge; over
// TLS it is taken in charge; ordinary mail is not concerned.
func TestIncomingRequireTLSFromProviders(t *testing.T) {
	e := newIncoming(t)
	e.cfg.Milter.RequireTLSFromProviders = "on"
	in := e.incoming()
	raw, _ := e.envelope(t, e.a, "senza tls", luigi)

	d := in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, QueueID: "Q1"}, raw, at)
	if d.Action != point.TempFail || d.Code != 451 || d.Status != "4.7.0" || !strings.Contains(d.Text, "without TLS") {
		t.Fatalf("without TLS: %v %d %s %q, want a 451 4.7.0 naming TLS", d.Action, d.Code, d.Status, d.Text)
	}
	if d.Replace != nil || len(d.Txn.Outbox) != 0 {
		t.Fatalf("without TLS: replace %v, %d notices: nothing may be taken in charge", d.Replace, len(d.Txn.Outbox))
	}
	if len(d.Txn.Events) != 1 {
		t.Fatalf("without TLS: %d log rows, want 1", len(d.Txn.Events))
	}
	ev := d.Txn.Events[0]
	if ev.Type != store.TypeTLSRequired || ev.Point != "incoming" || ev.Provider != "Provider A S.p.A." ||
		ev.QueueID != "Q1" || !strings.Contains(ev.Error, "without TLS") || len(ev.Recipients) != 1 {
		t.Errorf("log row %+v", ev)
	}

	d = in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, TLS: true}, raw, at)
	if d.Action != point.Accept || len(d.Txn.Outbox) != 1 {
		t.Fatalf("with TLS: %v %q, %d notices; want accepted with its take-charge", d.Action, d.Reason, len(d.Txn.Outbox))
	}

	// ordinary mail from the Internet may come without TLS (RFC 6109 §5.3)
	plain := []byte("From: paolo@mail.example.org\r\nTo: " + luigi + "\r\nSubject: ciao\r\n\r\nciao\r\n")
	d = in.Check(context.Background(), point.Envelope{MailFrom: paolo, Rcpts: []string{luigi}}, plain, at)
	if d.Action != point.Accept || d.Replace == nil || d.Replace.Kind != kind.Anomalia {
		t.Fatalf("ordinary mail without TLS: %v %q, want wrapped as usual", d.Action, d.Reason)
	}

	// off: the provider's envelope without TLS is taken in charge
	e.cfg.Milter.RequireTLSFromProviders = "off"
	d = e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at)
	if d.Action != point.Accept || len(d.Txn.Outbox) != 1 {
		t.Fatalf("option off: %v %q", d.Action, d.Reason)
	}
}
