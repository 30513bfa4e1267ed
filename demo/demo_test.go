// Package demo is the project's main job, run by `make demo`: two PEC
// providers on loopback (each its own Postfix, Dovecot, pecmilter,
// pecdeliver; one clamd, one test CA, one providers' index) exchange one
// PEC message, and the demo prints what every mailbox received. It fails
// unless every expected envelope and receipt arrived and verifies.
//
// With PEC_DEMO_KEEP=1 (`make demo KEEP=1`) the providers then stay up for
// a person's mail client: every mailbox gets a fresh password, the demo
// prints the submission and IMAP addresses, the logins and passwords, and
// waits for SIGINT or SIGTERM; then it stops every daemon it started.
package demo

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/verify"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	paolo = "paolo@mail.example.org"
)

func TestDemo(t *testing.T) {
	var stop <-chan os.Signal
	if os.Getenv(keepEnv) != "" {
		// registered first, so it runs last: after every daemon's cleanup
		t.Cleanup(func() { checkStopped(t) })
		stop = catchStop()
	}
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}})
	b := w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", Users: []string{luigi, carla}})
	start := time.Now()
	w.Start()
	fmt.Printf("started two providers in %v: pec-a (submission %s, MX %s) and pec-b (MX %s)\n",
		time.Since(start).Round(time.Millisecond), a.SubmissionAddr, a.MXAddr, b.MXAddr)

	subject := "Contratto di fornitura n. 42"
	raw := "From: Mario Rossi <" + mario + ">\r\nTo: " + luigi + ", " + paolo + "\r\nCc: " + carla + "\r\n" +
		"Subject: " + subject + "\r\nMessage-ID: <demo-1@client.example.test>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBuongiorno, in allegato il contratto.\r\n"
	sent := time.Now()
	if err := a.Send(mario, []string{luigi, paolo, carla}, []byte(raw)); err != nil {
		t.Fatalf("submission: %v", err)
	}
	fmt.Printf("%s submitted one message to %s (To), %s (Cc) and %s (ordinary)\n\n", mario, luigi, carla, paolo)

	// what every mailbox must hold, by kind
	expect := []struct {
		p     *pectest.Provider
		addr  string
		kinds []kind.Kind
	}{
		{a, mario, []kind.Kind{kind.Accettazione, kind.AvvenutaConsegna, kind.AvvenutaConsegna}},
		{a, a.ServiceAddr(), []kind.Kind{kind.PresaInCarico}},
		{b, luigi, []kind.Kind{kind.PostaCertificata}},
		{b, carla, []kind.Kind{kind.PostaCertificata}},
	}
	dir := t.TempDir()
	var files []string
	ok := true
	for _, e := range expect {
		msgs := e.p.Mailbox(e.addr, len(e.kinds))
		fmt.Printf("%s (%s):\n", e.addr, e.p.Name)
		var got []string
		for i, m := range msgs {
			r := verify.Message(m, w.PKI.Pool())
			h, _, _ := rawmime.Split(rawmime.CRLF(m))
			signer := "-"
			if r.Signature != nil && r.Signature.Signer != nil {
				signer = r.Signature.Signer.Subject.String()
			}
			status := "verified"
			if !r.Valid() {
				status = "INVALID: " + r.Err.Error()
				ok = false
			}
			got = append(got, string(r.Message.Kind))
			fmt.Printf("  %-20s %-70q signer %s: %s\n", r.Message.Kind, h.Get("Subject"), signer, status)
			f := filepath.Join(dir, fmt.Sprintf("%s-%d.eml", strings.ReplaceAll(e.addr, "@", "_"), i))
			os.WriteFile(f, m, 0o644)
			files = append(files, f)
		}
		var want []string
		for _, k := range e.kinds {
			want = append(want, string(k))
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s holds %v, want %v", e.addr, got, want)
		}
	}
	ord := w.Ordinary.Wait(t, 1, 30*time.Second, nil)
	r := verify.Message(ord[0].Data, w.PKI.Pool())
	fmt.Printf("%s (ordinary mail server):\n  %-20s from %s: %v\n\n", paolo, r.Message.Kind, ord[0].From, map[bool]string{true: "verified", false: "INVALID"}[r.Valid()])
	if !r.Valid() || r.Message.Kind != kind.PostaCertificata {
		ok = false
	}
	f := filepath.Join(dir, "paolo_mail.example.org-0.eml")
	os.WriteFile(f, ord[0].Data, 0o644)
	files = append(files, f)
	fmt.Printf("every message arrived %v after submission\n", time.Since(sent).Round(time.Millisecond))
	// the independent linter over everything the mailboxes received
	fmt.Println(conformance.Lint(t, w.RootPEM, files...))
	if !ok || t.Failed() {
		t.Fatal("demo failed: see above")
	}
	// fresh passwords for every mailbox, checked over IMAP and SMTP AUTH:
	// what KEEP=1 prints for a mail client
	acc := handOver(t, w, a, b)
	fmt.Println("DEMO OK")
	if stop != nil {
		keepRunning(w, acc, stop)
	}
}
