package parse_test

// One test per real-world variant a tolerant parser meets (PEC-SPEC §6.7).
// Every message is composed and signed at test time with a key from
// internal/testpki, so no key is ever committed; where the signature is
// not the point the variant is a mutation of a signed message outside the
// signed part.

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

// The transaction instant: 23/11/2026 16:04:05 (+0100).
var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

const (
	serviceAddr = "posta-certificata@pec.example.test"
	pecID       = "opec288.20261123160405.01838.310.1.63@pec.example.test" // identificativo with dots
	origMsgID   = "<20261123160400.abc@client.example.org>"
)

var (
	pkiOnce sync.Once
	pki     *testpki.PKI
	prov    *testpki.Provider
)

// provider returns the test PKI and the provider identity, made once per
// test binary (RSA key generation is the slow part).
func provider() (*testpki.PKI, *testpki.Provider) {
	pkiOnce.Do(func() {
		pki = testpki.New("pec.example.test")
		prov = pki.Issue("Test PEC S.p.A.", serviceAddr, time.Time{}, time.Time{}, false)
	})
	return pki, prov
}

func signer(h crypto.Hash, protocol string) *smime.Signer {
	_, p := provider()
	return &smime.Signer{Key: p.Key, Cert: p.Cert, Chain: p.Chain, Hash: h, Protocol: protocol}
}

// envelopeTop is the top-level header of a transport envelope as Aruba-like
// providers write it, with X-Riferimento-Message-ID (PEC-SPEC §6.7).
const envelopeTop = "Return-Path: <mario.rossi@pec.example.test>\r\n" +
	"Received: from smtp.pec.example.test (localhost [127.0.0.1])\r\n\tby smtp.pec.example.test with ESMTP; Mon, 23 Nov 2026 16:04:05  +0100 (CET)\r\n" +
	"Date: Mon, 23 Nov 2026 16:04:05 +0100\r\n" +
	"From: \"Per conto di: mario.rossi@pec.example.test\" <" + serviceAddr + ">\r\n" +
	"To: luigi.verdi@pec.example.test\r\n" +
	"Subject: POSTA CERTIFICATA: Fattura n. 12\r\n" +
	"Message-ID: <" + pecID + ">\r\n" +
	"X-Riferimento-Message-ID: " + origMsgID + "\r\n" +
	"Reply-To: mario.rossi@pec.example.test\r\n" +
	"X-Trasporto: posta-certificata\r\n" +
	"X-TipoRicevuta: completa\r\n"

// receiptTop is the top-level header of an acceptance notice.
const receiptTop = "Date: Mon, 23 Nov 2026 16:04:05 +0100\r\n" +
	"From: " + serviceAddr + "\r\n" +
	"To: mario.rossi@pec.example.test\r\n" +
	"Subject: ACCETTAZIONE: Fattura n. 12\r\n" +
	"Message-ID: <opec288.20261123160405.01838.310.1.64@pec.example.test>\r\n" +
	"X-Ricevuta: accettazione\r\n" +
	"X-Riferimento-Message-ID: " + origMsgID + "\r\n"

// daticertXML is the envelope's daticert as real providers write it: XML
// declaration, one element per line, <ricevuta tipo="completa"/>, msgid
// escaped as &lt;…&gt;.
const daticertXML = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
	"<postacert tipo=\"posta-certificata\" errore=\"nessuno\">\n" +
	"<intestazione>\n" +
	"<mittente>mario.rossi@pec.example.test</mittente>\n" +
	"<destinatari tipo=\"certificato\">luigi.verdi@pec.example.test</destinatari>\n" +
	"<risposte>mario.rossi@pec.example.test</risposte>\n" +
	"<oggetto>Fattura n. 12</oggetto>\n" +
	"</intestazione>\n" +
	"<dati>\n" +
	"<gestore-emittente>TEST PEC S.p.A.</gestore-emittente>\n" +
	"<data zona=\"+0100\">\n" +
	"<giorno>23/11/2026</giorno>\n" +
	"<ora>16:04:05</ora>\n" +
	"</data>\n" +
	"<identificativo>" + pecID + "</identificativo>\n" +
	"<msgid>&lt;20261123160400.abc@client.example.org&gt;</msgid>\n" +
	"<ricevuta tipo=\"completa\"/>\n" +
	"</dati>\n" +
	"</postacert>\n"

// wantDaticert is what daticertXML decodes to.
func wantDaticert() *daticert.Postacert {
	o := "Fattura n. 12"
	return &daticert.Postacert{
		Tipo: daticert.PostaCertificata, Errore: daticert.Nessuno,
		Mittente:         "mario.rossi@pec.example.test",
		Destinatari:      []daticert.Destinatario{{Addr: "luigi.verdi@pec.example.test", Tipo: daticert.Certificato}},
		Risposte:         "mario.rossi@pec.example.test",
		Oggetto:          &o,
		GestoreEmittente: "TEST PEC S.p.A.",
		Zona:             "+0100", Giorno: "23/11/2026", Ora: "16:04:05",
		Identificativo: pecID,
		Msgid:          origMsgID,
		Ricevuta:       daticert.Completa,
	}
}

// acceptanceXML is the acceptance notice's daticert: no ricevuta.
func acceptanceXML() string {
	x := strings.Replace(daticertXML, `tipo="posta-certificata"`, `tipo="accettazione"`, 1)
	return strings.Replace(x, "<ricevuta tipo=\"completa\"/>\n", "", 1)
}

// humanText is the multipart/alternative human part: ISO-8859-1
// quoted-printable, "(+0100)" offset, with soft line breaks.
const humanText = "Content-Type: multipart/alternative; boundary=\"----------=_1542123566-1838-1409\"\r\n" +
	"Content-Transfer-Encoding: binary\r\n" +
	"MIME-Version: 1.0\r\n" +
	"\r\n" +
	"This is a multi-part message in MIME format...\r\n" +
	"\r\n" +
	"------------=_1542123566-1838-1409\r\n" +
	"Content-Type: text/plain; charset=\"iso-8859-1\"\r\n" +
	"Content-Disposition: inline\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Messaggio di posta certificata\r\n" +
	"\r\n" +
	"Il giorno 23/11/2026 alle ore 16:04:05 (+0100) il messaggio \"Fattura n. 12\" =\r\n" +
	"=E8 stato inviato da \"mario.rossi@pec.example.test\" indirizzato a:\r\n" +
	"luigi.verdi@pec.example.test\r\n" +
	"\r\n" +
	"Il messaggio originale =E8 incluso in allegato.\r\n" +
	"Identificativo messaggio: " + pecID + "\r\n" +
	"\r\n" +
	"------------=_1542123566-1838-1409\r\n" +
	"Content-Type: text/html; charset=\"iso-8859-1\"\r\n" +
	"Content-Disposition: inline\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"<html><body><p>Il messaggio originale =E8 incluso in allegato.</p></body></h=\r\n" +
	"tml>\r\n" +
	"\r\n" +
	"------------=_1542123566-1838-1409--\r\n"

// postacert is the original inside the envelope: its Message-ID is the PEC
// id, X-Riferimento-Message-ID the client's (RFC 6109 §2.2.1).
const postacert = "Return-Path: <mario.rossi@pec.example.test>\r\n" +
	"From: Mario Rossi <mario.rossi@pec.example.test>\r\n" +
	"To: luigi.verdi@pec.example.test\r\n" +
	"Subject: Fattura n. 12\r\n" +
	"Message-ID: <" + pecID + ">\r\n" +
	"X-Riferimento-Message-ID: " + origMsgID + "\r\n" +
	"X-TipoRicevuta: completa\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=ISO-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"In allegato la fattura, perch=E9 s=EC.\r\n"

// wrap64 is the base64 of data in lines of n characters (n <= 0: one line).
func wrap64(data []byte, n int) string {
	enc := base64.StdEncoding.EncodeToString(data)
	if n <= 0 {
		return enc + "\r\n"
	}
	var b strings.Builder
	for len(enc) > n {
		b.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	return b.String() + enc + "\r\n"
}

const daticertHeader = "Content-Type: application/xml; name=\"daticert.xml\"\r\n" +
	"Content-Disposition: inline; filename=\"daticert.xml\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n"

// daticertPart is the daticert.xml part with the given header fields,
// base64 in lines of cols characters.
func daticertPart(header, xml string, cols int) string {
	return header + "\r\n" + wrap64([]byte(xml), cols)
}

func postacertPart(orig string) string {
	return "Content-Type: message/rfc822; name=postacert.eml\r\n" +
		"Content-Disposition: inline; filename=postacert.eml\r\n" +
		"Content-Transfer-Encoding: 7bit\r\n\r\n" + orig
}

// mixed is the signed multipart/mixed entity holding parts, with the
// boundary parameter on a folded line and its own MIME-Version.
func mixed(parts ...string) string {
	const b = "----------=_1542123566-1838-1410"
	var s strings.Builder
	s.WriteString("Content-Type: multipart/mixed;\r\n boundary=\"" + b + "\"\r\n")
	s.WriteString("Content-Transfer-Encoding: binary\r\nMIME-Version: 1.0\r\n\r\n")
	s.WriteString("This is a multi-part message in MIME format...\r\n")
	for _, p := range parts {
		s.WriteString("\r\n--" + b + "\r\n" + strings.TrimSuffix(p, "\r\n"))
	}
	s.WriteString("\r\n--" + b + "--\r\n")
	return s.String()
}

// signedMessage signs content and returns the whole message: top, then
// MIME-Version and the multipart/signed Content-Type, then the body.
func signedMessage(t testing.TB, s *smime.Signer, top, content string) []byte {
	t.Helper()
	ct, body, err := s.Sign([]byte(content), at, "----=_signed_1542123566")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(top + "MIME-Version: 1.0\r\nContent-Type: " + ct + "\r\n\r\n" + string(body))
}

// envelopeWith is a transport envelope signed with SHA-256 whose daticert
// part is dcPart.
func envelopeWith(t testing.TB, dcPart string) []byte {
	return signedMessage(t, signer(crypto.SHA256, ""), envelopeTop, mixed(humanText, dcPart, postacertPart(postacert)))
}

func standardEnvelope(t testing.TB) []byte {
	return envelopeWith(t, daticertPart(daticertHeader, daticertXML, 76))
}

func mustParse(t testing.TB, raw []byte) *parse.Message {
	t.Helper()
	m, err := parse.Parse(raw)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

// mustVerify checks the whole-message verdict against the test root.
func mustVerify(t testing.TB, raw []byte) *verify.Report {
	t.Helper()
	p, _ := provider()
	r := verify.Message(raw, p.Pool())
	if !r.Valid() {
		t.Fatalf("verify: %v", r.Err)
	}
	return r
}

// checkEnvelope parses and verifies raw and checks it is the envelope
// whose daticert is wantDaticert.
func checkEnvelope(t *testing.T, raw []byte) *parse.Message {
	t.Helper()
	m := mustParse(t, raw)
	if m.Kind != kind.PostaCertificata || m.HeaderType != "posta-certificata" {
		t.Fatalf("kind %s header type %q", m.Kind, m.HeaderType)
	}
	if want := wantDaticert(); !reflect.DeepEqual(m.Daticert, want) {
		t.Fatalf("daticert:\n got %+v\nwant %+v", m.Daticert, want)
	}
	// the CRLF before the delimiter belongs to the delimiter (RFC 2046 §5.1.1)
	if want := strings.TrimSuffix(postacert, "\r\n"); string(m.Original) != want {
		t.Fatalf("postacert.eml:\n got %q\nwant %q", m.Original, want)
	}
	mustVerify(t, raw)
	return m
}

func TestVariantStandardEnvelope(t *testing.T) {
	checkEnvelope(t, standardEnvelope(t))
}

// An LF copy of a CRLF-signed message still verifies (line ends are
// canonicalised before verifying) and parses to the same kind and daticert.
func TestVariantLFLineEnds(t *testing.T) {
	crlf := standardEnvelope(t)
	lf := bytes.ReplaceAll(crlf, []byte("\r\n"), []byte("\n"))
	if bytes.Contains(lf, []byte("\r")) {
		t.Fatal("test bug: CR left in the LF copy")
	}
	a, b := checkEnvelope(t, crlf), checkEnvelope(t, lf)
	if a.Kind != b.Kind || !reflect.DeepEqual(a.Daticert, b.Daticert) || !bytes.Equal(a.Content, b.Content) {
		t.Fatalf("LF copy parses differently: %s %+v vs %s %+v", a.Kind, a.Daticert, b.Kind, b.Daticert)
	}
	// mixed line ends (an MTA that rewrote only some lines) also verify
	mixedEnds := bytes.Replace(crlf, []byte("\r\n"), []byte("\n"), 20)
	checkEnvelope(t, mixedEnds)
}

// Whitespace other than line ends is never normalised: a copy with
// trailing blanks stripped from the signed part no longer verifies.
func TestVariantTrailingBlanksStrippedDoesNotVerify(t *testing.T) {
	raw := signedMessage(t, signer(crypto.SHA256, ""), envelopeTop,
		strings.Replace(mixed(humanText, daticertPart(daticertHeader, daticertXML, 76), postacertPart(postacert)),
			"multipart/mixed;\r\n", "multipart/mixed; \r\n", 1))
	mustVerify(t, raw)
	stripped := bytes.Replace(raw, []byte("multipart/mixed; \r\n"), []byte("multipart/mixed;\r\n"), 1)
	p, _ := provider()
	r := verify.Message(stripped, p.Pool())
	if r.Valid() || r.Signature == nil || r.Signature.SignatureErr == nil {
		t.Fatalf("stripped copy: valid=%v err=%v", r.Valid(), r.Err)
	}
}

// Header names in any case: X-TRASPORTO, x-ricevuta, X-Tiporicevuta.
func TestVariantHeaderNameCasing(t *testing.T) {
	env := standardEnvelope(t)
	env = bytes.Replace(env, []byte("X-Trasporto: posta-certificata"), []byte("X-TRASPORTO: posta-certificata"), 1)
	env = bytes.Replace(env, []byte("X-TipoRicevuta: completa"), []byte("X-Tiporicevuta: completa"), 1)
	if !bytes.Contains(env, []byte("X-TRASPORTO:")) || !bytes.Contains(env, []byte("X-Tiporicevuta:")) {
		t.Fatal("test bug: header names not replaced")
	}
	m := checkEnvelope(t, env)
	if m.Header.Get("X-TipoRicevuta") != "completa" {
		t.Fatalf("X-Tiporicevuta not found by its canonical name")
	}

	top := strings.Replace(receiptTop, "X-Ricevuta:", "x-ricevuta:", 1)
	rc := signedMessage(t, signer(crypto.SHA256, ""), top, mixed(humanText, daticertPart(daticertHeader, acceptanceXML(), 76)))
	m = mustParse(t, rc)
	if m.Kind != kind.Accettazione || m.HeaderType != "accettazione" || m.Daticert.Tipo != daticert.Accettazione {
		t.Fatalf("x-ricevuta: kind %s header type %q", m.Kind, m.HeaderType)
	}
	mustVerify(t, rc)
}

// The preamble before the first delimiter: "This is an S/MIME signed
// message", "This is a S/MIME signed message", or none at all.
func TestVariantPreamble(t *testing.T) {
	orig := standardEnvelope(t)
	const an = "This is an S/MIME signed message\r\n\r\n"
	if !bytes.Contains(orig, []byte(an)) {
		t.Fatal("test bug: signer wrote no preamble")
	}
	for name, pre := range map[string]string{
		"an":   an,
		"a":    "This is a S/MIME signed message\r\n",
		"none": "",
		"long": "This is an S/MIME signed message\r\n\r\nIf you see this text your client does not\r\nunderstand MIME.\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			raw := bytes.Replace(orig, []byte(an), []byte(pre), 1)
			checkEnvelope(t, raw)
		})
	}
}

// The boundary parameter on a folded continuation line of the top-level
// Content-Type, unquoted, with the parameters on separate lines.
func TestVariantBoundaryOnFoldedLine(t *testing.T) {
	s := signer(crypto.SHA1, "application/x-pkcs7-signature")
	ct, body, err := s.Sign([]byte(mixed(humanText, daticertPart(daticertHeader, daticertXML, 76), postacertPart(postacert))), at, "----------=_1542123566-1838-1411")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ct, "\r\n\tboundary=") {
		t.Fatalf("test bug: Content-Type %q", ct)
	}
	folded := "multipart/signed;\r\n protocol=\"application/x-pkcs7-signature\";\r\n micalg=sha1;\r\n boundary=----------=_1542123566-1838-1411"
	raw := []byte(envelopeTop + "MIME-Version: 1.0\r\nContent-Type: " + folded + "\r\n\r\n" + string(body))
	checkEnvelope(t, raw)
}

// --- daticert.xml as real providers write it ---

func TestVariantDaticertNoCharsetParameter(t *testing.T) {
	// Content-Type with no charset and an unquoted name: the XML
	// declaration decides the encoding, here ISO-8859-1 with a Latin-1
	// byte in oggetto.
	hdr := "Content-Type: application/xml; name=daticert.xml\r\nContent-Disposition: inline; filename=daticert.xml\r\nContent-Transfer-Encoding: base64\r\n"
	x := strings.Replace(daticertXML, `encoding="UTF-8"`, `encoding="ISO-8859-1"`, 1)
	x = strings.Replace(x, "<oggetto>Fattura n. 12</oggetto>", "<oggetto>Fattura n. 12 \xe8 pronta</oggetto>", 1)
	raw := envelopeWith(t, daticertPart(hdr, x, 76))
	m := mustParse(t, raw)
	if m.Daticert.Oggetto == nil || *m.Daticert.Oggetto != "Fattura n. 12 è pronta" {
		t.Fatalf("oggetto %v", m.Daticert.Oggetto)
	}
	mustVerify(t, raw)

	// no charset, no name: found by its media type alone
	hdr = "Content-Type: application/xml\r\nContent-Transfer-Encoding: base64\r\n"
	checkEnvelope(t, envelopeWith(t, daticertPart(hdr, daticertXML, 76)))
}

func TestVariantDaticertNoXMLDeclaration(t *testing.T) {
	x := strings.TrimPrefix(daticertXML, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
	if x == daticertXML {
		t.Fatal("test bug")
	}
	checkEnvelope(t, envelopeWith(t, daticertPart(daticertHeader, x, 76)))
}

func TestVariantDaticertIndented(t *testing.T) {
	var b strings.Builder
	depth := 0
	for _, line := range strings.Split(strings.TrimSuffix(daticertXML, "\n"), "\n") {
		if strings.HasPrefix(line, "</") {
			depth--
		}
		b.WriteString(strings.Repeat("\t", max(depth, 0)) + line + "\r\n")
		if strings.HasPrefix(line, "<") && !strings.HasPrefix(line, "<?") && !strings.HasPrefix(line, "</") &&
			!strings.Contains(line, "</") && !strings.HasSuffix(line, "/>") {
			depth++
		}
	}
	x := b.String()
	if !strings.Contains(x, "\t\t\t<giorno>") {
		t.Fatalf("test bug: not indented:\n%s", x)
	}
	checkEnvelope(t, envelopeWith(t, daticertPart(daticertHeader, x, 76)))
}

func TestVariantDaticertRicevutaSelfClosingWithSpace(t *testing.T) {
	x := strings.Replace(daticertXML, `<ricevuta tipo="completa"/>`, `<ricevuta tipo="completa" />`, 1)
	if x == daticertXML {
		t.Fatal("test bug")
	}
	checkEnvelope(t, envelopeWith(t, daticertPart(daticertHeader, x, 76)))
}

func TestVariantDaticertTrailingNewlines(t *testing.T) {
	for name, tail := range map[string]string{"lf-crlf": "\n\r\n", "none": "", "crlf": "\r\n"} {
		t.Run(name, func(t *testing.T) {
			x := strings.TrimSuffix(daticertXML, "\n") + tail
			checkEnvelope(t, envelopeWith(t, daticertPart(daticertHeader, x, 76)))
		})
	}
}

func TestVariantDaticertBase64At60Columns(t *testing.T) {
	p := daticertPart(daticertHeader, daticertXML, 60)
	if lines := strings.Split(p, "\r\n"); lines[3] != "" || len(lines[4]) != 60 {
		t.Fatalf("test bug: not 60 columns:\n%s", p)
	}
	checkEnvelope(t, envelopeWith(t, p))
}

func TestVariantDaticertBase64OneLine(t *testing.T) {
	p := daticertPart(daticertHeader, daticertXML, 0)
	if n := strings.Count(p, "\r\n"); n != 5 {
		t.Fatalf("test bug: %d lines", n)
	}
	checkEnvelope(t, envelopeWith(t, p))
}

// A signed envelope with no daticert.xml fails cleanly with ErrNoDaticert.
func TestVariantNoDaticert(t *testing.T) {
	raw := signedMessage(t, signer(crypto.SHA256, ""), envelopeTop, mixed(humanText, postacertPart(postacert)))
	m, err := parse.Parse(raw)
	if !errors.Is(err, parse.ErrNoDaticert) {
		t.Fatalf("err %v, want ErrNoDaticert", err)
	}
	if m == nil || m.Kind != kind.PostaCertificata || m.Daticert != nil || m.Original == nil {
		t.Fatalf("message %+v", m)
	}
	p, _ := provider()
	r := verify.Message(raw, p.Pool())
	if r.Valid() || !errors.Is(r.Err, parse.ErrNoDaticert) {
		t.Fatalf("verify: %v", r.Err)
	}
	if r.Signature == nil || r.Signature.SignatureErr != nil {
		t.Fatalf("the signature itself is good: %+v", r.Signature)
	}
}

// A stray character after </risposte> (seen in anonymised samples) makes
// the daticert DTD-invalid: a specific error that says so.
func TestVariantDaticertStrayCharacter(t *testing.T) {
	x := strings.Replace(daticertXML, "</risposte>\n", "</risposte>\nx\n", 1)
	if _, err := daticert.Parse([]byte(x)); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Fatalf("daticert.Parse: %v", err)
	}
	raw := envelopeWith(t, daticertPart(daticertHeader, x, 76))
	m, err := parse.Parse(raw)
	if err == nil || !strings.Contains(err.Error(), "stray") || !strings.Contains(err.Error(), "intestazione") {
		t.Fatalf("parse: %v", err)
	}
	if errors.Is(err, parse.ErrNoDaticert) || m == nil || m.Kind != kind.PostaCertificata {
		t.Fatalf("parse: %v %+v", err, m)
	}
	p, _ := provider()
	if r := verify.Message(raw, p.Pool()); r.Valid() || !strings.Contains(r.Err.Error(), "stray") {
		t.Fatalf("verify: %v", r.Err)
	}
}

// A multipart/report DSN from an ordinary server (it may quote the
// envelope's X-Trasporto in its returned headers) is ordinary mail.
func TestVariantDSNMultipartReport(t *testing.T) {
	dsn := "Return-Path: <>\r\n" +
		"From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n" +
		"To: mario.rossi@pec.example.test\r\n" +
		"Subject: Undelivered Mail Returned to Sender\r\n" +
		"Date: Mon, 23 Nov 2026 16:05:00 +0100 (CET)\r\n" +
		"Message-ID: <20261123150500.DSN1@mx.example.org>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status;\r\n" +
		"\tboundary=\"ABC123.1795000000/mx.example.org\"\r\n" +
		"\r\n" +
		"This is a MIME-encapsulated message.\r\n" +
		"\r\n" +
		"--ABC123.1795000000/mx.example.org\r\n" +
		"Content-Description: Notification\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n" +
		"\r\n" +
		"I'm sorry to have to inform you that your message could not\r\n" +
		"be delivered to one or more recipients.\r\n" +
		"\r\n" +
		"--ABC123.1795000000/mx.example.org\r\n" +
		"Content-Description: Delivery report\r\n" +
		"Content-Type: message/delivery-status\r\n" +
		"\r\n" +
		"Reporting-MTA: dns; mx.example.org\r\n" +
		"\r\n" +
		"Final-Recipient: rfc822; paolo@mail.example.org\r\n" +
		"Action: failed\r\n" +
		"Status: 5.1.1\r\n" +
		"\r\n" +
		"--ABC123.1795000000/mx.example.org\r\n" +
		"Content-Description: Undelivered Message Headers\r\n" +
		"Content-Type: text/rfc822-headers\r\n" +
		"\r\n" +
		envelopeTop +
		"\r\n" +
		"--ABC123.1795000000/mx.example.org--\r\n"
	m, err := parse.Parse([]byte(dsn))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != kind.Ordinaria || m.Signed || m.HeaderType != "" || m.Daticert != nil {
		t.Fatalf("DSN parsed as %s (signed %v, header type %q)", m.Kind, m.Signed, m.HeaderType)
	}
	if r := verify.Message([]byte(dsn), nil); !errors.Is(r.Err, verify.ErrNotPEC) {
		t.Fatalf("verify: %v", r.Err)
	}
}

// ISO-8859-1 quoted-printable text parts (with soft line breaks and =E8)
// inside the signed part verify and leave the daticert alone.
func TestVariantISO88591QuotedPrintable(t *testing.T) {
	raw := standardEnvelope(t)
	m := checkEnvelope(t, raw)
	for _, s := range []string{"charset=\"iso-8859-1\"", "Content-Transfer-Encoding: quoted-printable", "=E8 stato inviato", "</h=\r\ntml>"} {
		if !bytes.Contains(m.Content, []byte(s)) {
			t.Fatalf("signed content lacks %q", s)
		}
	}
	// the QP text decodes to ISO-8859-1 bytes
	h, body, err := rawmime.Split(m.Content)
	if err != nil {
		t.Fatal(err)
	}
	_, params := rawmime.MediaType(h.Get("Content-Type"))
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(parts[0], []byte("Content-Type: multipart/alternative")) {
		t.Fatalf("first part %q", parts[0][:40])
	}
}

// X-Riferimento-Message-ID also appears on transport envelopes, and the
// original inside carries it too.
func TestVariantRiferimentoMessageIDOnEnvelope(t *testing.T) {
	m := checkEnvelope(t, standardEnvelope(t))
	if got := m.Header.Get("X-Riferimento-Message-ID"); got != origMsgID {
		t.Fatalf("X-Riferimento-Message-ID %q", got)
	}
	h, _, err := rawmime.Split(m.Original)
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Message-ID") != "<"+pecID+">" || h.Get("X-Riferimento-Message-ID") != origMsgID {
		t.Fatalf("original's ids %q %q", h.Get("Message-ID"), h.Get("X-Riferimento-Message-ID"))
	}
}

// msgid written &lt;…&gt; decodes to the Message-ID with angle brackets;
// the raw form (escaped differently, as a CDATA section) gives the same.
func TestVariantMsgidEscaped(t *testing.T) {
	m := checkEnvelope(t, standardEnvelope(t))
	if m.Daticert.Msgid != origMsgID || !bytes.Contains(m.DaticertRaw, []byte("&lt;20261123160400.abc@client.example.org&gt;")) {
		t.Fatalf("msgid %q", m.Daticert.Msgid)
	}
	for name, enc := range map[string]string{
		"numeric": "&#60;20261123160400.abc@client.example.org&#62;",
		"cdata":   "<![CDATA[<20261123160400.abc@client.example.org>]]>",
		"gt-raw":  "&lt;20261123160400.abc@client.example.org>",
	} {
		t.Run(name, func(t *testing.T) {
			x := strings.Replace(daticertXML, "&lt;20261123160400.abc@client.example.org&gt;", enc, 1)
			checkEnvelope(t, envelopeWith(t, daticertPart(daticertHeader, x, 76)))
		})
	}
}

// A mailing-list manager wraps the whole signed message in a new
// multipart/mixed with a footer, keeping the top-level header (so the
// X-Trasporto claim stays). The outer message is no longer PEC: parse
// returns the claimed kind with ErrNotSigned and verify reports that
// error with no signature result; the inner signed entity still verifies.
func TestVariantMailingListWrapped(t *testing.T) {
	env := standardEnvelope(t)
	h, body, err := rawmime.Split(env)
	if err != nil {
		t.Fatal(err)
	}
	var top strings.Builder
	for _, f := range h {
		if strings.EqualFold(f.Name, "Content-Type") || strings.EqualFold(f.Name, "MIME-Version") {
			continue
		}
		top.Write(f.Raw)
		top.WriteString("\r\n")
	}
	top.WriteString("List-Id: <lista.lists.example.org>\r\n")
	inner := "Content-Type: " + h.Get("Content-Type") + "\r\n\r\n" + string(body)
	wrapped := []byte(top.String() +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"===============list==\"\r\n\r\n" +
		"--===============list==\r\n" + inner + "\r\n" +
		"--===============list==\r\n" +
		"Content-Type: text/plain; charset=\"us-ascii\"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n" +
		"_______________________________________________\r\nlista mailing list\r\nlista@lists.example.org\r\n" +
		"--===============list==--\r\n")

	m, err := parse.Parse(wrapped)
	if !errors.Is(err, parse.ErrNotSigned) {
		t.Fatalf("parse err %v, want ErrNotSigned", err)
	}
	if m == nil || m.Signed || m.Daticert != nil {
		t.Fatalf("message %+v", m)
	}
	p, _ := provider()
	r := verify.Message(wrapped, p.Pool())
	if r.Valid() || !errors.Is(r.Err, parse.ErrNotSigned) || r.Signature != nil {
		t.Fatalf("verify: valid %v err %v", r.Valid(), r.Err)
	}

	// the inner part is still the signed envelope
	wh, wbody, err := rawmime.Split(rawmime.CRLF(wrapped))
	if err != nil {
		t.Fatal(err)
	}
	_, params := rawmime.MediaType(wh.Get("Content-Type"))
	parts, err := rawmime.Parts(wbody, params["boundary"])
	if err != nil || len(parts) != 2 {
		t.Fatalf("parts %d %v", len(parts), err)
	}
	ih, ibody, err := rawmime.Split(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	res, err := smime.VerifyEntity(ih, ibody, p.Pool())
	if err != nil || !res.Valid() {
		t.Fatalf("inner signed part: %v %+v", err, res)
	}

	// a list manager that also drops the X- headers leaves ordinary mail
	plain := bytes.Replace(wrapped, []byte("X-Trasporto: posta-certificata\r\n"), nil, 1)
	m, err = parse.Parse(plain)
	if err != nil || m.Kind != kind.Ordinaria {
		t.Fatalf("without X-Trasporto: %v %v", m.Kind, err)
	}
}
