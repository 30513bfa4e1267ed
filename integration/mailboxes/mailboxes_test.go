// Package mailboxes checks the mailbox registry on one real provider
// (Postfix, Dovecot, clamd, pecmilter and pecdeliver built from this
// tree): a closed mailbox cannot submit, PEC for it is answered with a
// non-delivery notice, and its address is never registered again.
package mailboxes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	anna  = "anna.blu@pec-a.example.test"
)

func msg(from, to, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" +
		strings.ReplaceAll(subject, " ", "-") + "@client.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nciao\r\n")
}

// about waits for n messages about subject in addr's INBOX.
func about(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out []*parse.Message
		for _, raw := range p.Dovecot.Messages(t, addr) {
			if !bytes.Contains(raw, []byte(subject)) {
				continue
			}
			m, err := parse.Parse(raw)
			if err != nil {
				t.Fatalf("%s: %v", addr, err)
			}
			out = append(out, m)
		}
		if len(out) >= n || time.Now().After(deadline) {
			if len(out) != n {
				t.Fatalf("%s: %d messages about %q, want %d", addr, len(out), subject, n)
			}
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestClosedMailbox(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario, anna},
		Extra: "\n[mailboxes]\ncache = \"1s\"\n"})
	w.Start()

	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte(pectest.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{mario, anna} {
		if out, code := a.Pecctl("mailbox", "add", u, "--password-file", pw); code != 0 {
			t.Fatalf("mailbox add %s: %d %s", u, code, out)
		}
	}
	if out, code := a.Pecctl("mailbox", "close", anna, "--note", "fine contratto"); code != 0 {
		t.Fatalf("mailbox close: %d %s", code, out)
	}
	time.Sleep(1500 * time.Millisecond) // the points' cache ([mailboxes] cache = 1s)

	// the closed mailbox still logs in (Dovecot SASL) but cannot submit
	err := a.Send(anna, []string{mario}, msg(anna, mario, "dalla casella chiusa"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) || !strings.Contains(se.Message, "closed") {
		t.Fatalf("submission from a closed mailbox: %v", err)
	}

	// PEC to the closed mailbox: acceptance and a non-delivery notice for
	// the sender, nothing in the closed mailbox
	subj := "alla casella chiusa"
	if err := a.Send(mario, []string{anna}, msg(mario, anna, subj)); err != nil {
		t.Fatal(err)
	}
	got := map[kind.Kind]*parse.Message{}
	for _, m := range about(t, a, mario, subj, 2) {
		got[m.Kind] = m
	}
	n := got[kind.ErroreConsegna]
	if got[kind.Accettazione] == nil || n == nil {
		t.Fatalf("the sender got %v, want an acceptance and a non-delivery notice", got)
	}
	if n.Daticert.Consegna != anna || !strings.Contains(n.Daticert.ErroreEsteso, "5.2.1") {
		t.Fatalf("non-delivery notice for %s: %q", n.Daticert.Consegna, n.Daticert.ErroreEsteso)
	}
	for _, raw := range a.Dovecot.Messages(t, anna) {
		if bytes.Contains(raw, []byte(subj)) {
			t.Fatal("the closed mailbox got the message")
		}
	}

	// the address is never registered again, and every change is logged
	if out, code := a.Pecctl("mailbox", "add", anna, "--password-file", pw); code != 1 || !strings.Contains(out, "never reassigned") {
		t.Fatalf("add of a closed address: %d %s", code, out)
	}
	evs, err := a.Store().Events(store.Query{Point: store.AtMailbox})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	if strings.Join(types, " ") != "mailbox-add mailbox-add mailbox-close" {
		t.Fatalf("mailbox log rows %v", types)
	}
	if out, code := a.Pecctl("log", "verify"); code != 0 {
		t.Fatalf("log verify: %d %s", code, out)
	}
}
