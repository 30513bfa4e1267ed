package point_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
)

// bigField is a header field named name of exactly n octets on the wire
// (final CRLF included), folded into lines of at most 78 octets.
func bigField(t testing.TB, name string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(name + ":")
	for rem := n - b.Len(); rem > 0; rem = n - b.Len() {
		l := min(75, rem-3) // " " + l octets + CRLF
		if left := rem - 3 - l; left > 0 && left < 4 {
			l -= 4 // leave room for one more line of at least one octet
		}
		if l < 1 {
			t.Fatalf("cannot make a %d-octet field", n)
		}
		b.WriteString(" " + strings.Repeat("a", l) + "\r\n")
	}
	if b.Len() != n {
		t.Fatalf("made a field of %d octets, want %d", b.Len(), n)
	}
	return b.String()
}

// fillers is n header fields of a few octets each.
func fillers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-Filler-%d: x\r\n", i)
	}
	return b.String()
}

// Inputs Postfix cannot carry or rewrite intact — too many header fields,
// a field it would cut — are refused before anything is signed: an SMTP
// reject and a non-acceptance notice naming the reason, no envelope, no
// acceptance (RFC 6109 §3.1.2). At the limit they pass.
func TestAccessHeaderLimits(t *testing.T) {
	e := newEnv(t)
	root := testpki.PEM(e.pki.Root.Cert)
	ev := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}
	base := string(msg(mario, luigi, "", "")) // 5 fields
	const baseFields = 5
	cases := []struct {
		name          string
		fields, size  int // the Access limits; 0: defaults
		raw           string
		refused       bool
		reason, reply string // in errore-esteso and in the SMTP reply
	}{
		{"10000 fields", 0, 0, fillers(10000-baseFields) + base, true,
			"intestazione con troppi campi: 10000, superiore al limite di 1000", "troppi campi"},
		{"219 KB field", 0, 0, bigField(t, "X-Big", 219*1024) + base, true,
			"il campo X-Big dell'intestazione supera il limite di 50000 byte", "X-Big"},
		{"default field count", 0, 0, fillers(point.DefaultMaxHeaderFields-baseFields) + base, false, "", ""},
		{"one field over the default", 0, 0, fillers(point.DefaultMaxHeaderFields-baseFields+1) + base, true,
			"troppi campi: 1001, superiore al limite di 1000", "troppi campi"},
		{"field of the default size", 0, 0, bigField(t, "X-Big", point.DefaultMaxHeaderFieldSize) + base, false, "", ""},
		{"field one octet over the default", 0, 0, bigField(t, "X-Big", point.DefaultMaxHeaderFieldSize+1) + base, true,
			"il campo X-Big dell'intestazione supera il limite di 50000 byte", "X-Big"},
		{"configured count", 20, 0, fillers(16) + base, true, "troppi campi: 21, superiore al limite di 20", "troppi campi"},
		{"configured size", 0, 1000, bigField(t, "Subject-Extra", 1001) + base, true,
			"il campo Subject-Extra dell'intestazione supera il limite di 1000 byte", "Subject-Extra"},
		{"configured size, at the limit", 0, 1000, bigField(t, "Subject-Extra", 1000) + base, false, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := e.access(scanner{})
			a.MaxSizeTimesRcpts = 1 << 30
			a.MaxHeaderFields, a.MaxHeaderFieldSize = c.fields, c.size
			d := a.Check(context.Background(), ev, []byte(c.raw), at)
			if !c.refused {
				if d.Action != point.Accept || d.Replace == nil {
					t.Fatalf("decision %v %q, want accepted", d.Action, d.Reason)
				}
				return
			}
			if d.Action != point.Reject || d.Code != 550 || d.Replace != nil {
				t.Fatalf("decision %v %d %q, want a 550 reject with nothing relayed", d.Action, d.Code, d.Reason)
			}
			if !strings.Contains(d.Text, c.reply) {
				t.Errorf("SMTP reply %q does not name the reason (%q)", d.Text, c.reply)
			}
			if len(d.Txn.Outbox) != 1 || len(d.Txn.Track) != 0 || len(d.Txn.Events) != 1 || d.Txn.Events[0].Type != "non-accettazione" {
				t.Fatalf("txn: %d outgoing, %d timers, events %+v; want only the non-acceptance", len(d.Txn.Outbox), len(d.Txn.Track), d.Txn.Events)
			}
			p, err := parse.Parse(d.Txn.Outbox[0].Data)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != kind.NonAccettazione || !strings.Contains(p.Daticert.ErroreEsteso, c.reason) {
				t.Fatalf("notice %s errore-esteso %q, want the reason %q", p.Kind, p.Daticert.ErroreEsteso, c.reason)
			}
			if d.Txn.Events[0].Error != p.Daticert.ErroreEsteso {
				t.Errorf("log row error %q, notice %q", d.Txn.Events[0].Error, p.Daticert.ErroreEsteso)
			}
			conformance.Check(t, c.name, d.Txn.Outbox[0].Data, root)
		})
	}
}
