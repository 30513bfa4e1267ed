package point_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// registry is a fixed mailbox registry for the pure-rule tests (package
// mailbox's tests run the real one on both store backends).
type registry struct {
	m   map[string]point.MailboxStatus
	err error
}

func (r registry) MailboxStatus(addr string, now time.Time) (point.MailboxStatus, bool, error) {
	s, ok := r.m[strings.ToLower(addr)]
	return s, ok, r.err
}

func (r registry) MailboxOptions(addr string) (store.MailboxOptions, bool, error) {
	s, ok := r.m[strings.ToLower(addr)]
	return s.Options, ok, r.err
}

// TestAccessMailboxStates: a mailbox that is suspended, closed or
// disabled cannot submit: 550 5.7.1, no PEC id signed, no notice, one log
// row; an active or unregistered one goes on; an unreadable registry
// tempfails (fail closed).
func TestAccessMailboxStates(t *testing.T) {
	e := newEnv(t)
	raw := msg(mario, luigi, "", "")
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}
	for _, st := range []store.MailboxState{store.MailboxSuspended, store.MailboxClosed, store.MailboxDisabled} {
		t.Run(string(st), func(t *testing.T) {
			a := e.access(scanner{})
			a.Mailboxes = registry{m: map[string]point.MailboxStatus{mario: {State: st}}}
			d := a.Check(context.Background(), env, raw, at)
			if d.Action != point.Reject || d.Code != 550 || d.Status != "5.7.1" || !strings.Contains(d.Text, string(st)) {
				t.Fatalf("decision %v %d %s %q", d.Action, d.Code, d.Status, d.Text)
			}
			if d.Replace != nil || len(d.Txn.Outbox) != 0 || len(d.Txn.Events) != 1 {
				t.Fatalf("refusal signed or queued something: replace=%v outbox=%d events=%d", d.Replace != nil, len(d.Txn.Outbox), len(d.Txn.Events))
			}
			if ev := d.Txn.Events[0]; ev.Type != "non-accettazione" || !strings.Contains(ev.Error, "invio non consentito") || ev.Sender != mario {
				t.Fatalf("log row %+v", ev)
			}
		})
	}
	a := e.access(scanner{})
	a.Mailboxes = registry{m: map[string]point.MailboxStatus{"other@pec-a.example.test": {State: store.MailboxClosed}}}
	if d := a.Check(context.Background(), env, raw, at); d.Action != point.Accept {
		t.Fatalf("unregistered mailbox: %v %q", d.Action, d.Reason)
	}
	a.Mailboxes = registry{err: errors.New("database is down")}
	if d := a.Check(context.Background(), env, raw, at); d.Action != point.TempFail || d.Code != 451 {
		t.Fatalf("registry down: %v %d", d.Action, d.Code)
	}
}

// TestAccessDefaultReceiptForm: a mailbox's default receipt form fills in
// for a message that asks for none, and yields to X-TipoRicevuta.
func TestAccessDefaultReceiptForm(t *testing.T) {
	e := newEnv(t)
	a := e.access(scanner{})
	a.Mailboxes = registry{m: map[string]point.MailboxStatus{mario: {State: store.MailboxActive, Options: store.MailboxOptions{ReceiptForm: "sintetica"}}}}
	env := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}
	form := func(raw []byte) daticert.Ricevuta {
		t.Helper()
		d := a.Check(context.Background(), env, raw, at)
		if d.Action != point.Accept {
			t.Fatalf("decision %v %q", d.Action, d.Reason)
		}
		p, err := parse.Parse(d.Replace.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return p.Daticert.Ricevuta
	}
	if got := form(msg(mario, luigi, "", "")); got != daticert.Sintetica {
		t.Fatalf("no X-TipoRicevuta: form %q, want the mailbox's sintetica", got)
	}
	asked := append([]byte("X-TipoRicevuta: breve\r\n"), msg(mario, luigi, "", "")...)
	if got := form(asked); got != daticert.Breve {
		t.Fatalf("X-TipoRicevuta breve: form %q", got)
	}
}

// TestPolicyRegistryOptions: the registry's options come first, the
// static configuration fills what they leave empty, and an unregistered
// mailbox keeps the static policy.
func TestPolicyRegistryOptions(t *testing.T) {
	p := &point.Policy{OrdinaryMail: "accept", Mailboxes: map[string]point.MailboxPolicy{
		"a@pec.example.test": {OrdinaryMail: "accept", ForwardTo: "a@example.com"},
		"b@pec.example.test": {OrdinaryMail: "refuse"},
	}}
	p.Registry = registry{m: map[string]point.MailboxStatus{
		"a@pec.example.test": {Options: store.MailboxOptions{OrdinaryMail: "refuse"}},
		"c@pec.example.test": {Options: store.MailboxOptions{ForwardTo: "c@example.com"}},
	}}
	for addr, want := range map[string][2]string{
		"A@pec.example.test": {"refuse", "a@example.com"},
		"b@pec.example.test": {"refuse", ""},
		"c@pec.example.test": {"accept", "c@example.com"},
		"d@pec.example.test": {"accept", ""},
	} {
		if pol, fwd := p.Ordinary(addr); pol != want[0] || fwd != want[1] {
			t.Errorf("Ordinary(%s) = %s, %s; want %v", addr, pol, fwd, want)
		}
	}
}
