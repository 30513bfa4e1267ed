package build_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current builders")

// The transaction instant of every golden message: 23/11/2026 16:04:05 (+0100).
var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const original = "Return-Path: <mario.rossi@pec-a.example.test>\r\n" +
	"From: Mario Rossi <mario.rossi@pec-a.example.test>\r\n" +
	"To: luigi.verdi@pec-b.example.test, paolo@mail.example.org\r\n" +
	"Cc: carla.neri@pec-b.example.test\r\n" +
	"Subject: Fattura n. 12 del 2026\r\n" +
	"Message-ID: <20261123150400.abc@client.example.test>\r\n" +
	"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\n" +
	"X-TipoRicevuta: completa\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=\"iso-8859-1\"\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"In allegato la fattura. Cordiali saluti, perch=E9 s=EC.\r\n" +
	"--b1\r\n" +
	"Content-Type: application/pdf; name=\"fattura.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"fattura.pdf\"\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n" +
	"--b1--\r\n"

type fixture struct {
	pki      *testpki.PKI
	a, b     *build.Provider
	orig     *build.Original
	tx       *build.Tx
	envelope *build.Message
}

func newFixture(t testing.TB) *fixture {
	pki := testpki.New("pec-a.example.test", "pec-b.example.test")
	f := &fixture{pki: pki}
	n := 0
	ids := func(t time.Time, domain string) string {
		n++
		return fmt.Sprintf("pec%s%04d@%s", t.UTC().Format("20060102150405"), n, domain)
	}
	for _, p := range []struct {
		dst          **build.Provider
		name, domain string
	}{{&f.a, "Provider A S.p.A.", "pec-a.example.test"}, {&f.b, "Provider B S.p.A.", "pec-b.example.test"}} {
		id := pki.Issue(p.name, "posta-certificata@"+p.domain, time.Time{}, time.Time{}, false)
		*p.dst = &build.Provider{Name: p.name, Domain: p.domain, NewID: ids,
			Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}
	}
	o, err := build.ParseOriginal([]byte(original))
	if err != nil {
		t.Fatal(err)
	}
	f.orig = o
	classify := func(a string) daticert.DestTipo {
		if strings.HasSuffix(a, "@pec-b.example.test") || strings.HasSuffix(a, "@pec-a.example.test") {
			return daticert.Certificato
		}
		return daticert.Esterno
	}
	f.tx = o.Tx(f.a.NewID(at, f.a.Domain), o.From[0], classify)
	f.envelope, err = f.a.TransportEnvelope(at, f.tx, o, []string{"luigi.verdi@pec-b.example.test", "paolo@mail.example.org", "carla.neri@pec-b.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// all builds one message of every kind, and the delivery receipt forms.
func (f *fixture) all(t testing.TB) map[string]*build.Message {
	out := map[string]*build.Message{"posta-certificata": f.envelope}
	add := func(name string, m *build.Message, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = m
	}
	a, b, tx := f.a, f.b, f.tx
	env := parseOK(t, f.envelope.Bytes())
	later := at.Add(2 * time.Second)
	m, err := a.Accettazione(at, tx)
	add("accettazione", m, err)
	m, err = a.NonAccettazione(at, tx, "il destinatario in Ccn (Bcc) non è ammesso")
	add("non-accettazione", m, err)
	m, err = a.NonAccettazioneVirus(at, tx, "Test.EICAR.NDB.UNOFFICIAL")
	add("non-accettazione-virus", m, err)
	m, err = a.Preavviso(at.Add(12*time.Hour), tx, "luigi.verdi@pec-b.example.test", at, false)
	add("preavviso-12h", m, err)
	m, err = a.Preavviso(at.Add(23*time.Hour), tx, "luigi.verdi@pec-b.example.test", at, true)
	add("preavviso-24h", m, err)
	m, err = b.PresaInCarico(later, tx, "posta-certificata@pec-a.example.test", []string{"luigi.verdi@pec-b.example.test", "carla.neri@pec-b.example.test"})
	add("presa-in-carico", m, err)
	received, _ := build.ParseOriginal([]byte("From: someone@mail.example.org\r\nTo: luigi.verdi@pec-b.example.test\r\nSubject: ciao\r\nMessage-ID: <x1@mail.example.org>\r\n\r\nposta ordinaria\r\n"))
	m, err = b.Anomalia(later, received, "someone@mail.example.org", []string{"luigi.verdi@pec-b.example.test"}, "messaggio non di posta certificata")
	add("anomalia", m, err)
	m, err = b.RilevazioneVirus(later, tx, "posta-certificata@pec-a.example.test", "luigi.verdi@pec-b.example.test", "Test.EICAR.NDB.UNOFFICIAL")
	add("rilevazione-virus", m, err)
	m, err = a.ErroreConsegnaVirus(later.Add(time.Second), tx, "luigi.verdi@pec-b.example.test", "virus: Test.EICAR.NDB.UNOFFICIAL")
	add("errore-consegna-virus", m, err)
	m, err = b.AvvenutaConsegna(later, tx, "luigi.verdi@pec-b.example.test", true, env.Original)
	add("avvenuta-consegna-completa", m, err)
	breve := *tx
	breve.Ricevuta = daticert.Breve
	m, err = b.AvvenutaConsegna(later, &breve, "luigi.verdi@pec-b.example.test", true, env.Original)
	add("avvenuta-consegna-breve", m, err)
	m, err = b.AvvenutaConsegna(later, tx, "carla.neri@pec-b.example.test", false, env.Original)
	add("avvenuta-consegna-sintetica", m, err)
	m, err = b.ErroreConsegna(later, tx, "nessuno@pec-b.example.test", daticert.NoDest, "5.1.1 - Provider B S.p.A. - casella inesistente")
	add("errore-consegna", m, err)
	return out
}

func parseOK(t testing.TB, raw []byte) *parse.Message {
	t.Helper()
	m, err := parse.Parse(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

func TestBuildParseVerifyRoundTrip(t *testing.T) {
	f := newFixture(t)
	root := testpki.PEM(f.pki.Root.Cert)
	for name, m := range f.all(t) {
		t.Run(name, func(t *testing.T) {
			raw := m.Bytes()
			if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatal("bare LF in emitted message")
			}
			p, err := parse.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != m.Kind {
				t.Fatalf("kind %s, built %s", p.Kind, m.Kind)
			}
			if m.Kind == kind.Anomalia {
				if p.Daticert != nil || p.Original == nil {
					t.Fatal("anomaly envelope must carry the original and no daticert")
				}
			} else if !reflect.DeepEqual(p.Daticert, m.Daticert) {
				t.Fatalf("daticert round trip:\n got %+v\nwant %+v", p.Daticert, m.Daticert)
			}
			r := verify.Message(raw, f.pki.Pool())
			if !r.Valid() {
				t.Fatalf("verify: %v", r.Err)
			}
			if !r.Signature.SigningTime.Equal(m.Time) {
				t.Fatalf("signing time %v, want the transaction instant %v", r.Signature.SigningTime, m.Time)
			}
			if got := m.Get("Date"); got != m.Time.In(build.Rome).Format("Mon, 02 Jan 2006 15:04:05 -0700") {
				t.Fatalf("Date %q is not the transaction instant", got)
			}
			conformance.Check(t, name, raw, root)

			// one flipped byte anywhere in the signed part: invalid
			i := bytes.Index(raw, p.Content) + len(p.Content)/2
			for raw[i] == '\r' || raw[i] == '\n' {
				i++
			}
			bad := bytes.Clone(raw)
			bad[i] ^= 0x20
			if r := verify.Message(bad, f.pki.Pool()); r.Valid() {
				t.Fatalf("byte %d changed and the message still verifies", i)
			}
		})
	}
}

// Golden files: the signed entity of each kind, with boundaries normalised,
// must not change unnoticed. `go test ./build -update` rewrites them with a
// fresh test PKI; testdata/golden/root.pem is the root that verifies them.
func TestGolden(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join("testdata", "golden")
	msgs := f.all(t)
	if *update {
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "root.pem"), testpki.PEM(f.pki.Root.Cert), 0o644)
		for name, m := range msgs {
			os.WriteFile(filepath.Join(dir, name+".eml"), m.Bytes(), 0o644)
		}
	}
	var files []string
	for name, m := range msgs {
		file := filepath.Join(dir, name+".eml")
		files = append(files, file)
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%v (run go test ./build -update)", err)
		}
		g := parseOK(t, want)
		got := parseOK(t, m.Bytes())
		if normalise(got.Content) != normalise(g.Content) {
			t.Errorf("%s: signed content differs from %s:\n%s", name, file, diff(normalise(g.Content), normalise(got.Content)))
		}
	}
	// the committed files verify against the committed root and pass pec-lint
	root, _ := filepath.Abs(filepath.Join(dir, "root.pem"))
	for _, file := range files {
		conformance.OpenSSL(t, file, root)
	}
	conformance.Lint(t, root, files...)
}

var boundaryRE = regexp.MustCompile(`----=_PEC_([a-z]+)_[0-9a-f]{24}`)

func normalise(b []byte) string { return boundaryRE.ReplaceAllString(string(b), "----=_PEC_${1}_X") }

func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n golden: %q\n    got: %q", i+1, al[i], bl[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d lines", len(al), len(bl))
}
