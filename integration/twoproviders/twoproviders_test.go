// Package twoproviders runs two PEC providers on loopback (each its own
// Postfix, Dovecot, pecmilter, pecdeliver; one clamd, one test PKI, one
// index) and checks what every mailbox receives.
package twoproviders

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

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
	"github.com/pecgo/pec/verify"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	anna  = "anna.blu@pec-b.example.test" // refuses ordinary mail
	piena = "piena@pec-b.example.test"    // tiny quota
	paolo = "paolo@mail.example.org"
)

type world struct {
	w    *pectest.World
	a, b *pectest.Provider
	root []byte
	// what A's access point accepted and refused, for pecctl report
	accepted, refused int
}

// sendA submits a message to A's access point and counts the outcome.
func (w *world) sendA(from string, rcpts []string, raw []byte) error {
	err := w.a.Send(from, rcpts, raw)
	if err == nil {
		w.accepted++
	} else {
		w.refused++
	}
	return err
}

func setup(t *testing.T) *world {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}})
	b := w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Users: []string{luigi, carla, anna},
		QuotaUsers: []string{piena},
		Extra:      "\n[policy.mailboxes.\"" + anna + "\"]\nordinary_mail = \"refuse\"\n"})
	w.Start()
	return &world{w: w, a: a, b: b, root: testpki.PEM(w.PKI.Root.Cert)}
}

func msg(from, to, cc, subject, tipo, body string) []byte {
	h := "From: " + from + "\r\nTo: " + to + "\r\n"
	if cc != "" {
		h += "Cc: " + cc + "\r\n"
	}
	if tipo != "" {
		h += "X-TipoRicevuta: " + tipo + "\r\n"
	}
	return []byte(h + "Subject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@client.example.test>\r\n" +
		"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\nMIME-Version: 1.0\r\n" + body)
}

const plainBody = "Content-Type: text/plain; charset=utf-8\r\n\r\nBuongiorno.\r\n"

func attachmentBody(name string, content []byte) string {
	return "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nIn allegato.\r\n--b1\r\n" +
		"Content-Type: application/octet-stream; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + wrap(base64.StdEncoding.EncodeToString(content)) + "\r\n--b1--\r\n"
}

// box is what a mailbox holds, by subject substring.
func box(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
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
			m.Content = raw // keep the whole message for checks
			got = append(got, m)
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) != n {
				t.Fatalf("%s holds %d messages about %q, want %d: %v", addr, len(got), subject, n, kinds(got))
			}
			sort.Slice(got, func(i, j int) bool { return got[i].Kind < got[j].Kind })
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func kinds(ms []*parse.Message) []string {
	var out []string
	for _, m := range ms {
		s := string(m.Kind)
		if m.Daticert != nil && m.Daticert.Consegna != "" {
			s += "(" + m.Daticert.Consegna + ")"
		}
		out = append(out, s)
	}
	return out
}

func (w *world) check(t *testing.T, name string, m *parse.Message) {
	t.Helper()
	r := verify.Message(m.Content, w.w.PKI.Pool())
	if !r.Valid() {
		t.Errorf("%s does not verify: %v", name, r.Err)
	}
	conformance.Check(t, name, m.Content, w.root)
}

func find(ms []*parse.Message, k kind.Kind, consegna string) *parse.Message {
	for _, m := range ms {
		if m.Kind == k && (consegna == "" || m.Daticert.Consegna == consegna) {
			return m
		}
	}
	return nil
}

func TestTwoProviders(t *testing.T) {
	w := setup(t)

	t.Run("a-to-b", func(t *testing.T) {
		subj := "fattura dodici"
		raw := msg("Mario Rossi <"+mario+">", luigi+", "+paolo, carla, subj, "", attachmentBody("fattura.pdf", []byte("%PDF-1.4 finta")))
		if err := w.sendA(mario, []string{luigi, paolo, carla}, raw); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{luigi, carla} {
			env := box(t, w.b, u, subj, 1)[0]
			if env.Kind != kind.PostaCertificata {
				t.Fatalf("%s got %s", u, env.Kind)
			}
			w.check(t, "envelope-"+u, env)
		}
		sender := box(t, w.a, mario, subj, 3)
		acc := find(sender, kind.Accettazione, "")
		cl := find(sender, kind.AvvenutaConsegna, luigi)
		cc := find(sender, kind.AvvenutaConsegna, carla)
		if acc == nil || cl == nil || cc == nil {
			t.Fatalf("sender mailbox: %v", kinds(sender))
		}
		if cl.Original == nil || cl.Daticert.Ricevuta != daticert.Completa {
			t.Error("To recipient's receipt must be completa with the original")
		}
		if cc.Original != nil || cc.Daticert.Ricevuta != daticert.Completa {
			t.Errorf("Cc recipient's receipt must be sintetica (no original) keeping ricevuta=completa; original=%v ricevuta=%s", cc.Original != nil, cc.Daticert.Ricevuta)
		}
		for _, m := range sender {
			w.check(t, string(m.Kind)+"-"+m.Daticert.Consegna, m)
			if m.Daticert.Identificativo != acc.Daticert.Identificativo {
				t.Errorf("%s identificativo %s, acceptance %s", m.Kind, m.Daticert.Identificativo, acc.Daticert.Identificativo)
			}
			if len(m.Daticert.Destinatari) != 3 {
				t.Errorf("%s intestazione lists %d recipients, want the full To+Cc list", m.Kind, len(m.Daticert.Destinatari))
			}
		}
		pic := box(t, w.a, w.a.ServiceAddr(), subj, 1)[0]
		if pic.Kind != kind.PresaInCarico || strings.Join(sorted(pic.Daticert.Ricezione), ",") != strings.Join(sorted([]string{luigi, carla}), ",") {
			t.Fatalf("service mailbox: %s ricezione %v", pic.Kind, pic.Daticert.Ricezione)
		}
		w.check(t, "presa-in-carico", pic)
		// correlation at the sender's provider (PEC-SPEC §6.6 rule 4): the
		// take-charge and both delivery receipts end A's timers; the
		// ordinary recipient has none
		waitTracking(t, w.a, acc.Daticert.Identificativo, map[string]string{luigi: "avvenuta-consegna", carla: "avvenuta-consegna"}, true)
		got := w.w.Ordinary.Wait(t, 1, 30*time.Second, func(m pectest.SinkMessage) bool { return bytes.Contains(m.Data, []byte(subj)) })
		if p, _ := parse.Parse(got[0].Data); p.Kind != kind.PostaCertificata || got[0].Rcpts[0] != paolo {
			t.Fatalf("ordinary recipient got %v", got[0].Rcpts)
		}
	})

	t.Run("eight-bit-folded-headers", func(t *testing.T) {
		// an original as real clients write it: folded headers, a Received
		// field, Reply-To, an RFC 2047 subject and an 8-bit UTF-8 body; the
		// envelope must still verify after Postfix relayed it twice
		subj := "=?utf-8?q?Citt=C3=A0_e_=E2=82=AC_otto_bit?="
		raw := []byte("Received: from [192.0.2.7] (client.example.test)\r\n\tby submission; Mon, 23 Nov 2026 16:03:59 +0100\r\n" +
			"From: \"Rossi, Mario\" <" + mario + ">\r\nTo: " + luigi + "\r\nReply-To: ufficio@pec-a.example.test\r\n" +
			"Subject: " + subj + "\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n" +
			"Message-ID: <otto-bit@client.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
			"Città, perché, 100 €.\r\n")
		if err := w.sendA(mario, []string{luigi}, raw); err != nil {
			t.Fatal(err)
		}
		env := box(t, w.b, luigi, "otto_bit", 1)[0]
		w.check(t, "envelope-8bit", env)
		if !bytes.Contains(env.Original, []byte("Città, perché, 100 €.")) || !bytes.Contains(env.Original, []byte("X-Long: aaaa")) {
			t.Error("postacert.eml lost the 8-bit body or a folded header")
		}
		if *env.Daticert.Oggetto != "Città e € otto bit" || env.Daticert.Risposte != "ufficio@pec-a.example.test" {
			t.Errorf("oggetto %q risposte %q", *env.Daticert.Oggetto, env.Daticert.Risposte)
		}
		for _, m := range box(t, w.a, mario, "otto_bit", 2) {
			w.check(t, string(m.Kind)+"-8bit", m)
		}
	})

	t.Run("breve", func(t *testing.T) {
		subj := "breve please"
		if err := w.sendA(mario, []string{luigi}, msg(mario, luigi, "", subj, "breve", attachmentBody("contratto.pdf", []byte("contenuto riservato")))); err != nil {
			t.Fatal(err)
		}
		r := find(box(t, w.a, mario, subj, 2), kind.AvvenutaConsegna, luigi)
		if r == nil || r.Original == nil || r.Daticert.Ricevuta != daticert.Breve {
			t.Fatal("breve receipt missing or without the hashed original")
		}
		if !bytes.Contains(r.Original, []byte("contratto.pdf.hash")) || bytes.Contains(r.Original, []byte(base64.StdEncoding.EncodeToString([]byte("contenuto riservato")))) {
			t.Error("breve receipt must replace the attachment by its .hash part")
		}
		w.check(t, "breve", r)
	})

	t.Run("sintetica", func(t *testing.T) {
		subj := "sintetica please"
		if err := w.sendA(mario, []string{luigi, carla}, msg(mario, luigi, carla, subj, "sintetica", plainBody)); err != nil {
			t.Fatal(err)
		}
		for _, m := range box(t, w.a, mario, subj, 3) {
			if m.Kind == kind.AvvenutaConsegna && m.Original != nil {
				t.Errorf("sintetica requested: receipt for %s carries the original", m.Daticert.Consegna)
			}
		}
	})

	t.Run("unknown-user", func(t *testing.T) {
		subj := "to nobody"
		nobody := "nessuno@pec-b.example.test"
		if err := w.sendA(mario, []string{nobody}, msg(mario, nobody, "", subj, "", plainBody)); err != nil {
			t.Fatal(err)
		}
		n := find(box(t, w.a, mario, subj, 2), kind.ErroreConsegna, nobody)
		if n == nil || n.Daticert.Errore != daticert.NoDest || !strings.HasPrefix(n.Daticert.ErroreEsteso, "5.1.1 - Provider B S.p.A. - ") {
			t.Fatalf("non-delivery: %+v", n)
		}
		w.check(t, "no-dest", n)
		// a non-delivery notice ends the timer too (our documented choice)
		waitTracking(t, w.a, n.Daticert.Identificativo, map[string]string{nobody: "errore-consegna"}, true)
	})

	t.Run("mailbox-full", func(t *testing.T) {
		subj := "to a full mailbox"
		big := attachmentBody("grande.bin", bytes.Repeat([]byte("x"), 4096))
		if err := w.sendA(mario, []string{piena}, msg(mario, piena, "", subj, "", big)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(w.b.ProcLog("pecmilter"))
			}
		})
		n := find(box(t, w.a, mario, subj, 2), kind.ErroreConsegna, piena)
		if n == nil || n.Daticert.Errore != daticert.Altro || !strings.Contains(n.Daticert.ErroreEsteso, "5.2.2") {
			t.Fatalf("non-delivery for a full mailbox: %+v", n)
		}
	})

	t.Run("ordinary-mail", func(t *testing.T) {
		raw := []byte("From: paolo@mail.example.org\r\nTo: " + luigi + "\r\nSubject: ordinaria ciao\r\nMessage-ID: <o1@mail.example.org>\r\n\r\nciao\r\n")
		if err := pectest.SendAs(w.b.MXAddr, "", paolo, []string{luigi}, raw); err != nil {
			t.Fatal(err)
		}
		m := box(t, w.b, luigi, "ordinaria ciao", 1)[0]
		if m.Kind != kind.Anomalia {
			t.Fatalf("got %s", m.Kind)
		}
		w.check(t, "anomalia", m)
		err := pectest.SendAs(w.b.MXAddr, "", paolo, []string{anna}, bytes.Replace(raw, []byte(luigi), []byte(anna), 1))
		if err == nil || !strings.Contains(err.Error(), "554") {
			t.Fatalf("mailbox that refuses ordinary mail answered %v", err)
		}
	})

	// Envelopes of A built the way genuine providers built theirs
	// (PEC-SPEC §6.7, issue: every real provider's message is read): B's
	// incoming point treats each as valid PEC, the recipient gets the
	// envelope, A's service mailbox the take-charge, the sender the
	// delivery receipt; the quirk is logged, and what B emits is strict.
	t.Run("provider-quirks", func(t *testing.T) {
		oggetto := func(subj, with string) func([]byte) []byte {
			return func(x []byte) []byte {
				y := bytes.Replace(x, []byte("<oggetto>"+subj+"</oggetto>"), []byte("<oggetto>"+with+"</oggetto>"), 1)
				if bytes.Equal(x, y) {
					t.Fatalf("test bug: no oggetto %q", subj)
				}
				return y
			}
		}
		for _, tc := range []struct {
			subj string
			make func(subj string, env []byte) []byte
			warn string
		}{
			{"quirk control reference", func(subj string, env []byte) []byte {
				return pectest.Resign(t, w.a.Identity, env, time.Now(), oggetto(subj, "quirk&#18; control reference"), nil)
			}, "&#18;"},
			{"quirk control raw", func(subj string, env []byte) []byte {
				return pectest.Resign(t, w.a.Identity, env, time.Now(), oggetto(subj, "quirk\x16 control raw"), nil)
			}, "U+0016"},
			{"quirk micalg no dash", func(subj string, env []byte) []byte {
				return bytes.Replace(env, []byte(`micalg="sha-256"`), []byte(`micalg=sha256`), 1)
			}, ""},
			{"quirk micalg wrong digest", func(subj string, env []byte) []byte {
				return bytes.Replace(env, []byte(`micalg="sha-256"`), []byte(`micalg=sha-1`), 1)
			}, `micalg=\"sha-1\" does not name the CMS digest`},
			{"quirk subject edited", func(subj string, env []byte) []byte {
				return bytes.Replace(env, []byte("Subject: POSTA CERTIFICATA: "+subj), []byte("Subject: POSTA CERTIFICATA: "+subj+" (edited)"), 1)
			}, "differs from the daticert oggetto"},
		} {
			t.Run(strings.ReplaceAll(tc.subj, " ", "-"), func(t *testing.T) {
				env := tc.make(tc.subj, pectest.ForgeEnvelope(t, w.a.Identity, mario, luigi, tc.subj))
				if err := pectest.SendAs(w.b.MXAddr, "", mario, []string{luigi}, env); err != nil {
					t.Fatal(err)
				}
				if m := box(t, w.b, luigi, tc.subj, 1)[0]; m.Kind != kind.PostaCertificata {
					t.Fatalf("recipient got %s, want the envelope as valid PEC", m.Kind)
				}
				pic := box(t, w.a, w.a.ServiceAddr(), tc.subj, 1)[0]
				if pic.Kind != kind.PresaInCarico {
					t.Fatalf("A's service mailbox got %s", pic.Kind)
				}
				w.check(t, "presa-in-carico-"+tc.subj, pic)
				rc := box(t, w.a, mario, tc.subj, 1)[0]
				if rc.Kind != kind.AvvenutaConsegna || rc.Daticert.Consegna != luigi {
					t.Fatalf("sender got %s", kinds([]*parse.Message{rc}))
				}
				w.check(t, "avvenuta-consegna-"+tc.subj, rc)
				if tc.warn != "" && !strings.Contains(w.b.ProcLog("pecmilter"), tc.warn) {
					t.Errorf("B's incoming point did not log the quirk %q", tc.warn)
				}
			})
		}
	})

	t.Run("forged-envelopes", func(t *testing.T) {
		// signed by a certificate that is not in the index
		other := w.w.PKI.Issue("Intruso S.r.l.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
		fake := pectest.ForgeEnvelope(t, other, mario, luigi, "forged unknown signer")
		if err := pectest.SendAs(w.b.MXAddr, "", mario, []string{luigi}, fake); err != nil {
			t.Fatal(err)
		}
		if m := box(t, w.b, luigi, "forged unknown signer", 1)[0]; m.Kind != kind.Anomalia {
			t.Fatalf("unknown signer: got %s", m.Kind)
		}
		// a real envelope of A with one changed byte
		real := pectest.ForgeEnvelope(t, w.a.Identity, mario, luigi, "tampered envelope")
		i := bytes.Index(real, []byte("Buongiorno"))
		real[i] = 'b'
		if err := pectest.SendAs(w.b.MXAddr, "", mario, []string{luigi}, real); err != nil {
			t.Fatal(err)
		}
		m := box(t, w.b, luigi, "tampered envelope", 1)[0]
		if m.Kind != kind.Anomalia {
			t.Fatalf("tampered: got %s", m.Kind)
		}
		w.check(t, "anomalia-tampered", m)
	})

	t.Run("virus", func(t *testing.T) {
		subj := "infected envelope"
		if err := w.sendA(mario, []string{luigi}, msg(mario, luigi, "", subj, "", "X-Skip: 1\r\n"+attachmentBody("eicar.com", testenv.EICAR()))); err == nil {
			t.Fatal("the access point accepted a virus")
		}
		// a virus the access point did not see: an envelope signed by A
		// straight to B's port 25
		env := pectest.ForgeEnvelopeBody(t, w.a.Identity, mario, luigi, subj, attachmentBody("eicar.com", testenv.EICAR()))
		// A believes it sent that envelope (as if its antivirus had missed
		// the virus): A acts on a virus notice only for envelopes it tracks
		pe, err := parse.Parse(env)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.a.Store().Commit(store.Txn{Track: []store.Tracked{{PECID: pe.Daticert.Identificativo, Rcpt: luigi, Sent: time.Now(), Tx: []byte("{}")}}}); err != nil {
			t.Fatal(err)
		}
		if err := pectest.SendAs(w.b.MXAddr, "", mario, []string{luigi}, env); err != nil {
			t.Fatal(err)
		}
		pv := box(t, w.a, w.a.ServiceAddr(), subj, 1)[0]
		if pv.Kind != kind.RilevazioneVirus || pv.Daticert.Consegna != luigi {
			t.Fatalf("service mailbox: %s", pv.Kind)
		}
		w.check(t, "rilevazione-virus", pv)
		nv := box(t, w.a, mario, subj, 2)
		if find(nv, kind.ErroreConsegnaVirus, luigi) == nil {
			t.Fatalf("sender mailbox: %v", kinds(nv))
		}
		w.check(t, "errore-consegna-virus", find(nv, kind.ErroreConsegnaVirus, luigi))
		time.Sleep(time.Second)
		for _, raw := range w.b.Dovecot.Messages(t, luigi) {
			if bytes.Contains(raw, []byte(subj)) {
				t.Fatal("infected envelope delivered")
			}
		}
		items, _ := w.b.Store().VirusItems(pv.Daticert.Identificativo)
		if len(items) != 1 {
			t.Fatalf("virus store at B: %d items", len(items))
		}
	})

	t.Run("dovecot-down", func(t *testing.T) {
		subj := "dovecot was down"
		w.b.Dovecot.Stop()
		if err := w.sendA(mario, []string{luigi}, msg(mario, luigi, "", subj, "", plainBody)); err != nil {
			t.Fatal(err)
		}
		w.b.Postfix.WaitLog(t, "status=deferred", 30*time.Second)
		for _, m := range w.a.Dovecot.Messages(t, mario) {
			if bytes.Contains(m, []byte(subj)) && bytes.Contains(m, []byte("X-Ricevuta: avvenuta-consegna")) {
				t.Fatal("delivery receipt while Dovecot is down")
			}
		}
		w.b.Dovecot.Start(t)
		w.b.Postfix.Flush()
		box(t, w.b, luigi, subj, 1)
		got := box(t, w.a, mario, subj, 2)
		if find(got, kind.AvvenutaConsegna, luigi) == nil {
			t.Fatalf("sender: %v", kinds(got))
		}
		time.Sleep(3 * time.Second)
		box(t, w.b, luigi, subj, 1)
		box(t, w.a, mario, subj, 2)
	})

	t.Run("pecctl", func(t *testing.T) {
		// the operator's queries on the log these tests produced
		ev, _ := w.a.Store().Events(store.Query{Type: "accettazione", Limit: 1})
		if len(ev) == 0 {
			t.Fatal("no acceptance in A's log")
		}
		pecid := ev[0].PECID
		out, code := w.a.Pecctl("log", "search", "--pecid", pecid)
		if code != 0 || !strings.Contains(out, "accettazione") || !strings.Contains(out, "avvenuta-consegna") {
			t.Fatalf("log search (%d):\n%s", code, out)
		}
		day := time.Now().In(time.FixedZone("", 0)).Format("2006-01-02")
		if loc, err := time.LoadLocation("Europe/Rome"); err == nil {
			day = time.Now().In(loc).Format("2006-01-02")
		}
		out, code = w.a.Pecctl("log", "search", "--sender", mario, "--day", day, "--json")
		if code != 0 || strings.Count(out, "\n") < 5 {
			t.Fatalf("log search by sender and day (%d):\n%s", code, out)
		}
		file := filepath.Join(t.TempDir(), "extract.eml")
		if out, code = w.a.Pecctl("log", "export", "--mailbox", mario, "--date", day, "-o", file); code != 0 {
			t.Fatalf("log export (%d): %s", code, out)
		}
		conformance.OpenSSL(t, file, w.w.RootPEM)
		out, code = w.a.Pecctl("report", "--from", day, "--to", day, "--json")
		if code != 0 || !strings.Contains(out, "accettazione") && !strings.Contains(out, "accepted") {
			t.Fatalf("report (%d):\n%s", code, out)
		}
		// every figure that follows from what the subtests submitted to A
		var r struct {
			ManagedDomains []string `json:"managed_domains"`
			Mailboxes      struct {
				Source string `json:"source"`
				Active int    `json:"active"`
			} `json:"mailboxes"`
			Accepted       int            `json:"accepted"`
			Refused        int            `json:"refused"`
			RefusedVirus   int            `json:"refused_virus"`
			RefusedByCause map[string]int `json:"refused_by_cause"`
			Viruses        struct {
				Access int `json:"access"`
			} `json:"viruses"`
			AcceptanceLatency struct {
				Measured        int     `json:"measured"`
				Unsent          int     `json:"unsent"`
				Under30MinShare float64 `json:"under_30min_share"`
			} `json:"acceptance_latency"`
			Availability struct {
				Samples int `json:"samples"`
			} `json:"availability"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Accepted != w.accepted || r.Refused != w.refused || r.RefusedVirus != w.refused || r.Viruses.Access != w.refused {
			t.Errorf("report: accepted %d refused %d (virus %d, access viruses %d); the subtests had %d accepted and %d refused (each for a virus)",
				r.Accepted, r.Refused, r.RefusedVirus, r.Viruses.Access, w.accepted, w.refused)
		}
		if w.refused > 0 && (len(r.RefusedByCause) != 1 || r.RefusedByCause["virus"] != w.refused) {
			t.Errorf("refusals by cause %v, want virus: %d", r.RefusedByCause, w.refused)
		}
		if len(r.ManagedDomains) != 1 || r.ManagedDomains[0] != w.a.Domain || r.Mailboxes.Active != 1 {
			t.Errorf("domains %v, mailboxes %+v: want %s and one sender (%s)", r.ManagedDomains, r.Mailboxes, w.a.Domain, mario)
		}
		if l := r.AcceptanceLatency; l.Measured != w.accepted || l.Unsent != 0 || l.Under30MinShare != 1 {
			t.Errorf("acceptance latency %+v: every one of the %d receipts was sent within seconds", l, w.accepted)
		}
		if r.Availability.Samples == 0 {
			t.Error("no health samples recorded by A's daemons")
		}
		for _, p := range []*pectest.Provider{w.a, w.b} {
			if out, code := p.Pecctl("log", "verify"); code != 0 || !strings.Contains(out, "log intact") {
				t.Fatalf("%s log verify (%d): %s", p.Domain, code, out)
			}
		}
		t.Logf("report of provider A for %s:\n%s", day, out)
	})

	// A provider whose chain is signed with SHA-1 (2014-era, PEC-SPEC §6.7):
	// live traffic is signed after the default cut-off (2017-01-01), so B
	// wraps it in an anomaly envelope; with sha1_cutoff moved past today it
	// is valid PEC and taken in charge.
	t.Run("sha1-chain", func(t *testing.T) {
		old := testpki.NewSHA1(t, testpki.SHA1Options{LeafEnd: "20300101000000Z", LeafEmail: "posta-certificata@pec-old.example.test", Provider: "Old PEC S.p.A."})
		const sender = "anna@pec-old.example.test"
		// B trusts the old root and the index lists the old provider
		roots, err := os.ReadFile(w.w.RootPEM)
		if err != nil {
			t.Fatal(err)
		}
		oldRoot, _ := os.ReadFile(filepath.Join(old.Dir, "root.pem"))
		if err := os.WriteFile(w.w.RootPEM, append(append([]byte{}, roots...), oldRoot...), 0o644); err != nil {
			t.Fatal(err)
		}
		w.w.WriteIndex(index.TestProvider{Name: "Old PEC S.p.A.", MailReceipt: "posta-certificata@pec-old.example.test",
			Domains: []string{"pec-old.example.test"}, Certs: []*x509.Certificate{old.Provider.Cert}})
		cfg, err := os.ReadFile(w.b.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		// both daemons verify signatures (the delivery point too, RFC
		// 6109 §3.3.1): a change of roots or cut-off restarts both
		restart := func(conf []byte) {
			if err := os.WriteFile(w.b.ConfigPath, conf, 0o644); err != nil {
				t.Fatal(err)
			}
			w.b.StopMilter()
			w.b.StartMilter()
			w.b.StopDeliver()
			w.b.StartDeliver()
		}
		t.Cleanup(func() {
			os.WriteFile(w.w.RootPEM, roots, 0o644)
			w.w.WriteIndex()
			restart(cfg)
		})
		restart(cfg)
		env := pectest.ForgeEnvelope(t, old.Provider, sender, luigi, "sha1 chain today")
		if err := pectest.SendAs(w.b.MXAddr, "", sender, []string{luigi}, env); err != nil {
			t.Fatal(err)
		}
		if m := box(t, w.b, luigi, "sha1 chain today", 1)[0]; m.Kind != kind.Anomalia {
			t.Fatalf("SHA-1 chain signed today, default cut-off: got %s, want an anomaly", m.Kind)
		}
		later := bytes.Replace(cfg, []byte("[signing]\n"), []byte("[signing]\nsha1_cutoff = \"2099-01-01\"\n"), 1)
		if bytes.Equal(later, cfg) {
			t.Fatal("test bug: no [signing] section in the configuration")
		}
		restart(later)
		env = pectest.ForgeEnvelope(t, old.Provider, sender, luigi, "sha1 chain cut-off 2099")
		if err := pectest.SendAs(w.b.MXAddr, "", sender, []string{luigi}, env); err != nil {
			t.Fatal(err)
		}
		if m := box(t, w.b, luigi, "sha1 chain cut-off 2099", 1)[0]; m.Kind != kind.PostaCertificata {
			t.Fatalf("SHA-1 chain, cut-off 2099: got %s, want the envelope as valid PEC", m.Kind)
		}
		// the take-charge goes to the old provider's mailReceipt (not
		// running here: the ordinary-mail sink)
		w.w.Ordinary.Wait(t, 1, 30*time.Second, func(m pectest.SinkMessage) bool {
			p, err := parse.Parse(m.Data)
			return err == nil && p.Kind == kind.PresaInCarico && strings.Contains(p.Header.Get("Subject"), "sha1 chain cut-off 2099")
		})
	})

	t.Run("log", func(t *testing.T) {
		for _, p := range []*pectest.Provider{w.a, w.b} {
			st := p.Store()
			if bad, err := st.VerifyLog(); err != nil {
				t.Fatalf("%s log: row %d: %v", p.Domain, bad, err)
			}
			ev, _ := st.Events(store.Query{})
			if len(ev) == 0 {
				t.Fatalf("%s: empty event log", p.Domain)
			}
		}
	})
}

// waitTracking waits until A's timers for pecid show exactly these
// outcomes (and, when presa, a take-charge for each).
func waitTracking(t *testing.T, p *pectest.Provider, pecid string, want map[string]string, presa bool) {
	t.Helper()
	st := p.Store()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, err := st.Tracking(pecid)
		if err != nil {
			t.Fatal(err)
		}
		ok := len(rows) == len(want)
		for _, r := range rows {
			if want[r.Rcpt] != string(r.Outcome) || (presa && r.Presa.IsZero()) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timers of %s: %+v, want outcomes %v (take-charge %v)", pecid, rows, want, presa)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func wrap(s string) string {
	var lines []string
	for len(s) > 76 {
		lines, s = append(lines, s[:76]), s[76:]
	}
	return strings.Join(append(lines, s), "\r\n")
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	sort.Strings(out)
	return out
}
