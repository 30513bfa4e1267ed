// Package access tests the access point end to end: a real Postfix
// submission service with Dovecot SASL, real clamd, pecmilter built from
// this tree; what Postfix relays lands in a sink listener.
package access

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	paolo = "paolo@mail.example.org"
)

type fixture struct {
	w    *pectest.World
	a    *pectest.Provider
	sink *pectest.Sink
}

func setup(t *testing.T) *fixture {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	sink := pectest.StartSink(t)
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario, "altro@pec-a.example.test"},
		SinkAll: sink, Extra: "\n[limits]\nmax_recipients = 3\nmax_size_times_rcpts = 30000\n",
		// Postfix refuses, after the access milter accepted it, the
		// envelope of a message titled "never queued": as when it
		// crashes or cannot write its queue file at that instant
		PostfixMain: []string{"milter_header_checks = regexp:{ {/^Subject: POSTA CERTIFICATA: never queued/ REJECT refused after the milter} }"}})
	w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", IndexOnly: true})
	w.Start()
	return &fixture{w: w, a: a, sink: sink}
}

func message(from, to, cc, bcc, subject, body string) []byte {
	h := "From: " + from + "\r\nTo: " + to + "\r\n"
	if cc != "" {
		h += "Cc: " + cc + "\r\n"
	}
	if bcc != "" {
		h += "Bcc: " + bcc + "\r\n"
	}
	return []byte(h + "Subject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@client.example.test>\r\n" +
		"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n")
}

func kindOf(m pectest.SinkMessage) kind.Kind {
	p, err := parse.Parse(m.Data)
	if err != nil || p == nil {
		return kind.Ordinaria
	}
	return p.Kind
}

func subjectHas(s string) func(pectest.SinkMessage) bool {
	return func(m pectest.SinkMessage) bool {
		h, _, err := rawmime.Split(rawmime.CRLF(m.Data))
		return err == nil && strings.Contains(h.Get("Subject"), s)
	}
}

func code(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestAccessPoint(t *testing.T) {
	f := setup(t)
	root := testpki.PEM(f.w.PKI.Root.Cert)

	t.Run("accepted", func(t *testing.T) {
		raw := message("Mario Rossi <"+mario+">", luigi+", "+paolo, carla, "", "valid one", "Buongiorno.")
		if err := f.a.Send(mario, []string{luigi, paolo, carla}, raw); err != nil {
			t.Fatalf("submission refused: %v", err)
		}
		got := f.sink.Wait(t, 2, 30*time.Second, subjectHas("valid one"))
		var env, acc *pectest.SinkMessage
		for i := range got {
			switch kindOf(got[i]) {
			case kind.PostaCertificata:
				env = &got[i]
			case kind.Accettazione:
				acc = &got[i]
			}
		}
		if env == nil || acc == nil {
			t.Fatalf("want an envelope and an acceptance, got %d messages", len(got))
		}
		if env.From != mario || len(env.Rcpts) != 3 {
			t.Errorf("envelope routed from %s to %v, want the original envelope", env.From, env.Rcpts)
		}
		if acc.From != "posta-certificata@pec-a.example.test" || len(acc.Rcpts) != 1 || acc.Rcpts[0] != mario {
			t.Errorf("acceptance from %s to %v", acc.From, acc.Rcpts)
		}
		conformance.Check(t, "envelope", env.Data, root)
		conformance.Check(t, "acceptance", acc.Data, root)
		pe, _ := parse.Parse(env.Data)
		inner, _, err := rawmime.Split(rawmime.CRLF(pe.Original))
		if err != nil {
			t.Fatal(err)
		}
		if inner.Get("Message-ID") != "<"+pe.Daticert.Identificativo+">" || inner.Get("X-Riferimento-Message-ID") != "<valid-one@client.example.test>" {
			t.Errorf("postacert.eml Message-ID %q X-Riferimento %q", inner.Get("Message-ID"), inner.Get("X-Riferimento-Message-ID"))
		}
		if !bytes.Contains(pe.Original, []byte("Buongiorno.")) {
			t.Error("postacert.eml lost the body")
		}
		pa, _ := parse.Parse(acc.Data)
		want := map[string]daticert.DestTipo{luigi: daticert.Certificato, paolo: daticert.Esterno, carla: daticert.Certificato}
		if len(pa.Daticert.Destinatari) != 3 {
			t.Fatalf("acceptance lists %v", pa.Daticert.Destinatari)
		}
		for _, d := range pa.Daticert.Destinatari {
			if want[d.Addr] != d.Tipo {
				t.Errorf("%s listed as %s", d.Addr, d.Tipo)
			}
		}
		if pa.Daticert.Identificativo != pe.Daticert.Identificativo {
			t.Error("acceptance and envelope carry different PEC ids")
		}
		ev, err := f.a.Store().Events(storeQuery(pe.Daticert.Identificativo))
		if err != nil || len(ev) < 2 {
			t.Fatalf("event log for %s: %v %v", pe.Daticert.Identificativo, ev, err)
		}
	})

	refusals := []struct {
		name, user, from string
		rcpts            []string
		raw              []byte
		want             string
	}{
		{"bcc", mario, mario, []string{luigi, carla}, message(mario, luigi, "", carla, "with bcc", "x"), "Bcc"},
		{"from-not-mailfrom", mario, mario, []string{luigi}, message("altro@pec-a.example.test", luigi, "", "", "from differs", "x"), "non coincide con il mittente della busta"},
		{"from-not-auth", mario, "altro@pec-a.example.test", []string{luigi}, message("altro@pec-a.example.test", luigi, "", "", "auth differs", "x"), "utente autenticato"},
		{"rcpt-not-to-cc", mario, mario, []string{luigi, carla}, message(mario, luigi, "", "", "rcpt differs", "x"), "campi To e Cc"},
		{"too-many", mario, mario, []string{luigi, carla, paolo, "d@pec-b.example.test"}, message(mario, luigi+", "+carla+", "+paolo+", d@pec-b.example.test", "", "", "too many", "x"), "numero di destinatari"},
		{"size", mario, mario, []string{luigi, carla}, message(mario, luigi, carla, "", "too big", strings.Repeat(strings.Repeat("0123456789", 9)+"\r\n", 180)), "superiore al limite di 30000 byte"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			err := pectest.SendAs(f.a.SubmissionAddr, r.user, r.from, r.rcpts, r.raw)
			if code(err) != 550 {
				t.Fatalf("submission answered %v, want 550", err)
			}
			subj := strings.SplitN(strings.SplitN(string(r.raw), "Subject: ", 2)[1], "\r\n", 2)[0]
			got := f.sink.Wait(t, 1, 30*time.Second, subjectHas(subj))
			time.Sleep(time.Second) // anything relayed would be here by now
			got = f.sink.Wait(t, 1, time.Second, subjectHas(subj))
			if len(got) != 1 || kindOf(got[0]) != kind.NonAccettazione {
				t.Fatalf("want only a non-acceptance notice, got %d messages (first %s)", len(got), kindOf(got[0]))
			}
			p, _ := parse.Parse(got[0].Data)
			if !strings.Contains(p.Daticert.ErroreEsteso, r.want) || got[0].Rcpts[0] != mario {
				t.Fatalf("notice to %v errore-esteso %q, want %q", got[0].Rcpts, p.Daticert.ErroreEsteso, r.want)
			}
			conformance.Check(t, r.name, got[0].Data, root)
		})
	}

	t.Run("unauthenticated", func(t *testing.T) {
		err := pectest.SendAs(f.a.SubmissionAddr, "", mario, []string{luigi}, message(mario, luigi, "", "", "no auth", "x"))
		if c := code(err); c < 500 {
			t.Fatalf("unauthenticated submission: %v", err)
		}
	})

	t.Run("virus", func(t *testing.T) {
		raw := message(mario, luigi, "", "", "with virus", "see attachment")
		raw = bytes.Replace(raw, []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nsee attachment\r\n"),
			[]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\n"+
				"Content-Type: application/octet-stream; name=eicar.com\r\nContent-Transfer-Encoding: base64\r\n\r\n"+
				b64(testenv.EICAR())+"\r\n--b--\r\n"), 1)
		err := f.a.Send(mario, []string{luigi}, raw)
		if code(err) != 554 {
			t.Fatalf("infected submission answered %v, want 554", err)
		}
		got := f.sink.Wait(t, 1, 30*time.Second, subjectHas("with virus"))
		if kindOf(got[0]) != kind.NonAccettazioneVirus {
			t.Fatalf("got %s", kindOf(got[0]))
		}
		conformance.Check(t, "virus", got[0].Data, root)
		p, _ := parse.Parse(got[0].Data)
		items, err := f.a.Store().VirusItems(p.Daticert.Identificativo)
		if err != nil || len(items) != 1 || !bytes.Contains(items[0].Data, []byte(b64(testenv.EICAR())[:20])) {
			t.Fatalf("virus store: %d items, %v", len(items), err)
		}
	})

	t.Run("clamd-down", func(t *testing.T) {
		f.w.Clamd.Stop()
		defer f.w.Clamd.Start(t)
		err := f.a.Send(mario, []string{luigi}, message(mario, luigi, "", "", "clamd down", "x"))
		if code(err) != 451 {
			t.Fatalf("with clamd down the submission answered %v, want 451", err)
		}
		time.Sleep(2 * time.Second)
		for _, m := range f.sink.Messages() {
			if subjectHas("clamd down")(m) {
				t.Fatalf("something was relayed with clamd down: %s", kindOf(m))
			}
		}
	})

	t.Run("index-resync-on-sighup", func(t *testing.T) {
		// mail.example.org becomes a PEC domain: after SIGHUP the access
		// point classifies its recipients as certified
		c := f.w.PKI.Issue("Provider C S.p.A.", "posta-certificata@mail.example.org", time.Time{}, time.Time{}, false)
		f.w.WriteIndex(index.TestProvider{Name: "Provider C S.p.A.", Domains: []string{"mail.example.org"}, Certs: []*x509.Certificate{c.Cert}})
		f.a.Signal("pecmilter", syscall.SIGHUP)
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			subj := fmt.Sprintf("after resync %d", i)
			if err := f.a.Send(mario, []string{paolo}, message(mario, paolo, "", "", subj, "x")); err != nil {
				t.Fatal(err)
			}
			acc := f.sink.Wait(t, 1, 30*time.Second, func(m pectest.SinkMessage) bool { return subjectHas(subj)(m) && kindOf(m) == kind.Accettazione })
			p, _ := parse.Parse(acc[0].Data)
			if p.Daticert.Destinatari[0].Tipo == daticert.Certificato {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the access point still classifies the new PEC domain as ordinary after SIGHUP")
			}
			time.Sleep(500 * time.Millisecond)
		}
		f.w.WriteIndex()
		f.a.Signal("pecmilter", syscall.SIGHUP)
	})

	// RFC 6109 §3.1.4: no acceptance for mail Postfix did not queue. The
	// milter accepted and signed, then Postfix refused to queue: no
	// acceptance leaves, the log has no row, no timer runs; the held
	// transaction is dropped once Postfix could no longer confirm it.
	t.Run("never-queued", func(t *testing.T) {
		err := f.a.Send(mario, []string{luigi}, message(mario, luigi, "", "", "never queued", "x"))
		if code(err) != 550 && code(err) != 554 {
			t.Fatalf("Postfix did not refuse the test message after the milter: %v", err)
		}
		// a message sent after it is accepted and confirmed: when its
		// acceptance has left, the refused one's would have too
		if err := f.a.Send(mario, []string{luigi}, message(mario, luigi, "", "", "queued after", "x")); err != nil {
			t.Fatal(err)
		}
		f.sink.Wait(t, 1, 30*time.Second, func(m pectest.SinkMessage) bool {
			return subjectHas("queued after")(m) && kindOf(m) == kind.Accettazione
		})
		time.Sleep(time.Second)
		for _, m := range f.sink.Messages() {
			if subjectHas("never queued")(m) {
				t.Fatalf("%s left for a message Postfix never queued", kindOf(m))
			}
		}
		st := f.a.Store()
		ev, err := st.Events(store.Query{Type: "accettazione"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ev {
			if strings.Contains(e.Subject, "never queued") {
				t.Fatalf("log row for a message Postfix never queued: %+v", e)
			}
		}
		if n, err := st.HeldCount(); err != nil || n != 1 {
			t.Fatalf("held acceptances %d (%v), want the refused one", n, err)
		}
		dropped, err := st.DropUnqueued(time.Now().Add(time.Minute))
		if err != nil || len(dropped) != 1 {
			t.Fatalf("dropped %+v %v", dropped, err)
		}
		if rows, _ := st.Tracking(dropped[0].PECIDs[0]); len(rows) != 0 {
			t.Fatalf("timer rows of the never-queued envelope: %+v", rows)
		}
	})

	t.Run("crash-before-receipt", func(t *testing.T) {
		// hold the outbox: the re-injection address points nowhere, for
		// pecdeliver too (it shares the outbox, and it makes the held
		// acceptance effective once Postfix has queued the envelope)
		f.a.StopMilter()
		f.a.KillDeliver()
		f.a.WriteConfig("127.0.0.1:9")
		f.a.StartMilter()
		f.a.StartDeliver()
		if err := f.a.Send(mario, []string{luigi}, message(mario, luigi, "", "", "crash test", "x")); err != nil {
			t.Fatal(err)
		}
		f.sink.Wait(t, 1, 30*time.Second, func(m pectest.SinkMessage) bool {
			return subjectHas("crash test")(m) && kindOf(m) == kind.PostaCertificata
		})
		time.Sleep(time.Second)
		for _, m := range f.sink.Messages() {
			if subjectHas("crash test")(m) && kindOf(m) == kind.Accettazione {
				t.Fatal("acceptance left although the re-injection listener is unreachable")
			}
		}
		// the operator sees the held receipt
		deadline := time.Now().Add(20 * time.Second)
		for {
			out, code := f.a.Pecctl("outbox", "list")
			if code == 0 && strings.Contains(out, "accettazione") && strings.Contains(out, "1 unsent") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pecctl outbox list (%d):\n%s", code, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		f.a.KillMilter()
		f.a.KillDeliver()
		f.a.WriteConfig(f.a.ReinjectAddr)
		f.a.StartMilter()
		f.a.StartDeliver()
		if out, code := f.a.Pecctl("outbox", "retry"); code != 0 || !strings.Contains(out, "due now") {
			t.Fatalf("pecctl outbox retry (%d): %s", code, out)
		}
		isAcc := func(m pectest.SinkMessage) bool { return subjectHas("crash test")(m) && kindOf(m) == kind.Accettazione }
		f.sink.Wait(t, 1, 30*time.Second, isAcc)
		time.Sleep(3 * time.Second)
		if n := len(f.sink.Wait(t, 1, time.Second, isAcc)); n != 1 {
			t.Fatalf("acceptance sent %d times after the restart, want exactly once", n)
		}
	})
}
