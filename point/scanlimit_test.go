package point_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
)

// A message bigger than clamd's StreamMaxLength can never be scanned: the
// access point refuses it for good with a non-acceptance notice naming the
// cause (not a day of tempfails), and refuses it at SMTP level with 552.
func TestAccessTooLargeToScan(t *testing.T) {
	e := newEnv(t)
	raw := msg(mario, luigi, "", "")
	ev := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}
	d := e.access(scanner{err: clamd.ErrSizeLimit}).Check(context.Background(), ev, raw, at)
	if d.Action != point.Reject || d.Code != 552 || d.Status != "5.3.4" || d.Replace != nil {
		t.Fatalf("%v %d %s %q, want a permanent 552 5.3.4", d.Action, d.Code, d.Status, d.Text)
	}
	if len(d.Txn.Outbox) != 1 || len(d.Txn.Events) != 1 || d.Txn.Events[0].Type != "non-accettazione" {
		t.Fatalf("txn %+v, want the non-acceptance notice and its log row", d.Txn)
	}
	p, err := parse.Parse(d.Txn.Outbox[0].Data)
	if err != nil || p.Kind != kind.NonAccettazione || !strings.Contains(p.Daticert.ErroreEsteso, "controllo antivirus") {
		t.Fatalf("notice %v %+v", err, p)
	}
}

// At the incoming point the same is a 552 for the sending MTA, whatever
// the message is (valid envelope, anomaly, ordinary mail).
func TestIncomingTooLargeToScan(t *testing.T) {
	e := newIncoming(t)
	e.scanner = scanner{err: clamd.ErrSizeLimit}
	raw, _ := e.envelope(t, e.a, "valida", luigi)
	ordinary := []byte("From: paolo@mail.example.org\r\nTo: " + luigi + "\r\nSubject: ciao\r\n\r\nciao\r\n")
	for name, m := range map[string][]byte{"envelope": raw, "ordinary": ordinary} {
		d := e.incoming().Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, m, at)
		if d.Action != point.Reject || d.Code != 552 || d.Status != "5.3.4" || len(d.Txn.Outbox) != 0 {
			t.Errorf("%s: %v %d %s %q", name, d.Action, d.Code, d.Status, d.Text)
		}
	}
}
