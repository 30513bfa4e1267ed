// Package parse reads PEC messages: it tells the kind of a message (RFC
// 6109 §2.1: by the X-Ricevuta / X-Trasporto headers, confirmed by the
// signed daticert tipo), decodes its daticert.xml and extracts the
// original carried as postacert.eml.
//
// It is lenient with what real providers send (PEC-SPEC §6.7): header-name
// casing, LF or CRLF, both signature protocol names, preambles, binary or
// 7bit inner multiparts, base64 on one long line, daticert without charset.
// It does not check signatures: see package verify. Malformed input yields
// an error that names the problem, never a panic.
package parse

import (
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/charset"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
)

// Message is a parsed message.
type Message struct {
	Kind       kind.Kind
	HeaderType string // the X-Trasporto or X-Ricevuta value, lower-cased
	Header     rawmime.Header
	Signed     bool // top level is multipart/signed
	// Content is the signed entity (first part of multipart/signed).
	Content     []byte
	Daticert    *daticert.Postacert
	DaticertRaw []byte
	// Original is the message carried inside: postacert.eml of an envelope
	// or receipt, the received message of an anomaly envelope.
	Original []byte
	// Warnings are quirks of genuine providers' messages that were read
	// anyway (PEC-SPEC §6.7): a repaired daticert, a Subject that is not
	// the daticert oggetto.
	Warnings []string
}

// Errors that tell why a message claiming to be PEC is not well formed.
var (
	ErrNotSigned    = errors.New("parse: PEC type header on a message that is not multipart/signed")
	ErrNoDaticert   = errors.New("parse: signed PEC message without daticert.xml")
	ErrTypeMismatch = errors.New("parse: type header disagrees with the daticert tipo")
	ErrStructure    = errors.New("parse: PEC MIME structure not as RFC 6109 §4.3 wants")
)

// Parse reads raw (a whole message, LF or CRLF). It returns the message
// with Kind Ordinaria and no error for mail with no PEC type header. For a
// message that claims to be PEC and is malformed it returns what it could
// read together with an error.
func Parse(raw []byte) (*Message, error) {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	m := &Message{Header: h, Kind: kind.Ordinaria}
	tr := strings.ToLower(h.Get("X-Trasporto"))
	rc := strings.ToLower(h.Get("X-Ricevuta"))
	vs := strings.EqualFold(h.Get("X-VerificaSicurezza"), "errore")
	m.HeaderType = tr
	if m.HeaderType == "" {
		m.HeaderType = rc
	}
	claimed := kind.FromHeaders(tr, rc, vs)
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	if mt != "multipart/signed" {
		if claimed != kind.Ordinaria {
			m.Kind = claimed
			return m, ErrNotSigned
		}
		return m, nil
	}
	m.Signed = true
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil || len(parts) != 2 {
		m.Kind = claimed
		if err == nil {
			err = fmt.Errorf("multipart/signed with %d parts, want 2", len(parts))
		}
		return m, fmt.Errorf("%w: %v", ErrStructure, err)
	}
	m.Content = parts[0]
	m.Kind = claimed
	if claimed == kind.Ordinaria {
		return m, nil // a signed message that is not PEC (ordinary S/MIME mail)
	}
	if err := m.readContent(); err != nil {
		return m, err
	}
	if claimed == kind.Anomalia {
		if m.Daticert != nil {
			return m, fmt.Errorf("%w: anomaly envelope carries daticert.xml (RFC 6109 §3.2.2)", ErrStructure)
		}
		return m, nil
	}
	if m.Daticert == nil {
		return m, ErrNoDaticert
	}
	if m.Daticert.Tipo != claimed.Tipo() {
		return m, fmt.Errorf("%w: header says %s, daticert tipo is %s", ErrTypeMismatch, claimed, m.Daticert.Tipo)
	}
	if w := subjectMismatch(h.Get("Subject"), claimed.SubjectPrefix(), m.Daticert.Oggetto); w != "" {
		m.Warnings = append(m.Warnings, w)
	}
	return m, nil
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// subjectMismatch compares the Subject, decoded and without its type
// prefix, with the daticert oggetto. The outer header fields are not
// signed (RFC 6109 §4.3): a Subject edited after signing still verifies,
// so a difference is worth a warning; the daticert is what the provider
// certified. Line folding, whitespace and characters XML cannot carry do
// not count. The whole Subject may be one encoded-word, prefix included.
func subjectMismatch(subject, prefix string, oggetto *string) string {
	dec, err := wordDecoder.DecodeHeader(subject)
	if err != nil {
		dec = subject
	}
	want := ""
	if oggetto != nil {
		want = *oggetto
	}
	got := normSubject(dec)
	p := normSubject(prefix)
	switch {
	case strings.HasPrefix(strings.ToUpper(got), strings.ToUpper(p)):
		got = strings.TrimSpace(got[len(p):])
	default:
		// another provider's wording of the prefix: up to the first colon
		if _, rest, ok := strings.Cut(got, ": "); ok {
			got = rest
		}
	}
	if got == normSubject(want) {
		return ""
	}
	return fmt.Sprintf("Subject %q differs from the daticert oggetto %q: the outer header fields are not signed, the daticert is what the provider certified", dec, want)
}

// normSubject collapses whitespace and drops control characters and
// U+FFFD (what daticert.Parse puts for them).
func normSubject(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// readContent walks the signed multipart/mixed for daticert.xml and the
// carried original.
func (m *Message) readContent() error {
	h, body, err := rawmime.Split(m.Content)
	if err != nil {
		return fmt.Errorf("%w: signed part: %v", ErrStructure, err)
	}
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	if mt != "multipart/mixed" {
		return fmt.Errorf("%w: signed part is %s, want multipart/mixed", ErrStructure, mt)
	}
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil {
		return fmt.Errorf("%w: %v", ErrStructure, err)
	}
	for _, p := range parts {
		ph, pbody, err := rawmime.Split(p)
		if err != nil {
			continue // a part with no header is text/plain; nothing we look for
		}
		pmt, pparams := rawmime.MediaType(ph.Get("Content-Type"))
		_, dparams := rawmime.MediaType(ph.Get("Content-Disposition"))
		name := strings.ToLower(dparams["filename"])
		if name == "" {
			name = strings.ToLower(pparams["name"])
		}
		switch {
		case name == "daticert.xml" || (name == "" && (pmt == "application/xml" || pmt == "text/xml")):
			if m.DaticertRaw != nil {
				return fmt.Errorf("%w: more than one daticert.xml", ErrStructure)
			}
			x, err := decodeBody(pbody, ph.Get("Content-Transfer-Encoding"))
			if err != nil {
				return fmt.Errorf("parse: daticert.xml: %w", err)
			}
			m.DaticertRaw = x
			d, err := daticert.Parse(x)
			if err != nil {
				return err
			}
			m.Daticert = d
			m.Warnings = append(m.Warnings, d.Repairs...)
		case pmt == "message/rfc822":
			if m.Original == nil {
				m.Original = pbody
			}
		}
	}
	return nil
}

// decodeBody undoes a Content-Transfer-Encoding.
func decodeBody(b []byte, cte string) ([]byte, error) {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "base64":
		return rawmime.DecodeBase64(b)
	case "quoted-printable":
		out, err := quotedprintableDecode(b)
		if err != nil {
			return nil, fmt.Errorf("bad quoted-printable: %v", err)
		}
		return out, nil
	}
	return b, nil
}

func quotedprintableDecode(b []byte) ([]byte, error) {
	var out bytes.Buffer
	_, err := out.ReadFrom(quotedprintable.NewReader(bytes.NewReader(b)))
	return out.Bytes(), err
}

// Recipients is the daticert's consegna or ricezione list: the recipients
// a notice is about (PEC-SPEC §5.2; rilevazione-virus may use either).
func (m *Message) Recipients() []string {
	if m.Daticert == nil {
		return nil
	}
	if m.Daticert.Consegna != "" {
		return []string{m.Daticert.Consegna}
	}
	return m.Daticert.Ricezione
}
