// Package providertls runs two providers where the receiving one requires
// TLS from the other providers (require_tls_from_providers, Aruba
// §7.3.3): mail sent without TLS is tempfailed, logged, and delivered
// once the sender's Postfix retries over TLS.
package providertls

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
)

func TestRequireTLSFromProviders(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	cert, key := testpki.ServerTLS(t, w.Dir, "mx-tls-", "mx.pec-b.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}})
	b := w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Users: []string{luigi}, RequireTLS: true,
		PostfixMain: []string{"smtpd_tls_cert_file = " + cert, "smtpd_tls_key_file = " + key, "smtpd_tls_security_level = may",
			"smtpd_tls_received_header = yes"}})
	w.Start()

	subj := "richiede TLS"
	raw := []byte("From: " + mario + "\r\nTo: " + luigi + "\r\nSubject: " + subj + "\r\nMessage-ID: <tls@client.example.test>\r\n" +
		"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBuongiorno.\r\n")
	if err := a.Send(mario, []string{luigi}, raw); err != nil {
		t.Fatal(err)
	}

	// A's Postfix sends without TLS: B tempfails, says why, logs it
	a.Postfix.WaitLog(t, "without TLS", 60*time.Second)
	bst := b.Store()
	var ev []store.Event
	for deadline := time.Now().Add(30 * time.Second); len(ev) == 0; time.Sleep(200 * time.Millisecond) {
		var err error
		if ev, err = bst.Events(store.Query{Type: store.TypeTLSRequired}); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("no tls-required row in B's event log")
		}
	}
	if e := ev[0]; e.Point != "incoming" || e.Provider != "Provider A S.p.A." || !strings.Contains(e.Error, "without TLS") {
		t.Errorf("tls-required row %+v", e)
	}
	if l := a.Postfix.Log(); !strings.Contains(l, "status=deferred") || !strings.Contains(l, "4.7.0") {
		t.Errorf("A's Postfix did not defer with B's 4.7.0:\n%s", l)
	}
	if pic, err := bst.Events(store.Query{Type: "presa-in-carico"}); err != nil || len(pic) != 0 {
		t.Errorf("B took %d messages in charge without TLS (%v)", len(pic), err)
	}
	if n := b.Dovecot.Count(luigi); n != 0 {
		t.Errorf("luigi got %d messages sent without TLS", n)
	}

	// A's Postfix turns TLS on (as smtp_tls_policy_maps does for every
	// provider's domain): the retry is taken in charge and delivered
	postconf, _ := exec.LookPath("postconf")
	postfix, _ := exec.LookPath("postfix")
	if out, err := exec.Command(postconf, "-c", a.Postfix.ConfDir, "-e", "smtp_tls_security_level = encrypt").CombinedOutput(); err != nil {
		t.Fatalf("postconf: %v: %s", err, out)
	}
	if out, err := exec.Command(postfix, "-c", a.Postfix.ConfDir, "reload").CombinedOutput(); err != nil {
		t.Fatalf("postfix reload: %v: %s", err, out)
	}
	a.Postfix.Flush()
	env := b.Mailbox(luigi, 1)
	if !strings.Contains(string(env[0]), subj) {
		t.Fatalf("luigi's message is not the retried one:\n%.300s", env[0])
	}
	if !strings.Contains(string(env[0]), "using TLS") {
		t.Errorf("luigi's message did not come over TLS (no \"using TLS\" in its Received field):\n%.600s", env[0])
	}
	var kinds []string
	for _, raw := range a.Mailbox(mario, 2) { // acceptance and delivery receipt
		m, err := parse.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, string(m.Kind))
	}
	slices.Sort(kinds)
	if strings.Join(kinds, ",") != string(kind.Accettazione)+","+string(kind.AvvenutaConsegna) {
		t.Errorf("mario's receipts: %v", kinds)
	}
	pic, err := parse.Parse(a.Mailbox(a.ServiceAddr(), 1)[0])
	if err != nil || pic.Kind != kind.PresaInCarico {
		t.Errorf("A's service mailbox: %v %v, want B's take-charge", pic, err)
	}
}
