package build_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
)

// FuzzHeaderLines: from an original with any From, To, Cc, Subject,
// Message-ID and Reply-To the parser accepts (each a field of at most 998
// octets per line, as the access point requires), the transport envelope
// and the notices we sign have no header line over 998 octets and no bare
// CR or LF (RFC 5322 §2.1.1, §2.2).
func FuzzHeaderLines(f *testing.F) {
	f.Add("Mario <mario.rossi@pec-a.example.test>", "luigi.verdi@pec-b.example.test", "", "Fattura", "<m1@client.example.test>", "")
	f.Add("mario.rossi@pec-a.example.test", strings.Repeat("luigi.verdi@pec-b.example.test, ", 30), "carla.neri@pec-b.example.test",
		strings.Repeat("è", 300), "<"+strings.Repeat("x", 960)+"@client.example.test>", "Ufficio <ufficio@pec-a.example.test>")
	f.Add("\"Rossi, Mario\" <mario.rossi@pec-a.example.test>", "luigi.verdi@pec-b.example.test", "", "=?utf-8?q?caff=C3=A8?= "+strings.Repeat("x", 900), "m2@client", "")
	fx := newFixture(f)
	f.Fuzz(func(t *testing.T, from, to, cc, subject, msgID, replyTo string) {
		var h strings.Builder
		for _, fl := range [][2]string{{"From", from}, {"To", to}, {"Cc", cc}, {"Subject", subject}, {"Message-ID", msgID}, {"Reply-To", replyTo}} {
			if fl[1] == "" {
				continue
			}
			if strings.ContainsAny(fl[1], "\r\n") || len(fl[0])+2+len(fl[1]) > 998 {
				return // not a field the access point lets through
			}
			h.WriteString(fl[0] + ": " + fl[1] + "\r\n")
		}
		o, err := build.ParseOriginal([]byte(h.String() + "Date: Mon, 23 Nov 2026 16:04:00 +0100\r\n\r\nciao\r\n"))
		if err != nil || len(o.From) == 0 || len(o.MsgID) > build.MaxReferencedMessageID {
			return // the access point refuses these (point.Access formal checks)
		}
		tx := o.Tx("pec1@pec-a.example.test", o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
		if len(tx.Destinatari) == 0 {
			return
		}
		var msgs []*build.Message
		add := func(m *build.Message, err error) {
			if err != nil {
				t.Fatalf("building: %v", err)
			}
			msgs = append(msgs, m)
		}
		add(fx.a.TransportEnvelope(at, tx, o, []string{tx.Destinatari[0].Addr}))
		add(fx.a.Accettazione(at, tx))
		add(fx.b.AvvenutaConsegna(at, tx, tx.Destinatari[0].Addr, true, nil))
		add(fx.b.ErroreConsegna(at, tx, tx.Destinatari[0].Addr, daticert.NoDest, "5.1.1"))
		for _, m := range msgs {
			head, _, _ := bytes.Cut(m.Bytes(), []byte("\r\n\r\n"))
			for _, line := range bytes.Split(head, []byte("\r\n")) {
				if len(line) > 998 {
					t.Fatalf("%s: header line of %d octets: %.80q", m.Kind, len(line), line)
				}
				if bytes.ContainsAny(line, "\r\n") {
					t.Fatalf("%s: bare CR or LF in %q", m.Kind, line)
				}
			}
		}
	})
}
