package point_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
)

// gate is an injected provider-wide state.
type gate struct {
	clock     string
	suspended bool
	reason    string
	err       error
}

func (g gate) ClockProblem() string             { return g.clock }
func (g gate) Suspended() (bool, string, error) { return g.suspended, g.reason, g.err }

func TestClockProblem(t *testing.T) {
	synced := point.ClockState{Synchronized: true, MaxError: 250 * time.Millisecond}
	cases := []struct {
		name  string
		st    point.ClockState
		err   error
		bound time.Duration
		want  string // in the problem; "" for none
	}{
		{"synchronised within the bound", synced, nil, time.Second, ""},
		{"unsynchronised (what an idle machine's kernel says)", point.ClockState{MaxError: 16 * time.Second}, nil, time.Second, "not synchronised"},
		{"synchronised but the error exceeds the bound", point.ClockState{Synchronized: true, MaxError: 1500 * time.Millisecond}, nil, time.Second, "exceeds the bound of 1s"},
		{"exactly the bound", point.ClockState{Synchronized: true, MaxError: time.Second}, nil, time.Second, ""},
		{"unreadable: fail closed", synced, errors.New("operation not permitted"), time.Second, "cannot read"},
		{"off: unsynchronised is fine", point.ClockState{MaxError: 16 * time.Second}, nil, 0, ""},
	}
	for _, c := range cases {
		got := point.ClockProblem(c.st, c.err, c.bound)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: ClockProblem = %q, want %q", c.name, got, c.want)
		}
		if got != "" && !strings.Contains(got, "chrony") && c.err == nil {
			t.Errorf("%s: %q does not tell the operator what to check", c.name, got)
		}
	}
}

func TestAccessClockOutOfBoundTempfails(t *testing.T) {
	e := newEnv(t)
	a := e.access(scanner{})
	a.Gate = gate{clock: "not synchronised"}
	d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
	if d.Action != point.TempFail || d.Code != 451 || d.Status != "4.3.0" || !strings.Contains(d.Text, "clock") {
		t.Fatalf("decision %v %d %s %q, want 451 4.3.0 about the clock", d.Action, d.Code, d.Status, d.Text)
	}
	if !d.Txn.Empty() {
		t.Fatalf("nothing may be signed or logged with a wrong time: %+v", d.Txn)
	}
}

func TestAccessSuspendedRefuses(t *testing.T) {
	e := newEnv(t)
	a := e.access(scanner{})
	a.Gate = gate{suspended: true, reason: "manutenzione"}
	d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
	if d.Action != point.Reject || d.Replace != nil {
		t.Fatalf("decision %v %q: a suspended provider forwards nothing", d.Action, d.Reason)
	}
	if len(d.Txn.Outbox) != 1 || len(d.Txn.Events) != 1 || d.Txn.Events[0].Type != "non-accettazione" || d.Txn.Track != nil {
		t.Fatalf("txn: %d outgoing, events %+v, track %v; want one non-acceptance and no timers", len(d.Txn.Outbox), d.Txn.Events, d.Txn.Track)
	}
	p, err := parse.Parse(d.Txn.Outbox[0].Data)
	if err != nil || p.Kind != kind.NonAccettazione {
		t.Fatalf("notice %v %v", p.Kind, err)
	}
	if p.Daticert.ErroreEsteso != "servizio sospeso (manutenzione)" || p.Daticert.Errore != daticert.Altro {
		t.Fatalf("errore %q errore-esteso %q", p.Daticert.Errore, p.Daticert.ErroreEsteso)
	}
	if d.Txn.Outbox[0].Rcpts[0] != mario {
		t.Fatalf("notice to %v, want the sender", d.Txn.Outbox[0].Rcpts)
	}
	conformance.Check(t, "non-accettazione (servizio sospeso)", d.Txn.Outbox[0].Data, testpki.PEM(e.pki.Root.Cert))
	// an unreadable state fails closed
	a.Gate = gate{err: errors.New("database is locked")}
	d = a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
	if d.Action != point.TempFail || !d.Txn.Empty() {
		t.Fatalf("unreadable service state: %v %q", d.Action, d.Reason)
	}
	// active: accepted as usual
	a.Gate = gate{}
	if d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at); d.Action != point.Accept {
		t.Fatalf("active service: %v %q", d.Action, d.Reason)
	}
}

func TestIncomingGateTempfailsWithoutTakeCharge(t *testing.T) {
	e := newIncoming(t)
	raw, _ := e.envelope(t, e.a, "valida", luigi)
	for _, c := range []struct {
		name   string
		g      gate
		status string
	}{
		{"suspended", gate{suspended: true, reason: "manutenzione"}, "4.3.2"},
		{"clock out of bound", gate{clock: "not synchronised"}, "4.3.0"},
		{"unreadable state", gate{err: errors.New("database is locked")}, "4.3.0"},
	} {
		in := e.incoming()
		in.Gate = c.g
		d := in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at)
		if d.Action != point.TempFail || d.Code != 451 || d.Status != c.status || !d.Txn.Empty() {
			t.Errorf("%s: %v %d %s %q, txn %+v; want a 451 %s and no take-charge", c.name, d.Action, d.Code, d.Status, d.Text, d.Txn, c.status)
		}
	}
	in := e.incoming()
	in.Gate = gate{}
	if d := in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at); d.Action != point.Accept || len(d.Txn.Outbox) != 1 {
		t.Fatalf("active service: %v %q, %d notices", d.Action, d.Reason, len(d.Txn.Outbox))
	}
}
