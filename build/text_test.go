package build_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/parse"
)

func certified(string) daticert.DestTipo { return daticert.Certificato }

// PEC-SPEC §6.6 rule 9: an RFC 2047 Subject stays encoded in the generated
// Subject and is decoded in oggetto and in the human text.
func TestEncodedSubject(t *testing.T) {
	f := newFixture(t)
	raw := strings.Replace(original, "Subject: Fattura n. 12 del 2026", "Subject: =?iso-8859-1?q?Citt=E0_di_Roma?=", 1)
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], certified)
	m, err := f.a.Accettazione(at, tx)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("Subject"); got != "ACCETTAZIONE: =?iso-8859-1?q?Citt=E0_di_Roma?=" {
		t.Fatalf("Subject %q", got)
	}
	if *m.Daticert.Oggetto != "Città di Roma" {
		t.Fatalf("oggetto %q", *m.Daticert.Oggetto)
	}
	if !bytes.Contains(bytes.ReplaceAll(m.Body(), []byte("=\r\n"), nil), []byte("Citt=E0 di Roma")) {
		t.Fatal("human text does not carry the decoded subject (ISO-8859-1 QP)")
	}
	conformance.Check(t, "encoded-subject", m.Bytes(), testpki.PEM(f.pki.Root.Cert))
}

// Characters outside ISO-8859-1 never make generation fail: that text goes
// in UTF-8 (PEC-SPEC §6.6 rule 9).
func TestEuroSign(t *testing.T) {
	f := newFixture(t)
	raw := strings.Replace(original, "Subject: Fattura n. 12 del 2026", "Subject: =?utf-8?q?Fattura_da_100_=E2=82=AC?=", 1)
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], certified)
	for name, fn := range map[string]func() (*build.Message, error){
		"accettazione": func() (*build.Message, error) { return f.a.Accettazione(at, tx) },
		"envelope": func() (*build.Message, error) {
			return f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
		},
		"errore": func() (*build.Message, error) {
			return f.b.ErroreConsegna(at, tx, "x@pec-b.example.test", daticert.NoDest, "5.1.1 - B - 100 €")
		},
	} {
		m, err := fn()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		p, err := parse.Parse(m.Bytes())
		if err != nil || *p.Daticert.Oggetto != "Fattura da 100 €" {
			t.Fatalf("%s: %v oggetto %q", name, err, *p.Daticert.Oggetto)
		}
		if !bytes.Contains(m.Body(), []byte(`charset="utf-8"`)) {
			t.Fatalf("%s: the text with € is not in UTF-8", name)
		}
	}
	// raw 8-bit UTF-8 in the original Subject: encoded in the generated one
	raw8 := strings.Replace(original, "Subject: Fattura n. 12 del 2026", "Subject: Caffè € 2", 1)
	o8, _ := build.ParseOriginal([]byte(raw8))
	m, err := f.a.Accettazione(at, o8.Tx("pec2@pec-a.example.test", o8.From[0], certified))
	if err != nil {
		t.Fatal(err)
	}
	s := m.Get("Subject")
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			t.Fatalf("8-bit Subject %q", s)
		}
	}
	if build.DecodeSubject(s) != "ACCETTAZIONE: Caffè € 2" {
		t.Fatalf("Subject %q decodes to %q", s, build.DecodeSubject(s))
	}
}

// Prefixes stack on replies and are never stripped (PEC-SPEC §6.6 rule 10).
func TestPrefixesStack(t *testing.T) {
	f := newFixture(t)
	raw := strings.Replace(original, "Subject: Fattura n. 12 del 2026", "Subject: POSTA CERTIFICATA: Re: fattura", 1)
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], certified)
	m, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("Subject"); got != "POSTA CERTIFICATA: POSTA CERTIFICATA: Re: fattura" {
		t.Fatalf("Subject %q", got)
	}
	if *m.Daticert.Oggetto != "POSTA CERTIFICATA: Re: fattura" {
		t.Fatalf("oggetto %q", *m.Daticert.Oggetto)
	}
}

// The envelope keeps the original's Received, To, Cc, Reply-To; its own
// Reply-To is the sender only when the original had none (RFC 6109 §3.1.5).
func TestEnvelopeHeaders(t *testing.T) {
	f := newFixture(t)
	raw := "Received: from client (client.example.test [192.0.2.1])\r\n\tby mx; Mon, 23 Nov 2026 16:04:00 +0100\r\nReply-To: ufficio@pec-a.example.test\r\n" + original
	o, _ := build.ParseOriginal([]byte(raw))
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], certified)
	m, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	h, _, _ := rawmime.Split(m.Bytes())
	if len(h.Values("Reply-To")) != 1 || h.Get("Reply-To") != "ufficio@pec-a.example.test" {
		t.Fatalf("Reply-To %v", h.Values("Reply-To"))
	}
	if !strings.HasPrefix(h.Get("Received"), "from client") || h.Get("Cc") != "carla.neri@pec-b.example.test" {
		t.Fatalf("copied fields: Received %q Cc %q", h.Get("Received"), h.Get("Cc"))
	}
	if h.Get("From") != `"Per conto di: mario.rossi@pec-a.example.test" <posta-certificata@pec-a.example.test>` {
		t.Fatalf("From %q", h.Get("From"))
	}
	if *m.Daticert.Oggetto == "" || m.Daticert.Risposte != "ufficio@pec-a.example.test" {
		t.Fatalf("risposte %q", m.Daticert.Risposte)
	}
}

// Values from another provider's daticert reach our header fields and SMTP
// commands: no CR/LF may get through (header injection).
func TestNoHeaderInjectionFromDaticert(t *testing.T) {
	f := newFixture(t)
	subj := "ciao\nBcc: victim@evil.example\nX-Injected: yes"
	d := &daticert.Postacert{Tipo: daticert.RilevazioneVirus, Errore: daticert.Virus, Mittente: "maria@pec-a.example.test\r\nX-Bad: 1",
		Destinatari: []daticert.Destinatario{{Addr: "x@pec-b.example.test"}}, Risposte: "maria@pec-a.example.test", Oggetto: &subj,
		GestoreEmittente: "B", Identificativo: "id1@pec-a.example.test", Msgid: "<m@x>\nX-Evil: 1", Consegna: "x@pec-b.example.test"}
	tx := build.TxFromDaticert(d, "")
	m, err := f.a.ErroreConsegnaVirus(at, tx, "x@pec-b.example.test", "virus")
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := rawmime.Split(m.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"Bcc", "X-Injected", "X-Bad", "X-Evil"} {
		if h.Has(bad) {
			t.Errorf("injected header %s", bad)
		}
	}
	if m.Rcpts[0] != "maria@pec-a.example.testX-Bad: 1" && strings.ContainsAny(m.Rcpts[0], "\r\n") {
		t.Errorf("RCPT %q", m.Rcpts[0])
	}
	// and no control character even inside an encoded-word (strict out)
	if got := build.DecodeSubject(h.Get("Subject")); got != "AVVISO DI MANCATA CONSEGNA PER VIRUS: "+strings.ReplaceAll(subj, "\n", " ") {
		t.Errorf("Subject decodes to %q", got)
	}
}

// A genuine provider's envelope whose Subject and oggetto carry a control
// character (PEC-SPEC §6.7) is read with U+FFFD in oggetto; what we emit
// from it never carries such a character: not in the daticert, not in a
// header field, not even inside an encoded-word.
func TestControlCharactersNeverEmitted(t *testing.T) {
	f := newFixture(t)
	d, err := daticert.Parse([]byte(`<postacert tipo="posta-certificata" errore="nessuno"><intestazione>` +
		`<mittente>mario.rossi@pec-a.example.test</mittente><destinatari tipo="certificato">luigi.verdi@pec-b.example.test</destinatari>` +
		`<risposte>mario.rossi@pec-a.example.test</risposte><oggetto>Fattura&#18; 7` + "\x16" + `</oggetto></intestazione>` +
		`<dati><gestore-emittente>A</gestore-emittente><data zona="+0100"><giorno>23/11/2026</giorno><ora>16:04:05</ora></data>` +
		`<identificativo>id7@pec-a.example.test</identificativo><msgid>&lt;m7@client.example.test&gt;</msgid></dati></postacert>`))
	if err != nil {
		t.Fatal(err)
	}
	if *d.Oggetto != "Fattura\uFFFD 7\uFFFD" || len(d.Repairs) != 2 {
		t.Fatalf("oggetto %q repairs %q", *d.Oggetto, d.Repairs)
	}
	for _, subject := range []string{"Fattura\x12 7\x16", "=?UTF-8?Q?Fattura=12_7=16?=", ""} {
		tx := build.TxFromDaticert(d, subject)
		for name, mk := range map[string]func() (*build.Message, error){
			"presa-in-carico": func() (*build.Message, error) {
				return f.b.PresaInCarico(at, tx, "posta-certificata@pec-a.example.test", []string{"luigi.verdi@pec-b.example.test"})
			},
			"avvenuta-consegna": func() (*build.Message, error) {
				return f.b.AvvenutaConsegna(at, tx, "luigi.verdi@pec-b.example.test", true, []byte("From: mario.rossi@pec-a.example.test\r\nSubject: x\r\n\r\nciao\r\n"))
			},
		} {
			m, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			raw := m.Bytes()
			for i, c := range raw {
				if c < 0x20 && c != '\r' && c != '\n' && c != '\t' {
					t.Fatalf("%s (%q): control byte %#x at %d", name, subject, c, i)
				}
			}
			if s := build.DecodeSubject(m.Get("Subject")); strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 }) {
				t.Fatalf("%s (%q): Subject decodes to %q", name, subject, s)
			}
			x, err := m.Daticert.Marshal()
			if err != nil || bytes.Contains(x, []byte("&#1")) || !bytes.Contains(x, []byte("<oggetto>Fattura\uFFFD 7\uFFFD</oggetto>")) {
				t.Fatalf("%s: daticert %v\n%s", name, err, x)
			}
			conformance.Check(t, name+"-from-control-characters", raw, testpki.PEM(f.pki.Root.Cert))
		}
	}
}

// RFC 5322 §2.1.1: no line of a header field we write is longer than 998
// octets, whatever the original's Subject: a long UTF-8 Subject (encoded
// here into RFC 2047 words, each at most 75 octets) is folded between the
// words, and an original line near the limit is folded at a space once the
// prefix is added. Folding changes nothing for a reader: the unfolded,
// decoded Subject is the prefix plus the original's (PEC-SPEC §6.6 rule 9).
func TestLongSubjectFolded(t *testing.T) {
	f := newFixture(t)
	words := strings.Repeat("parola ", 140) // 980 octets with spaces
	long := strings.Repeat("x", 1000)
	for name, c := range map[string]struct{ subject, decoded string }{
		"utf8":           {strings.Repeat("è", 700), ""},
		"utf8-words":     {strings.Repeat("Città ", 200), ""},
		"ascii-990":      {strings.TrimSpace(words), ""},
		"ascii-unbroken": {strings.Repeat("x", 990), ""},
		// a run too long for a line after an encoded-word: the word is
		// decoded, not carried as text
		"encoded-then-unbroken": {"=?utf-8?q?caff=C3=A8?= " + long, "caffè " + long},
		// a control character (encoded path) and a run too long for a line
		"control-then-unbroken": {"=?utf-8?q?a=01b?= " + long, "a b " + long},
	} {
		subject, decoded := c.subject, c.decoded
		if decoded == "" {
			decoded = strings.TrimSpace(subject)
		}
		t.Run(name, func(t *testing.T) {
			raw := strings.Replace(original, "Subject: Fattura n. 12 del 2026", "Subject: "+subject, 1)
			o, err := build.ParseOriginal([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			tx := o.Tx("pec1@pec-a.example.test", o.From[0], certified)
			acc, err := f.a.Accettazione(at, tx)
			if err != nil {
				t.Fatal(err)
			}
			env, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []*build.Message{acc, env} {
				data := m.Bytes()
				head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
				for _, line := range bytes.Split(head, []byte("\r\n")) {
					if len(line) > 998 {
						t.Fatalf("%s: header line of %d octets: %.60s…", m.Kind, len(line), line)
					}
				}
				if _, err := parse.Parse(data); err != nil {
					t.Fatal(err)
				}
				want := m.Kind.SubjectPrefix() + decoded
				if got := build.DecodeSubject(unfold(m.Get("Subject"))); got != want {
					t.Fatalf("%s: Subject decodes to %q…, want %q…", m.Kind, trunc(got), trunc(want))
				}
				conformance.Check(t, "long-subject-"+name+"-"+string(m.Kind), data, testpki.PEM(f.pki.Root.Cert))
			}
		})
	}
}

func unfold(s string) string { return strings.ReplaceAll(s, "\r\n", "") }

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}
