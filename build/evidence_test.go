package build_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
)

// One renderer, table-driven over the notice kinds: every kind's evidence
// becomes a notice of that kind, about that recipient, that passes
// openssl, xmllint against the DTD and pec-lint.
func TestRenderEveryNoticeKind(t *testing.T) {
	f := newFixture(t)
	env := parseOK(t, f.envelope.Bytes())
	luigi := "luigi.verdi@pec-b.example.test"
	later := at.Add(2 * time.Second)
	for _, e := range []build.Evidence{
		{Kind: kind.Accettazione, Time: at},
		{Kind: kind.NonAccettazione, Time: at, Cause: "il destinatario in Ccn (Bcc) non è ammesso"},
		{Kind: kind.NonAccettazioneVirus, Time: at, Cause: "Test.EICAR.NDB.UNOFFICIAL"},
		{Kind: kind.PreavvisoErroreConsegna, Time: at.Add(12 * time.Hour), Rcpt: luigi, Sent: at},
		{Kind: kind.PreavvisoErroreConsegna, Time: at.Add(23 * time.Hour), Rcpt: luigi, Sent: at, Final: true},
		{Kind: kind.PresaInCarico, Time: later, MailReceipt: "posta-certificata@pec-a.example.test", Ricezione: []string{luigi}},
		{Kind: kind.RilevazioneVirus, Time: later, MailReceipt: "posta-certificata@pec-a.example.test", Rcpt: luigi, Cause: "Test.EICAR.NDB.UNOFFICIAL"},
		{Kind: kind.ErroreConsegnaVirus, Time: later, Rcpt: luigi, Cause: "virus: Test.EICAR.NDB.UNOFFICIAL"},
		{Kind: kind.AvvenutaConsegna, Time: later, Rcpt: luigi, Primary: true, Original: env.Original},
		{Kind: kind.ErroreConsegna, Time: later, Rcpt: "nessuno@pec-b.example.test", Errore: daticert.NoDest, Cause: "5.1.1 - Provider B S.p.A. - casella inesistente"},
	} {
		e.Tx = f.tx
		m, err := f.b.Render(e)
		if err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		p := parseOK(t, m.Bytes())
		if p.Kind != e.Kind || m.Kind != e.Kind {
			t.Fatalf("evidence %s rendered as %s (%s)", e.Kind, p.Kind, m.Kind)
		}
		if p.Daticert != nil && p.Daticert.Consegna != e.Rcpt && e.Rcpt != "" {
			t.Errorf("%s: consegna %q, want %q", e.Kind, p.Daticert.Consegna, e.Rcpt)
		}
		name := string(e.Kind)
		if e.Final {
			name += "-24h"
		}
		conformance.Check(t, "evidence-"+name, m.Bytes(), testpki.PEM(f.pki.Root.Cert))
	}
	if _, err := f.b.Render(build.Evidence{Kind: kind.PostaCertificata, Time: at, Tx: f.tx}); err == nil || !strings.Contains(err.Error(), "not a notice kind") {
		t.Errorf("a transport envelope as evidence: %v, want an error", err)
	}
	if _, err := f.b.Render(build.Evidence{Kind: kind.Accettazione, Time: at}); err == nil {
		t.Error("evidence without transaction data rendered")
	}
}

// recording is a second renderer: it keeps the evidence it was given.
type recording struct{ got []build.Evidence }

func (r *recording) Render(e build.Evidence) (*build.Message, error) {
	r.got = append(r.got, e)
	return &build.Message{Kind: e.Kind, ID: "rem-1@pec-a.example.test"}, nil
}

// Another form of evidence plugs in without touching the rules: the
// provider's Renderer gets the evidence instead of the PEC form.
func TestRenderWithAnotherRenderer(t *testing.T) {
	f := newFixture(t)
	r := &recording{}
	f.a.Renderer = r
	m, err := f.a.Render(build.Evidence{Kind: kind.Accettazione, Time: at, Tx: f.tx})
	if err != nil || m.ID != "rem-1@pec-a.example.test" || len(r.got) != 1 || r.got[0].Tx != f.tx {
		t.Fatalf("%v %+v %+v", err, m, r.got)
	}
}
