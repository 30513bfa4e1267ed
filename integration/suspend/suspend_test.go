// Package suspend runs the provider-wide guards on two PEC providers on
// loopback (each its own Postfix, Dovecot, pecmilter, pecdeliver; one
// clamd, one test PKI, one index): the suspended-provider mode (Aruba
// manual §9.7.7) switched by pecctl, and the clock guard with the
// machine's real kernel state.
package suspend

import (
	"bytes"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/verify"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
)

func msg(from, to, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") +
		"@client.example.test>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBuongiorno.\r\n")
}

// box waits up to 60 s for n messages about subject in addr's INBOX.
func box(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := about(t, p, addr, subject)
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("%s holds %d messages about %q, want %d: %v", addr, len(got), subject, n, kinds(got))
			}
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func about(t *testing.T, p *pectest.Provider, addr, subject string) []*parse.Message {
	t.Helper()
	var got []*parse.Message
	for _, raw := range p.Dovecot.Messages(t, addr) {
		h, _, _ := rawmime.Split(rawmime.CRLF(raw))
		if !strings.Contains(h.Get("Subject"), subject) {
			continue
		}
		m, err := parse.Parse(raw)
		if err != nil {
			t.Fatalf("%s: unparsable message %q: %v", addr, h.Get("Subject"), err)
		}
		m.Content = raw
		got = append(got, m)
	}
	sort.Slice(got, func(i, j int) bool { return got[i].Kind < got[j].Kind })
	return got
}

func kinds(ms []*parse.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, string(m.Kind))
	}
	return out
}

func find(ms []*parse.Message, k kind.Kind) *parse.Message {
	for _, m := range ms {
		if m.Kind == k {
			return m
		}
	}
	return nil
}

func events(t *testing.T, st store.Store, q store.Query) []store.Event {
	t.Helper()
	ev, err := st.Events(q)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestSuspendedProvider: pecctl service suspend at provider B; a
// submission at B gets a formal non-acceptance, A's mail to B is
// tempfailed with no take-charge and stays in A's queue; after pecctl
// service resume the retried mail is taken in charge and delivered with
// every receipt.
func TestSuspendedProvider(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}})
	b := w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Users: []string{luigi}})
	w.Start()
	root := testpki.PEM(w.PKI.Root.Cert)
	check := func(name string, m *parse.Message) {
		t.Helper()
		if r := verify.Message(m.Content, w.PKI.Pool()); !r.Valid() {
			t.Errorf("%s does not verify: %v", name, r.Err)
		}
		conformance.Check(t, name, m.Content, root)
	}

	out, code := b.Pecctl("service", "suspend", "--reason", "manutenzione straordinaria")
	if code != 0 || !strings.Contains(out, "suspended since") {
		t.Fatalf("pecctl service suspend: exit %d\n%s", code, out)
	}
	// the running daemons read the state through a cache of guard.ServiceTTL
	time.Sleep(guard.ServiceTTL + time.Second)
	if out, _ := b.Pecctl("service", "status"); !strings.Contains(out, "suspended since") {
		t.Fatalf("pecctl service status: %s", out)
	}

	// a submission at the suspended provider: a formal non-acceptance
	subjOut := "da B sospeso"
	err := b.Send(luigi, []string{mario}, msg(luigi, mario, subjOut))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "servizio sospeso") {
		t.Fatalf("submission while suspended: %v; want 550 naming the suspension", err)
	}
	na := box(t, b, luigi, subjOut, 1)[0]
	if na.Kind != kind.NonAccettazione || na.Daticert.ErroreEsteso != "servizio sospeso (manutenzione straordinaria)" {
		t.Fatalf("sender got %s, errore-esteso %q", na.Kind, na.Daticert.ErroreEsteso)
	}
	check("non-accettazione (servizio sospeso)", na)

	// another provider's mail to it: tempfailed, no take-charge
	subjIn := "da A verso B sospeso"
	if err := a.Send(mario, []string{luigi}, msg(mario, luigi, subjIn)); err != nil {
		t.Fatalf("submission at A: %v", err)
	}
	a.Postfix.WaitLog(t, "4.3.2 PEC: service suspended by the provider", 60*time.Second)
	if a.Postfix.QueueEmpty() {
		t.Fatal("A's queue is empty: the envelope must wait there for B")
	}
	got := box(t, a, mario, subjIn, 1) // the acceptance only
	if got[0].Kind != kind.Accettazione {
		t.Fatalf("mario got %v", kinds(got))
	}
	if n := len(about(t, a, a.ServiceAddr(), subjIn)); n != 0 {
		t.Fatalf("A's service mailbox got %d take-charges while B was suspended", n)
	}
	bst := b.Store()
	if ev := events(t, bst, store.Query{Type: "presa-in-carico"}); len(ev) != 0 {
		t.Fatalf("B took %d messages in charge while suspended", len(ev))
	}
	if n := len(about(t, b, luigi, subjIn)); n != 0 {
		t.Fatalf("luigi got %d messages while B was suspended", n)
	}

	out, code = b.Pecctl("service", "resume")
	if code != 0 || !strings.Contains(out, "active since") {
		t.Fatalf("pecctl service resume: exit %d\n%s", code, out)
	}
	time.Sleep(guard.ServiceTTL + time.Second)
	a.Postfix.Flush()

	env := box(t, b, luigi, subjIn, 1)[0]
	if env.Kind != kind.PostaCertificata {
		t.Fatalf("luigi got %s", env.Kind)
	}
	check("posta-certificata", env)
	got = box(t, a, mario, subjIn, 2)
	for _, k := range []kind.Kind{kind.Accettazione, kind.AvvenutaConsegna} {
		m := find(got, k)
		if m == nil {
			t.Fatalf("mario lacks the %s: %v", k, kinds(got))
		}
		check(string(k), m)
	}
	// the take-charge goes to A's service mailbox (RFC 6109 §3.2.1), once
	pic := box(t, a, a.ServiceAddr(), subjIn, 1)[0]
	if pic.Kind != kind.PresaInCarico {
		t.Fatalf("A's service mailbox got %s", pic.Kind)
	}
	check("presa-in-carico", pic)
	if ev := events(t, bst, store.Query{Type: "presa-in-carico"}); len(ev) != 1 {
		t.Fatalf("B logged %d take-charges, want 1", len(ev))
	}

	var changes []string
	for _, e := range events(t, bst, store.Query{}) {
		if e.Point == "service" {
			changes = append(changes, string(e.Type)+" "+e.Subject)
		}
	}
	if strings.Join(changes, "; ") != "sospensione-servizio manutenzione straordinaria; ripresa-servizio " {
		t.Fatalf("service rows in B's log: %q", changes)
	}
	if out, code := b.Pecctl("log", "verify"); code != 0 {
		t.Fatalf("pecctl log verify: exit %d\n%s", code, out)
	}
}

// TestClockGuard runs a provider with the clock guard on at a bound of
// 1 µs, which the machine's real kernel state exceeds whether it is
// synchronised or not (maxerror is never that small): pecmilter says why
// in its log and tempfails a submission with nothing signed; with the
// guard off it is accepted.
func TestClockGuard(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}, ClockMaxError: "1us"})
	w.Start()
	subj := "orologio fuori limite"
	err := a.Send(mario, []string{mario}, msg(mario, mario, subj))
	if err == nil || !strings.Contains(err.Error(), "451") || !strings.Contains(err.Error(), "clock") {
		t.Fatalf("submission with the clock out of bound: %v; want 451 about the clock", err)
	}
	if l := a.ProcLog("pecmilter"); !strings.Contains(l, "clock out of bound") {
		t.Fatalf("pecmilter's log does not say why:\n%s", l)
	}
	if ev := events(t, a.Store(), store.Query{}); len(ev) != 0 {
		t.Fatalf("%d log rows with the clock out of bound", len(ev))
	}

	a.ClockMaxError = "off"
	a.StopMilter()
	a.WriteConfig(a.ReinjectAddr)
	a.StartMilter()
	if err := a.Send(mario, []string{mario}, msg(mario, mario, subj)); err != nil {
		t.Fatalf("submission with the guard off: %v", err)
	}
	if l := a.ProcLog("pecmilter"); !bytes.Contains([]byte(l), []byte("clock guard is off")) {
		t.Fatalf("pecmilter does not warn that the guard is off:\n%s", l)
	}
}
