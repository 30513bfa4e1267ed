// Package sameprovider checks the rules that are easy to miss (PEC-SPEC
// §6.6) on one real provider: same-provider traffic across two managed
// domains gets the whole treatment, notices carry the service reverse-path,
// and a DSN reaches a mailbox that refuses ordinary mail as an anomaly
// envelope.
package sameprovider

import (
	"bytes"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	anna  = "anna.blu@pec-a.example.test"
	bruno = "bruno.gialli@pec-a2.example.test" // a second managed domain of the same provider
)

func mailbox(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
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
			m.Content = raw
			out = append(out, m)
		}
		if len(out) >= n || time.Now().After(deadline) {
			if len(out) != n {
				var k []string
				for _, m := range out {
					k = append(k, string(m.Kind))
				}
				t.Fatalf("%s: %d messages about %q %v, want %d", addr, len(out), subject, k, n)
			}
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func returnPath(m *parse.Message) string {
	h, _, _ := rawmime.Split(rawmime.CRLF(m.Content))
	return h.Get("Return-Path")
}

func TestSameProvider(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-a2.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Domains: []string{"pec-a2.example.test"},
		Users: []string{mario, anna, bruno}, Extra: "\n[policy]\nordinary_mail = \"refuse\"\n"})
	w.Start()

	subj := "stesso gestore"
	raw := []byte("From: " + mario + "\r\nTo: " + anna + "\r\nCc: " + bruno + "\r\nSubject: " + subj +
		"\r\nMessage-ID: <same-1@client.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nciao\r\n")
	if err := a.Send(mario, []string{anna, bruno}, raw); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{anna, bruno} {
		env := mailbox(t, a, u, subj, 1)[0]
		if env.Kind != kind.PostaCertificata {
			t.Fatalf("%s got %s", u, env.Kind)
		}
		// envelopes keep the original reverse-path (PEC-SPEC §6.6 rule 6)
		if rp := returnPath(env); rp != "<"+mario+">" {
			t.Errorf("envelope Return-Path %q", rp)
		}
	}
	sender := mailbox(t, a, mario, subj, 3)
	var acc *parse.Message
	forms := map[string]bool{}
	for _, m := range sender {
		// notices are sent with MAIL FROM posta-certificata@<our domain>
		if rp := returnPath(m); rp != "<posta-certificata@pec-a.example.test>" {
			t.Errorf("%s Return-Path %q", m.Kind, rp)
		}
		switch m.Kind {
		case kind.Accettazione:
			acc = m
		case kind.AvvenutaConsegna:
			forms[m.Daticert.Consegna] = m.Original != nil
			if m.Daticert.Ricevuta != daticert.Completa {
				t.Errorf("receipt for %s: ricevuta %s, want the requested completa", m.Daticert.Consegna, m.Daticert.Ricevuta)
			}
		default:
			t.Errorf("unexpected %s in the sender's mailbox", m.Kind)
		}
		conformance.Check(t, string(m.Kind), m.Content, pemRoot(w))
	}
	if acc == nil || !forms[anna] || forms[bruno] {
		t.Fatalf("want acceptance, completa for To (%s) and sintetica for Cc (%s); got %v", anna, bruno, forms)
	}
	// the incoming point's part for same-provider mail: one take-charge to
	// our own mailReceipt covering both recipients
	pic := mailbox(t, a, a.ServiceAddr(), subj, 1)[0]
	got := append([]string{}, pic.Daticert.Ricezione...)
	sort.Strings(got)
	if pic.Kind != kind.PresaInCarico || strings.Join(got, ",") != anna+","+bruno {
		t.Fatalf("service mailbox: %s ricezione %v", pic.Kind, pic.Daticert.Ricezione)
	}
	st := a.Store()
	ev, err := st.Events(store.Query{PECID: acc.Daticert.Identificativo, Type: "presa-in-carico"})
	if err != nil || len(ev) != 1 || ev[0].Point != "delivery" {
		t.Fatalf("log: %+v %v", ev, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, _ := st.Tracking(acc.Daticert.Identificativo)
		done := len(rows) == 2
		for _, r := range rows {
			done = done && !r.Presa.IsZero() && r.Outcome == store.MarkConsegna
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("timers not closed by the same-provider notices: %+v", rows)
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Run("dsn-to-refusing-mailbox", func(t *testing.T) {
		plain := []byte("From: paolo@mail.example.org\r\nTo: " + mario + "\r\nSubject: ordinaria\r\n\r\nciao\r\n")
		if err := pectest.SendAs(a.MXAddr, "", "paolo@mail.example.org", []string{mario}, plain); err == nil || !strings.Contains(err.Error(), "554") {
			t.Fatalf("ordinary mail to a refusing mailbox: %v", err)
		}
		dsn := []byte("From: MAILER-DAEMON@mail.example.org\r\nTo: " + mario + "\r\nSubject: Undelivered Mail Returned to Sender (dsn test)\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n" +
			"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mail.example.org\r\n\r\nFinal-Recipient: rfc822; paolo@mail.example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r--\r\n")
		if err := pectest.SendAs(a.MXAddr, "", "", []string{mario}, dsn); err != nil {
			t.Fatal(err)
		}
		m := mailbox(t, a, mario, "dsn test", 1)[0]
		if m.Kind != kind.Anomalia {
			t.Fatalf("DSN delivered as %s", m.Kind)
		}
		conformance.Check(t, "anomalia-dsn", m.Content, pemRoot(w))
	})
}

func pemRoot(w *pectest.World) []byte {
	b, _ := readFile(w.RootPEM)
	return b
}
