// Package daticert encodes and decodes daticert.xml, the machine-readable
// certification data that every PEC notice and transport envelope carries
// (RFC 6109 §4.4; the DTD is reproduced in the Italian technical rules).
//
// Encoding is strict: elements in DTD order, UTF-8, no namespace, only the
// values the DTD allows. Decoding is lenient about whitespace, attribute
// spelling such as `<ricevuta tipo="completa" />` and trailing bytes after
// the root element, but a document that is not well formed or that misses a
// required element yields a specific error.
package daticert

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"
)

// Tipo is the postacert/@tipo attribute: the kind of PEC message (RFC 6109 §4.4).
type Tipo string

// The values of postacert/@tipo. The anomaly envelope has no daticert and so no Tipo.
const (
	Accettazione            Tipo = "accettazione"
	NonAccettazione         Tipo = "non-accettazione"
	PresaInCarico           Tipo = "presa-in-carico"
	AvvenutaConsegna        Tipo = "avvenuta-consegna"
	PostaCertificata        Tipo = "posta-certificata"
	ErroreConsegna          Tipo = "errore-consegna"
	PreavvisoErroreConsegna Tipo = "preavviso-errore-consegna"
	RilevazioneVirus        Tipo = "rilevazione-virus"
)

// Errore is the postacert/@errore attribute.
type Errore string

// The values of postacert/@errore (RFC 6109 §4.4): no-dest and no-dominio
// only with errore-consegna; virus with errore-consegna or non-accettazione.
const (
	Nessuno   Errore = "nessuno"
	NoDest    Errore = "no-dest"
	NoDominio Errore = "no-dominio"
	Virus     Errore = "virus"
	Altro     Errore = "altro"
)

// DestTipo is destinatari/@tipo: whether a recipient is a PEC mailbox.
type DestTipo string

// The values of destinatari/@tipo.
const (
	Certificato DestTipo = "certificato"
	Esterno     DestTipo = "esterno"
)

// Ricevuta is ricevuta/@tipo: the form of delivery receipt the sender asked
// for with X-TipoRicevuta (RFC 6109 §3.3.2).
type Ricevuta string

// The values of ricevuta/@tipo.
const (
	Completa  Ricevuta = "completa"
	Breve     Ricevuta = "breve"
	Sintetica Ricevuta = "sintetica"
)

// Valid reports whether r is one of the three receipt forms.
func (r Ricevuta) Valid() bool { return validRicevuta[r] }

// Destinatario is one To or Cc recipient of the original message.
type Destinatario struct {
	Addr string
	Tipo DestTipo
}

// Postacert is the whole daticert.xml document.
type Postacert struct {
	Tipo   Tipo
	Errore Errore // empty means nessuno

	// intestazione: the original message's header, copied unchanged
	// across every notice of one transaction (PEC-SPEC §6.6 rule 3).
	Mittente    string
	Destinatari []Destinatario
	Risposte    string
	Oggetto     *string // nil when the original had no Subject

	// dati
	GestoreEmittente string
	Zona             string // "+hhmm"
	Giorno           string // "dd/mm/yyyy"
	Ora              string // "hh:mm:ss"
	Identificativo   string // the PEC id, without angle brackets
	Msgid            string // the original Message-ID, with angle brackets; empty when absent
	Ricevuta         Ricevuta
	Consegna         string
	Ricezione        []string
	ErroreEsteso     string
	hasErroreEsteso  bool

	// Repairs lists what Parse replaced to read an ill-formed document
	// (PEC-SPEC §6.7: control characters some providers copy from the
	// Subject into oggetto). Set only by Parse; Marshal never emits such
	// characters.
	Repairs []string
}

// SetTime fills zona, giorno and ora from t in loc (RFC 6109 §4.4: local
// time of the provider with its offset from UTC as [+|-]hhmm).
func (p *Postacert) SetTime(t time.Time, loc *time.Location) {
	t = t.In(loc)
	p.Zona = t.Format("-0700")
	p.Giorno = t.Format("02/01/2006")
	p.Ora = t.Format("15:04:05")
}

// Time returns the instant written in data, or an error when zona, giorno
// or ora are malformed.
func (p *Postacert) Time() (time.Time, error) {
	t, err := time.Parse("02/01/2006 15:04:05 -0700", p.Giorno+" "+p.Ora+" "+p.Zona)
	if err != nil {
		return time.Time{}, fmt.Errorf("daticert: bad data (zona %q giorno %q ora %q): want +hhmm, dd/mm/yyyy, hh:mm:ss", p.Zona, p.Giorno, p.Ora)
	}
	return t, nil
}

// SetErroreEsteso sets errore-esteso; an empty text still emits the element.
func (p *Postacert) SetErroreEsteso(s string) {
	p.ErroreEsteso = s
	p.hasErroreEsteso = true
}

// HasErroreEsteso reports whether the document has an errore-esteso element.
func (p *Postacert) HasErroreEsteso() bool { return p.hasErroreEsteso || p.ErroreEsteso != "" }

var (
	validTipo     = map[Tipo]bool{Accettazione: true, NonAccettazione: true, PresaInCarico: true, AvvenutaConsegna: true, PostaCertificata: true, ErroreConsegna: true, PreavvisoErroreConsegna: true, RilevazioneVirus: true}
	validErrore   = map[Errore]bool{Nessuno: true, NoDest: true, NoDominio: true, Virus: true, Altro: true}
	validRicevuta = map[Ricevuta]bool{Completa: true, Breve: true, Sintetica: true}
	zonaRE        = regexp.MustCompile(`^[+-][0-9]{4}$`)
	giornoRE      = regexp.MustCompile(`^[0-9]{2}/[0-9]{2}/[0-9]{4}$`)
	oraRE         = regexp.MustCompile(`^[0-9]{2}:[0-9]{2}:[0-9]{2}$`)
)

// Validate checks what the DTD and RFC 6109 §4.4 require of the values.
func (p *Postacert) Validate() error {
	if !validTipo[p.Tipo] {
		return fmt.Errorf("daticert: tipo %q is not one of the RFC 6109 §4.4 values", p.Tipo)
	}
	e := p.errore()
	if !validErrore[e] {
		return fmt.Errorf("daticert: errore %q is not one of nessuno|no-dest|no-dominio|virus|altro", e)
	}
	if (e == NoDest || e == NoDominio) && p.Tipo != ErroreConsegna {
		return fmt.Errorf("daticert: errore %q is allowed only with tipo errore-consegna (RFC 6109 §4.4)", e)
	}
	if e == Virus && p.Tipo != ErroreConsegna && p.Tipo != NonAccettazione && p.Tipo != RilevazioneVirus {
		return fmt.Errorf("daticert: errore virus is not allowed with tipo %q", p.Tipo)
	}
	if p.Mittente == "" {
		return errors.New("daticert: intestazione needs mittente")
	}
	if len(p.Destinatari) == 0 {
		return errors.New("daticert: intestazione needs at least one destinatari")
	}
	for _, d := range p.Destinatari {
		if d.Tipo != "" && d.Tipo != Certificato && d.Tipo != Esterno {
			return fmt.Errorf("daticert: destinatari tipo %q is not certificato|esterno", d.Tipo)
		}
	}
	if p.GestoreEmittente == "" {
		return errors.New("daticert: dati needs gestore-emittente")
	}
	if !zonaRE.MatchString(p.Zona) || !giornoRE.MatchString(p.Giorno) || !oraRE.MatchString(p.Ora) {
		return fmt.Errorf("daticert: data zona %q giorno %q ora %q: want +hhmm, dd/mm/yyyy, hh:mm:ss", p.Zona, p.Giorno, p.Ora)
	}
	if p.Identificativo == "" || strings.ContainsAny(p.Identificativo, "<> \t") || !strings.Contains(p.Identificativo, "@") {
		return fmt.Errorf("daticert: identificativo %q must be id@domain without angle brackets (RFC 6109 §2.2.1)", p.Identificativo)
	}
	if p.Ricevuta != "" && !validRicevuta[p.Ricevuta] {
		return fmt.Errorf("daticert: ricevuta tipo %q is not completa|breve|sintetica", p.Ricevuta)
	}
	return nil
}

func (p *Postacert) errore() Errore {
	if p.Errore == "" {
		return Nessuno
	}
	return p.Errore
}

// Marshal encodes p as daticert.xml: the XML declaration, then the
// elements in DTD order, indented, with CRLF line ends (the part is
// base64-encoded in the message, so the line ends are part of what the
// recipient hashes and stores).
func (p *Postacert) Marshal() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	nl := "\r\n"
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + nl)
	fmt.Fprintf(&b, `<postacert tipo="%s" errore="%s">`+nl, p.Tipo, p.errore())
	b.WriteString("  <intestazione>" + nl)
	elem(&b, 4, "mittente", p.Mittente)
	for _, d := range p.Destinatari {
		t := d.Tipo
		if t == "" {
			t = Certificato
		}
		fmt.Fprintf(&b, `    <destinatari tipo="%s">%s</destinatari>`+nl, t, esc(d.Addr))
	}
	elem(&b, 4, "risposte", p.Risposte)
	if p.Oggetto != nil {
		elem(&b, 4, "oggetto", *p.Oggetto)
	}
	b.WriteString("  </intestazione>" + nl)
	b.WriteString("  <dati>" + nl)
	elem(&b, 4, "gestore-emittente", p.GestoreEmittente)
	fmt.Fprintf(&b, `    <data zona="%s">`+nl, esc(p.Zona))
	elem(&b, 6, "giorno", p.Giorno)
	elem(&b, 6, "ora", p.Ora)
	b.WriteString("    </data>" + nl)
	elem(&b, 4, "identificativo", p.Identificativo)
	if p.Msgid != "" {
		elem(&b, 4, "msgid", p.Msgid)
	}
	if p.Ricevuta != "" {
		fmt.Fprintf(&b, `    <ricevuta tipo="%s"/>`+nl, p.Ricevuta)
	}
	if p.Consegna != "" {
		elem(&b, 4, "consegna", p.Consegna)
	}
	for _, r := range p.Ricezione {
		elem(&b, 4, "ricezione", r)
	}
	if p.HasErroreEsteso() {
		elem(&b, 4, "errore-esteso", p.ErroreEsteso)
	}
	b.WriteString("  </dati>" + nl)
	b.WriteString("</postacert>" + nl)
	return b.Bytes(), nil
}

func elem(b *bytes.Buffer, indent int, name, value string) {
	fmt.Fprintf(b, "%s<%s>%s</%s>\r\n", strings.Repeat(" ", indent), name, esc(value), name)
}

// esc escapes text for XML character data and drops characters XML 1.0
// cannot carry (control characters other than tab, CR, LF).
func esc(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			continue
		}
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\r':
			b.WriteString("&#13;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// xml mapping used for decoding only; encoding is done by hand to keep the
// exact DTD order and formatting.
type xmlDoc struct {
	XMLName      xml.Name `xml:"postacert"`
	Tipo         string   `xml:"tipo,attr"`
	Errore       *string  `xml:"errore,attr"`
	Intestazione *struct {
		Mittente    *string `xml:"mittente"`
		Destinatari []struct {
			Tipo string `xml:"tipo,attr"`
			Addr string `xml:",chardata"`
		} `xml:"destinatari"`
		Risposte *string `xml:"risposte"`
		Oggetto  *string `xml:"oggetto"`
	} `xml:"intestazione"`
	Dati *struct {
		GestoreEmittente *string `xml:"gestore-emittente"`
		Data             *struct {
			Zona   string `xml:"zona,attr"`
			Giorno string `xml:"giorno"`
			Ora    string `xml:"ora"`
		} `xml:"data"`
		Identificativo *string `xml:"identificativo"`
		Msgid          *string `xml:"msgid"`
		Ricevuta       *struct {
			Tipo string `xml:"tipo,attr"`
		} `xml:"ricevuta"`
		Consegna     *string  `xml:"consegna"`
		Ricezione    []string `xml:"ricezione"`
		ErroreEsteso *string  `xml:"errore-esteso"`
	} `xml:"dati"`
}

// Parse decodes a daticert.xml document. It accepts what real providers
// emit (PEC-SPEC §6.7: any indentation, no DOCTYPE, self-closing ricevuta,
// trailing bytes after the root) and rejects anything that is not well
// formed or lacks an element the DTD requires, with an error that names it.
func Parse(data []byte) (*Postacert, error) {
	data, repairs := repairChars(data)
	var d xmlDoc
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	dec.Strict = true
	if err := decodeRoot(dec, &d); err != nil {
		return nil, fmt.Errorf("daticert: not well-formed XML: %w", err)
	}
	if err := checkElementContent(data); err != nil {
		return nil, err
	}
	p := &Postacert{Tipo: Tipo(strings.TrimSpace(d.Tipo)), Errore: Nessuno, Repairs: repairs} // errore: the DTD default
	if d.Errore != nil {
		p.Errore = Errore(strings.TrimSpace(*d.Errore))
	}
	if !validTipo[p.Tipo] {
		return nil, fmt.Errorf("daticert: postacert tipo %q is not an RFC 6109 §4.4 value", d.Tipo)
	}
	if !validErrore[p.errore()] {
		return nil, fmt.Errorf("daticert: postacert errore %q is not an RFC 6109 §4.4 value", p.Errore)
	}
	in := d.Intestazione
	if in == nil {
		return nil, errors.New("daticert: missing <intestazione>")
	}
	if in.Mittente == nil {
		return nil, errors.New("daticert: missing <mittente>")
	}
	p.Mittente = strings.TrimSpace(*in.Mittente)
	if len(in.Destinatari) == 0 {
		return nil, errors.New("daticert: missing <destinatari>")
	}
	for _, x := range in.Destinatari {
		t := DestTipo(strings.TrimSpace(x.Tipo))
		if t == "" {
			t = Certificato
		}
		if t != Certificato && t != Esterno {
			return nil, fmt.Errorf("daticert: destinatari tipo %q is not certificato|esterno", x.Tipo)
		}
		p.Destinatari = append(p.Destinatari, Destinatario{Addr: strings.TrimSpace(x.Addr), Tipo: t})
	}
	if in.Risposte == nil {
		return nil, errors.New("daticert: missing <risposte>")
	}
	p.Risposte = strings.TrimSpace(*in.Risposte)
	if in.Oggetto != nil {
		o := *in.Oggetto
		p.Oggetto = &o
	}
	da := d.Dati
	if da == nil {
		return nil, errors.New("daticert: missing <dati>")
	}
	if da.GestoreEmittente == nil {
		return nil, errors.New("daticert: missing <gestore-emittente>")
	}
	p.GestoreEmittente = strings.TrimSpace(*da.GestoreEmittente)
	if da.Data == nil {
		return nil, errors.New("daticert: missing <data>")
	}
	p.Zona, p.Giorno, p.Ora = strings.TrimSpace(da.Data.Zona), strings.TrimSpace(da.Data.Giorno), strings.TrimSpace(da.Data.Ora)
	if _, err := p.Time(); err != nil {
		return nil, err
	}
	if da.Identificativo == nil || strings.TrimSpace(*da.Identificativo) == "" {
		return nil, errors.New("daticert: missing <identificativo>")
	}
	p.Identificativo = strings.TrimSpace(*da.Identificativo)
	if da.Msgid != nil {
		p.Msgid = strings.TrimSpace(*da.Msgid)
	}
	if da.Ricevuta != nil {
		p.Ricevuta = Ricevuta(strings.TrimSpace(da.Ricevuta.Tipo))
		if !validRicevuta[p.Ricevuta] {
			return nil, fmt.Errorf("daticert: ricevuta tipo %q is not completa|breve|sintetica", da.Ricevuta.Tipo)
		}
	}
	if da.Consegna != nil {
		p.Consegna = strings.TrimSpace(*da.Consegna)
	}
	for _, r := range da.Ricezione {
		p.Ricezione = append(p.Ricezione, strings.TrimSpace(r))
	}
	if da.ErroreEsteso != nil {
		p.SetErroreEsteso(strings.TrimSpace(*da.ErroreEsteso))
	}
	return p, nil
}

// replacement stands for a character XML 1.0 cannot carry; as a character
// reference it is right in any document encoding.
const replacement = "&#xFFFD;"

// charRef matches a decimal or hexadecimal character reference.
var charRef = regexp.MustCompile(`&#(?:[0-9]{1,10}|[xX][0-9a-fA-F]{1,8});`)

// repairChars replaces what makes a genuine provider's daticert ill-formed
// XML 1.0 (§2.2 Char) and nothing else: raw C0 control characters other
// than tab, CR and LF, and character references to any character outside
// Char (such as &#18;). It returns the document unchanged when there is
// nothing to repair, and one note per kind of repair.
func repairChars(data []byte) ([]byte, []string) {
	var notes []string
	if i := bytes.IndexFunc(data, func(r rune) bool { return r < 0x20 && r != '\t' && r != '\n' && r != '\r' }); i >= 0 {
		var b bytes.Buffer
		n := 0
		for _, c := range data {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				b.WriteString(replacement)
				n++
				continue
			}
			b.WriteByte(c)
		}
		notes = append(notes, fmt.Sprintf("daticert: %d raw control character(s) (first U+%04X) are not XML 1.0: replaced by U+FFFD to read the document", n, data[i]))
		data = b.Bytes()
	}
	var bad []string
	data = charRef.ReplaceAllFunc(data, func(ref []byte) []byte {
		s := string(ref[2 : len(ref)-1])
		var v uint64
		var err error
		if s[0] == 'x' || s[0] == 'X' {
			_, err = fmt.Sscanf(s[1:], "%x", &v)
		} else {
			_, err = fmt.Sscanf(s, "%d", &v)
		}
		if err == nil && xmlChar(v) {
			return ref
		}
		bad = append(bad, string(ref))
		return []byte(replacement)
	})
	if len(bad) > 0 {
		notes = append(notes, fmt.Sprintf("daticert: character reference(s) %s to characters XML 1.0 does not allow: replaced by U+FFFD to read the document", strings.Join(bad, " ")))
	}
	return data, notes
}

// xmlChar reports whether v is an XML 1.0 Char (§2.2).
func xmlChar(v uint64) bool {
	return v == 0x9 || v == 0xA || v == 0xD || v >= 0x20 && v <= 0xD7FF || v >= 0xE000 && v <= 0xFFFD || v >= 0x10000 && v <= 0x10FFFF
}

// decodeRoot decodes the root element and ignores whatever follows it
// (real daticert parts end with "\n\r\n" or other stray bytes).
func decodeRoot(dec *xml.Decoder, d *xmlDoc) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			if err == io.EOF {
				return errors.New("no <postacert> root element")
			}
			return err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "postacert" {
				return fmt.Errorf("root element is <%s>, want <postacert>", se.Name.Local)
			}
			return dec.DecodeElement(d, &se)
		}
	}
}

// elementOnly lists the DTD elements whose content is elements only: text
// inside them is a stray character that makes the document DTD-invalid.
var elementOnly = map[string]bool{"postacert": true, "intestazione": true, "dati": true, "data": true}

// checkElementContent rejects non-blank text directly inside an
// element-only element, such as the stray character some anonymised
// samples carry after </risposte> (PEC-SPEC §6.7).
func checkElementContent(data []byte) error {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.CharsetReader = charsetReader
	var stack []string
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // well-formedness was checked by the decoder already
		}
		switch t := tok.(type) {
		case xml.StartElement:
			stack = append(stack, t.Name.Local)
		case xml.EndElement:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			if len(stack) == 0 {
				return nil
			}
		case xml.CharData:
			if len(stack) > 0 && elementOnly[stack[len(stack)-1]] && len(bytes.TrimSpace(t)) > 0 {
				return fmt.Errorf("daticert: stray text %q inside <%s> (the DTD allows only elements there)", bytes.TrimSpace(t), stack[len(stack)-1])
			}
		}
	}
}

func charsetReader(label string, in io.Reader) (io.Reader, error) {
	switch strings.ToLower(label) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return in, nil
	case "iso-8859-1", "latin1", "iso8859-1":
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, err
		}
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c)
		}
		return strings.NewReader(string(r)), nil
	}
	return nil, fmt.Errorf("unsupported XML encoding %q", label)
}
