package build_test

import (
	"bytes"
	"fmt"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
)

// The anomaly envelope always has a To: the received one, unchanged, or,
// when the message had none (or a blank one), the SMTP recipients it is
// delivered to. Each envelope passes openssl and pec-lint.
func TestAnomaliaTo(t *testing.T) {
	f := newFixture(t)
	root := testpki.PEM(f.pki.Root.Cert)
	const head = "From: someone@mail.example.org\r\nSubject: ciao\r\nMessage-ID: <x2@mail.example.org>\r\n"
	luigi, carla := "luigi.verdi@pec-b.example.test", "carla.neri@pec-b.example.test"
	var many []string
	for i := range 50 {
		many = append(many, fmt.Sprintf("destinatario.con.un.nome.lungo.%02d@pec-b.example.test", i))
	}
	cases := []struct {
		name   string
		header string // between head and the body
		rcpts  []string
		want   []string // the addresses of the envelope's one To field
		raw    string   // when set, the To value must be this, byte for byte
	}{
		{"no To", "", []string{luigi, carla}, []string{luigi, carla}, ""},
		{"no To, Cc kept", "Cc: " + carla + "\r\n", []string{luigi, carla}, []string{luigi, carla}, ""},
		{"blank To", "To: \r\n", []string{luigi}, []string{luigi}, ""},
		{"no To, 50 recipients", "", many, many, ""},
		{"To inherited unchanged", "To: \"Luigi\"\r\n <" + luigi + ">\r\n", []string{luigi, carla}, []string{luigi}, "\"Luigi\"\r\n <" + luigi + ">"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			received, err := build.ParseOriginal([]byte(head + c.header + "\r\nposta ordinaria\r\n"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := f.b.Anomalia(at.Add(2*time.Second), received, "someone@mail.example.org", c.rcpts, "messaggio non di posta certificata")
			if err != nil {
				t.Fatal(err)
			}
			raw := m.Bytes()
			h, _, err := rawmime.Split(raw)
			if err != nil {
				t.Fatal(err)
			}
			tos := h.Values("To")
			if len(tos) != 1 {
				t.Fatalf("%d To fields, want 1", len(tos))
			}
			list, err := mail.ParseAddressList(tos[0])
			if err != nil {
				t.Fatalf("To %q: %v", tos[0], err)
			}
			var got []string
			for _, a := range list {
				got = append(got, a.Address)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("To lists %v, want %v", got, c.want)
			}
			if c.raw != "" && m.Get("To") != c.raw {
				t.Errorf("To %q, want the received value %q unchanged", m.Get("To"), c.raw)
			}
			if cc := h.Get("Cc"); strings.Contains(c.header, "Cc:") && strings.TrimSpace(cc) != carla {
				t.Errorf("Cc %q, want the received one", cc)
			}
			head, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
			for _, l := range bytes.Split(head, []byte("\r\n")) {
				if len(l) > 998 {
					t.Errorf("header line of %d octets (RFC 5322 §2.1.1: at most 998)", len(l))
				}
			}
			conformance.Check(t, "anomalia "+c.name, raw, root)
		})
	}
}
