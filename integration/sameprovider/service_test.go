package sameprovider

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/store"
)

// No receipt vanishes, with real Postfix and Dovecot and no Dovecot user
// for posta-certificata@: the same-provider take-charge lands in the
// service maildir; a notice that Dovecot refuses (offered to pecdeliver
// directly first, which refuses it, then re-injected through Postfix)
// comes back as Postfix's bounce, which lands there too and leaves an
// "undeliverable" log row naming the cause.
func TestServiceMailboxWithoutDovecotUser(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario, anna}, NoServiceUser: true})
	w.Start()
	if log := a.ProcLog("pecdeliver"); !strings.Contains(log, "SERVICE MAILBOX NOT IN DOVECOT") {
		t.Errorf("pecdeliver did not warn at start-up about the missing service user:\n%s", log)
	}

	subj := "senza casella di servizio"
	raw := []byte("From: " + mario + "\r\nTo: " + anna + "\r\nSubject: " + subj +
		"\r\nMessage-ID: <svc-1@client.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nciao\r\n")
	if err := a.Send(mario, []string{anna}, raw); err != nil {
		t.Fatal(err)
	}
	mailbox(t, a, anna, subj, 1)
	waitFile(t, a.ServiceMaildir(), "X-Ricevuta: presa-in-carico")

	// a notice for a mailbox Dovecot does not know: re-injected as the
	// outbox does, refused by Dovecot through pecdeliver, bounced by
	// Postfix to posta-certificata@
	st := a.Store()
	ghost := "ghost@pec-a.example.test"
	notice := store.Outgoing{MailFrom: a.ServiceAddr(), Rcpts: []string{ghost}, MessageID: "<svc-notice-1@pec-a.example.test>", Kind: "avvenuta-consegna",
		Data: []byte("From: " + a.ServiceAddr() + "\r\nTo: " + ghost + "\r\nSubject: CONSEGNA: prova\r\nMessage-ID: <svc-notice-1@pec-a.example.test>\r\n" +
			"X-Ricevuta: avvenuta-consegna\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nricevuta\r\n")}
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{notice}}); err != nil {
		t.Fatal(err)
	}
	waitFile(t, a.ServiceMaildir(), "svc-notice-1@pec-a.example.test")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ev, err := st.Events(store.Query{Type: "undeliverable"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) == 1 {
			e := ev[0]
			if e.Point != "delivery" || len(e.Recipients) != 1 || e.Recipients[0] != ghost || len(e.Related) != 1 ||
				e.Related[0] != notice.MessageID || !strings.HasPrefix(e.Error, "avvenuta-consegna: ") || !strings.Contains(e.Error, "5.1.1") {
				t.Fatalf("undeliverable row %+v", e)
			}
			break
		}
		if len(ev) > 1 || time.Now().After(deadline) {
			t.Fatalf("undeliverable rows: %+v, want one for the bounced notice", ev)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if log := a.ProcLog("pecdeliver"); !strings.Contains(log, "could not be delivered") || !strings.Contains(log, ghost) {
		t.Errorf("no error line naming the bounced notice:\n%s", log)
	}
	if log := a.ProcLog("pecmilter") + a.ProcLog("pecdeliver"); !strings.Contains(log, "the delivery point did not take the item") {
		t.Errorf("the notice was not offered to pecdeliver directly first")
	}
}

// waitFile waits for a message containing want in the maildir's new/.
func waitFile(t *testing.T, maildir, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ents, _ := os.ReadDir(filepath.Join(maildir, "new"))
		for _, e := range ents {
			b, _ := os.ReadFile(filepath.Join(maildir, "new", e.Name()))
			if bytes.Contains(b, []byte(want)) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q in %s/new after 60 s (%d files)", want, maildir, len(ents))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
