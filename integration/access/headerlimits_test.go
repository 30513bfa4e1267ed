package access

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
)

// foldedField is a header field of about n octets, folded into lines of
// 78 octets.
func foldedField(name string, n int) string {
	var b strings.Builder
	b.WriteString(name + ":")
	for b.Len() < n {
		b.WriteString(" " + strings.Repeat("a", min(75, max(1, n-b.Len()-3))) + "\r\n")
	}
	return b.String()
}

func manyFields(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-Filler-%d: x\r\n", i)
	}
	return b.String()
}

// Through real Postfix: a submission with 10 000 header fields (which
// Postfix's cleanup cannot rewrite into the envelope: "too many reverse
// jump records") and one with a 219 KB field (which cleanup cuts to
// 60 000 octets before the milter sees it) are refused at SMTP with their
// own reason and get a non-acceptance notice, and nothing is accepted,
// logged as sent or tracked. Inputs at the limits' scale go through whole.
func TestHeaderLimits(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	sink := pectest.StartSink(t)
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}, SinkAll: sink})
	w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", IndexOnly: true})
	w.Start()
	root := testpki.PEM(w.PKI.Root.Cert)

	refusals := []struct {
		name, extra, subj, want string
	}{
		{"10000 fields", manyFields(10000 - 7), "ten thousand fields", "intestazione con troppi campi: 10000, superiore al limite di 1000"},
		{"219 KB field", foldedField("X-Big", 219*1024), "huge field", "il campo X-Big dell'intestazione supera il limite di 50000 byte"},
	}
	for _, r := range refusals {
		t.Run(r.name, func(t *testing.T) {
			raw := []byte(r.extra + string(message(mario, luigi, "", "", r.subj, "x"))) // message adds 7 fields
			err := a.Send(mario, []string{luigi}, raw)
			if code(err) != 550 || !strings.Contains(err.Error(), r.want) {
				t.Fatalf("submission answered %v, want 550 with %q", err, r.want)
			}
			sink.Wait(t, 1, 30*time.Second, subjectHas(r.subj))
			time.Sleep(2 * time.Second) // an envelope or acceptance would be here by now
			got := sink.Wait(t, 1, time.Second, subjectHas(r.subj))
			if len(got) != 1 || kindOf(got[0]) != kind.NonAccettazione {
				t.Fatalf("want only a non-acceptance notice, got %d messages (first %s)", len(got), kindOf(got[0]))
			}
			p, _ := parse.Parse(got[0].Data)
			if !strings.Contains(p.Daticert.ErroreEsteso, r.want) {
				t.Errorf("errore-esteso %q, want %q", p.Daticert.ErroreEsteso, r.want)
			}
			conformance.Check(t, r.name, got[0].Data, root)
			ev, err := a.Store().Events(store.Query{Point: "access"})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ev {
				if e.Subject == r.subj && e.Type != "non-accettazione" {
					t.Errorf("log row %s for a refused message", e.Type)
				}
			}
		})
	}
	if l := a.Postfix.Log(); strings.Contains(l, "reverse jump") || strings.Contains(l, "panic") {
		t.Errorf("Postfix failed on a refused message:\n%s", l)
	}

	// what the limits let through arrives whole: 1000 fields, and a
	// 45 000-octet field (Postfix cuts from 60 000)
	t.Run("at scale", func(t *testing.T) {
		big := foldedField("X-Big", 45000)
		raw := []byte(manyFields(1000-8) + big + string(message(mario, luigi, "", "", "large but whole", "x")))
		if err := a.Send(mario, []string{luigi}, raw); err != nil {
			t.Fatalf("submission refused: %v", err)
		}
		var env *pectest.SinkMessage
		for _, m := range sink.Wait(t, 2, 30*time.Second, subjectHas("large but whole")) {
			if kindOf(m) == kind.PostaCertificata {
				env = &m
			}
		}
		if env == nil {
			t.Fatal("no transport envelope")
		}
		p, err := parse.Parse(env.Data)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(p.Original, []byte(big)) || !bytes.Contains(p.Original, []byte("X-Filler-991: x\r\n")) {
			t.Error("postacert.eml does not carry the 45 000-octet field and the 1000 fields whole")
		}
	})
}
