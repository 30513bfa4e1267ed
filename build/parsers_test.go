package build_test

// Independent parsers read what we emit: java-pec-parser (Jakarta Mail and
// a DOM/XPath read of daticert.xml), pagopa's pn-ec (JAXB, then its own
// mapping of provider quirks), pec_ruby, and every tool built on Python's
// email package. The tests in this file pin, on the bytes, what they depend
// on, so that no change to the builders breaks them unnoticed. They read
// the MIME tree with the standard library and daticert.xml with raw XML
// tokens: no code is shared with the packages parse and daticert.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
)

// originalUTF8 is a second transaction's original: an RFC 2047 UTF-8
// Subject holding a character outside ISO-8859-1 (so the human text goes
// in UTF-8), 8-bit bodies (so postacert.eml is 8bit), a named attachment
// (so the breve receipt has a .hash part) and no Message-ID (so daticert
// has no msgid).
const originalUTF8 = "Return-Path: <mario.rossi@pec-a.example.test>\r\n" +
	"From: Mario Rossi <mario.rossi@pec-a.example.test>\r\n" +
	"To: luigi.verdi@pec-b.example.test, paolo@mail.example.org\r\n" +
	"Cc: carla.neri@pec-b.example.test\r\n" +
	"Subject: =?UTF-8?Q?Fattura_n._13_da_1.200_=E2=82=AC,_perch=C3=A9_s=C3=AC?=\r\n" +
	"Date: Mon, 23 Nov 2026 16:04:00 +0100\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b2\"\r\n" +
	"\r\n" +
	"--b2\r\n" +
	"Content-Type: text/plain; charset=\"utf-8\"\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	"Buongiorno, in allegato la nota da 1.200 €, perché sì.\r\n" +
	"--b2\r\n" +
	"Content-Type: text/plain; charset=\"utf-8\"; name=\"nota.txt\"\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"Content-Disposition: attachment; filename=\"nota.txt\"\r\n" +
	"\r\n" +
	"Città: Forlì\r\n" +
	"--b2--\r\n"

// The Message-ID of the first transaction's original.
const originalMsgID = "<20261123150400.abc@client.example.test>"

// wireKinds is what every message we emit must show, by name: daticert
// postacert/@tipo and @errore (RFC 6109 §4.4; tipo "" for the anomaly
// envelope, which has no daticert, §3.2.2), and whether it carries the
// original as postacert.eml (the envelopes, §3.1.5 and §3.2.2, and the
// completa and breve delivery receipts, §3.3.2.1–2).
var wireKinds = map[string]struct {
	tipo, errore string
	original     bool
}{
	"posta-certificata":             {"posta-certificata", "nessuno", true},
	"anomalia":                      {"", "", true},
	"anomalia-senza-message-id":     {"", "", true},
	"accettazione":                  {"accettazione", "nessuno", false},
	"non-accettazione":              {"non-accettazione", "altro", false},
	"non-accettazione-virus":        {"non-accettazione", "virus", false},
	"preavviso-12h":                 {"preavviso-errore-consegna", "altro", false},
	"preavviso-24h":                 {"preavviso-errore-consegna", "altro", false},
	"presa-in-carico":               {"presa-in-carico", "nessuno", false},
	"rilevazione-virus":             {"rilevazione-virus", "virus", false},
	"errore-consegna-virus":         {"errore-consegna", "virus", false},
	"avvenuta-consegna-completa":    {"avvenuta-consegna", "nessuno", true},
	"avvenuta-consegna-breve":       {"avvenuta-consegna", "nessuno", true},
	"avvenuta-consegna-sintetica":   {"avvenuta-consegna", "nessuno", false},
	"errore-consegna":               {"errore-consegna", "no-dest", false},
	"errore-consegna-no-dominio":    {"errore-consegna", "no-dominio", false},
	"errore-consegna-casella-piena": {"errore-consegna", "altro", false},
}

// wireDest is destinatari/@tipo of each recipient of both transactions.
var wireDest = map[string]string{
	"luigi.verdi@pec-b.example.test": "certificato",
	"paolo@mail.example.org":         "esterno",
	"carla.neri@pec-b.example.test":  "certificato",
}

// emitted is one built message with what its daticert must say.
type emitted struct {
	name  string // key of wireKinds
	raw   []byte
	msgid string // the original's Message-ID with angle brackets; "" when it had none
}

// every builds every kind the project emits for two transactions, the
// golden one and the UTF-8 one without Message-ID, each directly, as the
// other provider builds them from what it received, and as the timers
// build them from stored data. Names are "<transaction>[-path]/<kind>".
func every(t *testing.T) map[string]emitted {
	t.Helper()
	f := newFixture(t)
	out := map[string]emitted{}
	for _, x := range []struct {
		tx, original, msgid string
	}{{"golden", original, originalMsgID}, {"utf8", originalUTF8, ""}} {
		g := withOriginal(t, f, x.original)
		msgs := g.all(t)
		later := at.Add(2 * time.Second)
		add := func(name string, m *build.Message, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s/%s: %v", x.tx, name, err)
			}
			msgs[name] = m
		}
		// the other non-delivery causes of the delivery point (README)
		m, err := g.b.ErroreConsegna(later, g.tx, "luigi.verdi@pec-b.example.test", daticert.Altro, "5.2.2 - Provider B S.p.A. - casella piena")
		add("errore-consegna-casella-piena", m, err)
		m, err = g.b.ErroreConsegna(later, g.tx, "paolo@mail.example.org", daticert.NoDominio, "5.1.2 - Provider B S.p.A. - dominio non gestito")
		add("errore-consegna-no-dominio", m, err)
		received, err := build.ParseOriginal([]byte("From: someone@mail.example.org\r\nTo: luigi.verdi@pec-b.example.test\r\nSubject: senza identificativo\r\n\r\nposta ordinaria\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		m, err = g.b.Anomalia(later, received, "someone@mail.example.org", []string{"luigi.verdi@pec-b.example.test"}, "messaggio non di posta certificata")
		add("anomalia-senza-message-id", m, err)
		for name, m := range msgs {
			out[x.tx+"/"+name] = emitted{name: name, raw: m.Bytes(), msgid: x.msgid}
		}

		// In production the recipient's provider builds its notices from
		// the daticert of the envelope as received (filter, lmtp), and the
		// sender's provider its virus non-delivery notice from the daticert
		// of the virus notice as received: the same kinds through that path.
		env := parseOK(t, g.envelope.Bytes())
		rx := build.TxFromDaticert(env.Daticert, "")
		later = at.Add(3 * time.Second)
		recv := map[string]*build.Message{}
		for _, c := range []struct {
			name  string
			build func() (*build.Message, error)
		}{
			{"presa-in-carico", func() (*build.Message, error) {
				return g.b.PresaInCarico(later, rx, "posta-certificata@pec-a.example.test", []string{"luigi.verdi@pec-b.example.test", "carla.neri@pec-b.example.test"})
			}},
			{"rilevazione-virus", func() (*build.Message, error) {
				return g.b.RilevazioneVirus(later, rx, "posta-certificata@pec-a.example.test", "luigi.verdi@pec-b.example.test", "Test.EICAR.NDB.UNOFFICIAL")
			}},
			{"avvenuta-consegna-completa", func() (*build.Message, error) {
				return g.b.AvvenutaConsegna(later, rx, "luigi.verdi@pec-b.example.test", true, env.Original)
			}},
			{"avvenuta-consegna-breve", func() (*build.Message, error) {
				breve := *rx
				breve.Ricevuta = daticert.Breve
				return g.b.AvvenutaConsegna(later, &breve, "luigi.verdi@pec-b.example.test", true, env.Original)
			}},
			{"avvenuta-consegna-sintetica", func() (*build.Message, error) {
				return g.b.AvvenutaConsegna(later, rx, "carla.neri@pec-b.example.test", false, env.Original)
			}},
			{"errore-consegna", func() (*build.Message, error) {
				return g.b.ErroreConsegna(later, rx, "nessuno@pec-b.example.test", daticert.NoDest, "5.1.1 - Provider B S.p.A. - casella inesistente")
			}},
		} {
			m, err := c.build()
			if err != nil {
				t.Fatalf("%s-received/%s: %v", x.tx, c.name, err)
			}
			recv[c.name] = m
		}
		virus := parseOK(t, recv["rilevazione-virus"].Bytes())
		m, err = g.a.ErroreConsegnaVirus(later.Add(time.Second), build.TxFromDaticert(virus.Daticert, ""), "luigi.verdi@pec-b.example.test", virus.Daticert.ErroreEsteso)
		if err != nil {
			t.Fatalf("%s-received/errore-consegna-virus: %v", x.tx, err)
		}
		recv["errore-consegna-virus"] = m
		for name, m := range recv {
			out[x.tx+"-received/"+name] = emitted{name: name, raw: m.Bytes(), msgid: x.msgid}
		}

		// The timers keep the transaction as JSON (timer.Track) and build
		// the 12 h and 24 h notices from it hours later: the same data
		// through that round trip.
		data, err := json.Marshal(g.tx)
		if err != nil {
			t.Fatal(err)
		}
		var stored build.Tx
		if err := json.Unmarshal(data, &stored); err != nil {
			t.Fatal(err)
		}
		for _, final := range []bool{false, true} {
			name, d := "preavviso-12h", 12*time.Hour
			if final {
				name, d = "preavviso-24h", 23*time.Hour
			}
			m, err := g.a.Preavviso(at.Add(d), &stored, "luigi.verdi@pec-b.example.test", at, final)
			if err != nil {
				t.Fatalf("%s-timer/%s: %v", x.tx, name, err)
			}
			out[x.tx+"-timer/"+name] = emitted{name: name, raw: m.Bytes(), msgid: x.msgid}
		}
	}
	return out
}

// withOriginal returns a copy of f whose transaction is raw's.
func withOriginal(t *testing.T, f *fixture, raw string) *fixture {
	t.Helper()
	g := *f
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	g.orig = o
	g.tx = o.Tx(g.a.NewID(at, g.a.Domain), o.From[0], func(a string) daticert.DestTipo {
		return daticert.DestTipo(wireDest[a])
	})
	g.envelope, err = g.a.TransportEnvelope(at, g.tx, o, []string{"luigi.verdi@pec-b.example.test", "paolo@mail.example.org", "carla.neri@pec-b.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	return &g
}

// TestWhatParsersRelyOn checks every kind of message we emit, built now
// and as kept in testdata/golden, for what independent parsers depend on.
func TestWhatParsersRelyOn(t *testing.T) {
	msgs := every(t)
	built := map[string]bool{}
	preavvisi := 0
	for _, key := range sortedKeys(msgs) {
		e := msgs[key]
		built[e.name] = true
		if _, ok := wireKinds[e.name]; !ok {
			t.Errorf("%s: not in wireKinds: say what it must show on the wire", key)
			continue
		}
		for _, p := range wireProblems(e.raw, e.name, e.msgid) {
			t.Errorf("%s: %s", key, p)
		}
		if wireKinds[e.name].tipo == "preavviso-errore-consegna" {
			preavvisi++
		}
	}
	for name := range wireKinds {
		if !built[name] {
			t.Errorf("%s: in wireKinds but never built", name)
		}
	}
	if preavvisi != 8 { // 12 h and 24 h, two transactions, built directly and as the timers do
		t.Errorf("%d timeout notices checked, want 8", preavvisi)
	}
	// the second transaction still exercises what it is there for
	env, err := readMessage(msgs["utf8/posta-certificata"].raw)
	if err != nil {
		t.Fatal(err)
	}
	if s := env.shape(); s != "multipart/signed[multipart/mixed[multipart/alternative[text/plain text/html] application/xml message/rfc822] application/pkcs7-signature]" {
		t.Fatalf("utf8 envelope shape %s", s)
	}
	mixed := env.parts[0].parts
	if cs := mixed[0].parts[0].params["charset"]; cs != "utf-8" {
		t.Errorf("utf8 envelope: human text in %q, want utf-8 (a character outside ISO-8859-1)", cs)
	}
	if cte := mixed[2].header.Get("Content-Transfer-Encoding"); cte != "8bit" {
		t.Errorf("utf8 envelope: postacert.eml %q, want 8bit", cte)
	}

	// the committed golden messages (the first transaction)
	golden, err := filepath.Glob(filepath.Join("testdata", "golden", "*.eml"))
	if err != nil || len(golden) == 0 {
		t.Fatalf("no golden messages: %v", err)
	}
	for _, file := range golden {
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		if _, ok := wireKinds[name]; !ok {
			t.Errorf("%s: not in wireKinds", file)
			continue
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range wireProblems(raw, name, originalMsgID) {
			t.Errorf("%s: %s", file, p)
		}
	}
}

// wireProblems returns every way raw, a message of kind name (a key of
// wireKinds), differs from what the independent parsers rely on. msgid is
// the original's Message-ID, "" when it had none.
func wireProblems(raw []byte, name, msgid string) []string {
	want := wireKinds[name]
	var probs []string
	bad := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }

	top, err := readMessage(raw)
	if err != nil {
		return []string{err.Error()}
	}
	// RFC 6109 §4.3 and PEC-SPEC §5.1: multipart/signed over multipart/mixed
	if top.mediaType != "multipart/signed" || len(top.parts) != 2 || top.parts[0].mediaType != "multipart/mixed" {
		return []string{fmt.Sprintf("not multipart/signed over multipart/mixed: %s", top.shape())}
	}
	var daticerts, originals []*wirePart
	for _, p := range top.parts[0].parts {
		n, fn := p.params["name"], p.dispParams["filename"]
		if p.mediaType == "application/xml" || strings.EqualFold(n, "daticert.xml") || strings.EqualFold(fn, "daticert.xml") {
			daticerts = append(daticerts, p)
		}
		if p.mediaType == "message/rfc822" || strings.EqualFold(n, "postacert.eml") || strings.EqualFold(fn, "postacert.eml") {
			originals = append(originals, p)
		}
	}

	// The XML part is named exactly daticert.xml, in Content-Type name=
	// and Content-Disposition filename= (RFC 6109 §4.3.3 says
	// certdata.xml, a slip of the English text: the Italian rules and
	// every provider use daticert.xml, and java-pec-parser and pn-ec find
	// the part by that file name).
	switch {
	case want.tipo == "" && len(daticerts) != 0:
		bad("the anomaly envelope carries %d daticert parts, want none (RFC 6109 §3.2.2)", len(daticerts))
	case want.tipo != "" && len(daticerts) != 1:
		bad("%d daticert parts in the signed multipart/mixed, want 1", len(daticerts))
	}
	for _, p := range daticerts {
		probs = append(probs, p.named("application/xml", "daticert.xml")...)
	}

	// postacert.eml is message/rfc822 with both name= and filename=
	// (RFC 6109 §4.3.2): pec_ruby finds the original by the Content-Type
	// name= of IMAP's BODYSTRUCTURE, java-pec-parser only in a part with a
	// Content-Disposition and a file name.
	switch {
	case want.original && len(originals) != 1:
		bad("%d postacert.eml parts, want 1", len(originals))
	case !want.original && len(originals) != 0:
		bad("%d postacert.eml parts, want none", len(originals))
	}
	for _, p := range originals {
		probs = append(probs, p.named("message/rfc822", "postacert.eml")...)
	}

	if want.tipo == "" || len(daticerts) != 1 {
		return probs
	}
	if cte := strings.ToLower(daticerts[0].header.Get("Content-Transfer-Encoding")); cte != "base64" {
		return append(probs, fmt.Sprintf("daticert.xml Content-Transfer-Encoding %q, want base64", cte))
	}
	x, err := base64.StdEncoding.DecodeString(string(daticerts[0].body))
	if err != nil {
		return append(probs, fmt.Sprintf("daticert.xml base64: %v", err))
	}
	return append(probs, daticertProblems(x, want.tipo, want.errore, msgid)...)
}

var (
	msgidRE       = regexp.MustCompile(`<msgid>([^<]*)</msgid>`)
	postacertTag  = regexp.MustCompile(`<postacert\s[^>]*>`)
	erroreAttr    = regexp.MustCompile(`\serrore="(nessuno|no-dest|no-dominio|virus|altro)"`)
	destinatariRE = regexp.MustCompile(`<destinatari(\s[^>]*)?>`)
	tipoDestAttr  = regexp.MustCompile(`\stipo="(certificato|esterno)"`)
)

// daticertProblems checks one daticert.xml as sent: the bytes by regular
// expressions, the content by raw XML tokens (which, like a DOM parser
// without the DTD, apply no attribute defaults).
func daticertProblems(x []byte, tipo, errore, msgid string) []string {
	var probs []string
	bad := func(format string, a ...any) { probs = append(probs, fmt.Sprintf(format, a...)) }

	// errore is written out, never left to the DTD default "nessuno"
	// (RFC 6109 §4.4): java-pec-parser refuses a daticert without it and
	// pn-ec switches on its value, which fails on a missing one.
	if tag := postacertTag.Find(x); tag == nil || !erroreAttr.Match(tag) {
		bad("postacert start tag %q has no literal errore attribute", tag)
	}
	// every destinatari has tipo written out, never the DTD default
	// "certificato": java-pec-parser maps the attribute it reads.
	for _, tag := range destinatariRE.FindAll(x, -1) {
		if !tipoDestAttr.Match(tag) {
			bad("%q has no literal tipo attribute", tag)
		}
	}
	// msgid keeps the angle brackets of the original Message-ID, escaped
	// (PEC-SPEC §5.2; real providers write &lt;…&gt;): pn-ec takes the
	// first and the last character off to get the id it sent.
	ids := msgidRE.FindAllSubmatch(x, -1)
	switch {
	case msgid == "" && len(ids) != 0:
		bad("%d msgid elements for an original without Message-ID, want none", len(ids))
	case msgid != "" && len(ids) != 1:
		bad("%d msgid elements, want 1", len(ids))
	case msgid != "" && (!bytes.HasPrefix(ids[0][1], []byte("&lt;")) || !bytes.HasSuffix(ids[0][1], []byte("&gt;"))):
		bad("msgid %q is not written &lt;…&gt;", ids[0][0])
	}

	doc, err := readDaticert(x)
	if err != nil {
		return append(probs, err.Error())
	}
	if doc.root != "postacert" {
		bad("root element %q, want postacert", doc.root)
	}
	if got, ok := doc.attrs["tipo"]; !ok || got != tipo {
		bad("postacert tipo %q (present %v), want %q", got, ok, tipo)
	}
	if got, ok := doc.attrs["errore"]; !ok || got != errore {
		bad("postacert errore %q (present %v), want %q", got, ok, errore)
	}
	if len(doc.dest) != len(wireDest) {
		bad("%d destinatari, want %d", len(doc.dest), len(wireDest))
	}
	for _, d := range doc.dest {
		if want, ok := wireDest[d.addr]; !ok || d.tipo == nil || *d.tipo != want {
			got := "(absent)"
			if d.tipo != nil {
				got = *d.tipo
			}
			bad("destinatari %q tipo %s, want %q", d.addr, got, want)
		}
	}
	if msgid != "" && (len(doc.text["msgid"]) != 1 || doc.text["msgid"][0] != msgid) {
		bad("msgid %q, want %q", doc.text["msgid"], msgid)
	}
	// The 12 h and 24 h notices (RFC 6109 §3.1.6) have an errore-esteso
	// that never starts with 5.4.1: pn-ec reads a preavviso whose trimmed
	// errore-esteso starts with 5.4.1 as Aruba's final errore-consegna,
	// and it calls trim() on it, so the element is always there.
	if tipo == "preavviso-errore-consegna" {
		ee := doc.text["errore-esteso"]
		if len(ee) != 1 {
			bad("%d errore-esteso elements in a timeout notice, want 1", len(ee))
		} else if s := strings.TrimLeft(ee[0], javaSpace); strings.HasPrefix(s, "5.4.1") {
			bad("timeout notice errore-esteso %q starts with 5.4.1: pn-ec would take it for a final non-delivery", ee[0])
		}
	}
	return probs
}

// javaSpace is what Java's String.trim removes from the start: every
// character up to U+0020 (XML 1.0 allows tab, LF and CR of them).
const javaSpace = "\x00\x01\x02\x03\x04\x05\x06\x07\x08\t\n\x0b\x0c\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "

// datiDoc is what the raw-token reader takes from a daticert.xml.
type datiDoc struct {
	root  string
	attrs map[string]string   // of the root element
	text  map[string][]string // character data of every element, by name
	dest  []struct {
		addr string
		tipo *string
	}
}

func readDaticert(x []byte) (*datiDoc, error) {
	doc := &datiDoc{attrs: map[string]string{}, text: map[string][]string{}}
	dec := xml.NewDecoder(bytes.NewReader(x))
	dec.Strict = true
	var stack []string
	var text strings.Builder
	for {
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("daticert.xml: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				doc.root = tok.Name.Local
				for _, a := range tok.Attr {
					doc.attrs[a.Name.Local] = a.Value
				}
			}
			if tok.Name.Local == "destinatari" {
				doc.dest = append(doc.dest, struct {
					addr string
					tipo *string
				}{})
				for _, a := range tok.Attr {
					if a.Name.Local == "tipo" {
						v := a.Value
						doc.dest[len(doc.dest)-1].tipo = &v
					}
				}
			}
			stack = append(stack, tok.Name.Local)
			text.Reset()
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1] != tok.Name.Local {
				return nil, fmt.Errorf("daticert.xml: unexpected </%s>", tok.Name.Local)
			}
			stack = stack[:len(stack)-1]
			doc.text[tok.Name.Local] = append(doc.text[tok.Name.Local], text.String())
			if tok.Name.Local == "destinatari" {
				doc.dest[len(doc.dest)-1].addr = text.String()
			}
			text.Reset()
		}
	}
	if doc.root == "" {
		return nil, errors.New("daticert.xml: no root element")
	}
	return doc, nil
}

// wirePart is one MIME entity as sent: its header, its body with the
// transfer encoding not undone, and the parts of a multipart.
type wirePart struct {
	header     textproto.MIMEHeader
	mediaType  string
	params     map[string]string
	dispParams map[string]string // nil without Content-Disposition
	body       []byte
	parts      []*wirePart
}

func readMessage(raw []byte) (*wirePart, error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		return nil, err
	}
	return readEntity(textproto.MIMEHeader(m.Header), body)
}

func readEntity(h textproto.MIMEHeader, body []byte) (*wirePart, error) {
	p := &wirePart{header: h, body: body}
	var err error
	p.mediaType, p.params, err = mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("Content-Type %q: %v", h.Get("Content-Type"), err)
	}
	if cd := h.Get("Content-Disposition"); cd != "" {
		if _, p.dispParams, err = mime.ParseMediaType(cd); err != nil {
			return nil, fmt.Errorf("Content-Disposition %q: %v", cd, err)
		}
	}
	if !strings.HasPrefix(p.mediaType, "multipart/") {
		return p, nil
	}
	r := multipart.NewReader(bytes.NewReader(body), p.params["boundary"])
	for {
		part, err := r.NextRawPart() // no quoted-printable decoding
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p.mediaType, err)
		}
		b, err := io.ReadAll(part)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", p.mediaType, err)
		}
		child, err := readEntity(part.Header, b)
		if err != nil {
			return nil, err
		}
		p.parts = append(p.parts, child)
	}
	return p, nil
}

// named checks that p is of type mediaType and is named file both in
// Content-Type name= and in Content-Disposition filename=, byte for byte
// and as plain parameters (RFC 2045 §5.1, RFC 2183 §2.3): no RFC 2231
// encoding, which older parsers do not read.
func (p *wirePart) named(mediaType, file string) []string {
	var probs []string
	if p.mediaType != mediaType {
		probs = append(probs, fmt.Sprintf("%s part is %s, want %s", file, p.mediaType, mediaType))
	}
	if got := p.params["name"]; got != file {
		probs = append(probs, fmt.Sprintf("%s part: Content-Type name=%q, want %q", file, got, file))
	}
	if p.dispParams == nil {
		probs = append(probs, fmt.Sprintf("%s part has no Content-Disposition", file))
	} else if got := p.dispParams["filename"]; got != file {
		probs = append(probs, fmt.Sprintf("%s part: Content-Disposition filename=%q, want %q", file, got, file))
	}
	for _, f := range []string{"Content-Type", "Content-Disposition"} {
		if strings.Contains(p.header.Get(f), "*=") {
			probs = append(probs, fmt.Sprintf("%s part: %s %q uses RFC 2231 parameters", file, f, p.header.Get(f)))
		}
	}
	return probs
}

func (p *wirePart) shape() string {
	if len(p.parts) == 0 {
		return p.mediaType
	}
	var s []string
	for _, c := range p.parts {
		s = append(s, c.shape())
	}
	return p.mediaType + "[" + strings.Join(s, " ") + "]"
}

// TestWireChecksCatch breaks each pinned property in a built message and
// expects wireProblems to name it: a check that cannot fail pins nothing.
func TestWireChecksCatch(t *testing.T) {
	msgs := every(t)
	for _, c := range []struct {
		name, msg string
		mutate    func(raw []byte) []byte
		want      string // in one of the problems
	}{
		{"errore left to the DTD default", "golden/accettazione",
			xmlEdit(` errore="nessuno"`, ``), "no literal errore"},
		{"destinatari tipo left to the DTD default", "golden/accettazione",
			xmlEdit(`<destinatari tipo="certificato">`, `<destinatari>`), "no literal tipo"},
		{"destinatari tipo wrong", "golden/accettazione",
			xmlEdit(`<destinatari tipo="esterno">`, `<destinatari tipo="certificato">`), `want "esterno"`},
		{"msgid without brackets", "golden/avvenuta-consegna-completa",
			xmlEdit(`<msgid>&lt;20261123150400.abc@client.example.test&gt;</msgid>`, `<msgid>20261123150400.abc@client.example.test</msgid>`), "not written &lt;"},
		{"msgid in CDATA", "golden/accettazione",
			xmlEdit(`<msgid>&lt;20261123150400.abc@client.example.test&gt;</msgid>`, `<msgid><![CDATA[<20261123150400.abc@client.example.test>]]></msgid>`), "0 msgid elements"},
		{"msgid missing", "golden/errore-consegna",
			xmlEdit(`<msgid>&lt;20261123150400.abc@client.example.test&gt;</msgid>`, ``), "0 msgid elements"},
		{"12 h notice coded 5.4.1", "golden/preavviso-12h",
			xmlEdit(`<errore-esteso>mancata`, `<errore-esteso>5.4.1 - mancata`), "starts with 5.4.1"},
		{"24 h notice coded 5.4.1 after blanks", "utf8/preavviso-24h",
			xmlEdit(`<errore-esteso>mancata`, "<errore-esteso>\r\n  5.4.1 mancata"), "starts with 5.4.1"},
		{"timeout notice without errore-esteso", "golden/preavviso-24h",
			xmlEdit(`    <errore-esteso>mancata consegna entro 24 ore</errore-esteso>`+"\r\n", ``), "0 errore-esteso"},
		{"daticert renamed", "golden/presa-in-carico",
			textEdit(`name="daticert.xml"`, `name="DatiCert.xml"`), `name="DatiCert.xml"`},
		{"daticert without filename", "golden/rilevazione-virus",
			textEdit(`inline; filename="daticert.xml"`, `inline`), `filename=""`},
		{"daticert without Content-Disposition", "utf8/accettazione",
			textEdit(`Content-Disposition: inline; filename="daticert.xml"`+"\r\n", ``), "no Content-Disposition"},
		{"daticert name in RFC 2231 form", "golden/accettazione",
			textEdit(`name="daticert.xml"`, `name*=utf-8''daticert.xml`), "RFC 2231"},
		{"postacert without name", "golden/avvenuta-consegna-completa",
			textEdit(`message/rfc822; name="postacert.eml"`, `message/rfc822`), `name=""`},
		{"postacert without filename", "utf8/posta-certificata",
			textEdit(`inline; filename="postacert.eml"`, `inline`), `filename=""`},
		{"postacert without filename in the anomaly envelope", "golden/anomalia",
			textEdit(`inline; filename="postacert.eml"`, `attachment`), `filename=""`},
		{"breve receipt without the original", "golden/avvenuta-consegna-breve",
			func(raw []byte) []byte {
				raw = textEdit(`message/rfc822; name="postacert.eml"`, `text/plain; name="nota.txt"`)(raw)
				return textEdit(`filename="postacert.eml"`, `filename="nota.txt"`)(raw)
			}, "0 postacert.eml parts"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, ok := msgs[c.msg]
			if !ok {
				t.Fatalf("no message %s", c.msg)
			}
			if p := wireProblems(e.raw, e.name, e.msgid); len(p) != 0 {
				t.Fatalf("unchanged message already fails: %q", p)
			}
			broken := c.mutate(e.raw)
			if bytes.Equal(broken, e.raw) {
				t.Fatal("the edit changed nothing")
			}
			probs := wireProblems(broken, e.name, e.msgid)
			for _, p := range probs {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Fatalf("no problem names %q; got %q", c.want, probs)
		})
	}
}

// textEdit replaces old by new once in the message's bytes.
func textEdit(old, new string) func([]byte) []byte {
	return func(raw []byte) []byte { return bytes.Replace(raw, []byte(old), []byte(new), 1) }
}

// xmlEdit replaces old by new once in the decoded daticert.xml and writes
// it back in base64.
func xmlEdit(old, new string) func([]byte) []byte {
	return func(raw []byte) []byte {
		start := []byte("filename=\"daticert.xml\"\r\n\r\n")
		i := bytes.Index(raw, start)
		if i < 0 {
			return raw
		}
		i += len(start)
		n := bytes.Index(raw[i:], []byte("\r\n--"))
		x, err := base64.StdEncoding.DecodeString(string(raw[i : i+n]))
		if err != nil {
			return raw
		}
		x = bytes.Replace(x, []byte(old), []byte(new), 1)
		enc := base64.StdEncoding.EncodeToString(x)
		var b bytes.Buffer
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc)
		return append(append(append([]byte{}, raw[:i]...), b.Bytes()...), raw[i+n:]...)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
