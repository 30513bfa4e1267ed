// Package build composes and signs every message a PEC provider emits
// (RFC 6109 §3): the transport and anomaly envelopes and the nine kinds of
// notice. Everything is emitted strictly: CRLF line ends, 7-bit safe
// transfer encodings, ISO-8859-1 quoted-printable human text with an HTML
// alternative that references nothing, daticert.xml in base64, the whole
// signed as multipart/signed with the provider's key at the transaction
// instant (RFC 6109 §2.1, §4.1, §4.3).
package build

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // the provider zone must load on machines without tzdata

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/pecid"
	"github.com/pecgo/pec/smime"
)

// Provider is the emitting provider.
type Provider struct {
	Name     string         // gestore-emittente, e.g. "Example PEC S.p.A."
	Domain   string         // the provider's mail domain: the service address is posta-certificata@Domain
	Location *time.Location // zone of daticert and human text; nil means Europe/Rome
	Signer   *smime.Signer  // its certificate's rfc822Name must be ServiceAddr (RFC 6109 §2.1)
	// NewID makes message identifiers; nil means pecid.New.
	NewID func(t time.Time, domain string) string
	// Renderer, when set, writes the notices instead of the PEC form
	// (Render); nil: PEC.
	Renderer Renderer
}

// ServiceAddr is the address that signs and sends notices and envelopes.
func (p *Provider) ServiceAddr() string { return "posta-certificata@" + strings.ToLower(p.Domain) }

func (p *Provider) loc() *time.Location {
	if p.Location != nil {
		return p.Location
	}
	return Rome
}

func (p *Provider) newID(t time.Time) string {
	if p.NewID != nil {
		return p.NewID(t, p.Domain)
	}
	return pecid.New(t, p.Domain)
}

// Rome is Europe/Rome, loaded from the embedded tzdata when the system has none.
var Rome = mustLoad("Europe/Rome")

// Tx is what every message of one PEC transaction repeats: the original's
// header data (daticert intestazione, copied unchanged by every provider,
// PEC-SPEC §6.6 rule 3) and its identifiers.
type Tx struct {
	ID          string                  // identificativo: the transport envelope's id, without angle brackets
	MsgID       string                  // the original Message-ID with angle brackets; "" when it had none
	Mittente    string                  // the original sender (the reverse-path, equal to From at acceptance)
	Destinatari []daticert.Destinatario // every To and Cc recipient with its type
	Risposte    string                  // the original Reply-To, or the sender
	Oggetto     *string                 // the original Subject, decoded; nil when absent
	Subject     string                  // the original Subject as received (may hold RFC 2047 words)
	Ricevuta    daticert.Ricevuta       // the delivery receipt form the sender asked for
}

// Field is one top-level header field.
type Field struct {
	Name, Value string
	// Copied marks fields carried over unchanged from the original
	// (envelopes: Received, To, Cc, Return-Path, Reply-To; RFC 6109 §2.1.1.2).
	Copied bool
}

// Message is a built, signed message with its SMTP envelope.
type Message struct {
	Kind     kind.Kind
	ID       string   // Message-ID without angle brackets
	MailFrom string   // SMTP reverse-path
	Rcpts    []string // SMTP forward-paths
	Header   []Field
	Time     time.Time
	Daticert *daticert.Postacert // nil for the anomaly envelope
	// BodyPieces is the multipart/signed body as consecutive pieces, each
	// ending at a line end, so that a large original is copied once (into
	// the signed entity) and not again.
	BodyPieces [][]byte
}

// Body returns the multipart/signed body in one slice.
func (m *Message) Body() []byte { return concat(nil, m.BodyPieces) }

// Bytes returns the whole message with CRLF line ends.
func (m *Message) Bytes() []byte {
	var h bytes.Buffer
	for _, f := range m.Header {
		h.WriteString(f.Name + ": " + f.Value + "\r\n")
	}
	h.WriteString("\r\n")
	return concat(h.Bytes(), m.BodyPieces)
}

// concat joins head and parts in one allocation of the exact size.
func concat(head []byte, parts [][]byte) []byte {
	n := len(head)
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	out = append(out, head...)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Get returns the value of the first header field named name.
func (m *Message) Get(name string) string {
	for _, f := range m.Header {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

func boundary(tag string) string {
	var r [12]byte
	rand.Read(r[:])
	return "----=_PEC_" + tag + "_" + hex.EncodeToString(r[:])
}

// dateHeader formats t for the Date field in the provider's zone (RFC 5322 §3.3).
func dateHeader(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("Mon, 02 Jan 2006 15:04:05 -0700")
}

// humanTime is "dd/mm/yyyy", "hh:mm:ss" and "(+hhmm)" as real providers write it.
func humanTime(t time.Time, loc *time.Location) (day, clock, zone string) {
	t = t.In(loc)
	return t.Format("02/01/2006"), t.Format("15:04:05"), "(" + t.Format("-0700") + ")"
}

// parts of the signed multipart/mixed entity
type part struct {
	header []string // "Name: value" lines
	body   [][]byte // consecutive pieces of the body
}

// assemble builds the signed entity from parts (one allocation of the
// exact size), signs it at t and returns the top-level Content-Type value
// and the body pieces.
func (p *Provider) assemble(t time.Time, parts []part) (string, [][]byte, error) {
	if p.Signer == nil {
		return "", nil, errors.New("build: provider has no signer")
	}
	mixed := boundary("mixed")
	head := fmt.Sprintf("Content-Type: multipart/mixed;\r\n\tboundary=\"%s\"\r\n\r\nThis is a multi-part message in MIME format.\r\n", mixed)
	n := len(head) + len(mixed) + 8
	for _, pt := range parts {
		n += len(mixed) + 6 + 2
		for _, h := range pt.header {
			n += len(h) + 2
		}
		for _, b := range pt.body {
			n += len(b)
		}
	}
	e := make([]byte, 0, n)
	e = append(e, head...)
	for _, pt := range parts {
		e = append(e, "\r\n--"+mixed+"\r\n"...)
		for _, h := range pt.header {
			e = append(e, h+"\r\n"...)
		}
		e = append(e, "\r\n"...)
		for _, b := range pt.body {
			e = append(e, b...)
		}
	}
	e = append(e, "\r\n--"+mixed+"--\r\n"...)
	if bytes.Count(e, []byte("--"+mixed)) != len(parts)+1 {
		return "", nil, errors.New("build: boundary collision") // 96 random bits: never in practice
	}
	ct, prefix, suffix, err := p.Signer.SignParts(e, t, boundary("signed"))
	if err != nil {
		return "", nil, err
	}
	return ct, [][]byte{prefix, e, suffix}, nil
}

func daticertPart(d *daticert.Postacert) (part, error) {
	x, err := d.Marshal()
	if err != nil {
		return part{}, err
	}
	var b bytes.Buffer
	smime.WriteBase64(&b, x)
	return part{header: []string{
		`Content-Type: application/xml; name="daticert.xml"`,
		"Content-Transfer-Encoding: base64",
		`Content-Disposition: inline; filename="daticert.xml"`,
	}, body: [][]byte{bytes.TrimSuffix(b.Bytes(), []byte("\r\n"))}}, nil
}

// originalPart attaches a whole message, given as consecutive pieces, as
// postacert.eml (RFC 6109 §4.3). message/rfc822 allows only 7bit, 8bit or
// binary (RFC 2046 §5.2.1): the encoding names what the original holds,
// never re-encodes it.
func originalPart(pieces ...[]byte) part {
	cte := "7bit"
	run := 0 // length of the current line
	for _, p := range pieces {
		for _, c := range p {
			switch {
			case c == '\n':
				run = 0
				continue
			case c >= 0x80 || c == 0:
				if cte == "7bit" {
					cte = "8bit"
				}
			}
			run++
			if run > 999 { // 998 octets plus the CR
				cte = "binary"
			}
		}
	}
	if last := len(pieces) - 1; last >= 0 {
		pieces[last] = bytes.TrimSuffix(pieces[last], []byte("\r\n"))
	}
	return part{header: []string{
		`Content-Type: message/rfc822; name="postacert.eml"`,
		"Content-Transfer-Encoding: " + cte,
		`Content-Disposition: inline; filename="postacert.eml"`,
	}, body: pieces}
}

// sign turns the parts into a Message with the given top-level fields,
// adding MIME-Version and Content-Type.
func (p *Provider) sign(m *Message, parts []part) (*Message, error) {
	ct, body, err := p.assemble(m.Time, parts)
	if err != nil {
		return nil, err
	}
	m.Header = append(m.Header, Field{Name: "MIME-Version", Value: "1.0"}, Field{Name: "Content-Type", Value: ct})
	m.BodyPieces = body
	return m, nil
}

func mustLoad(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// NewIDAt returns a fresh message identifier made at t.
func (p *Provider) NewIDAt(t time.Time) string { return p.newID(t) }
