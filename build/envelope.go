package build

import (
	"bytes"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/pecid"
)

// Original is a message as a user submitted it or as it arrived from
// outside PEC, split into the parts the rules look at.
type Original struct {
	Raw     []byte // CRLF
	Header  rawmime.Header
	Body    []byte
	From    []string // every address in From
	To, Cc  []string
	Bcc     []string
	ReplyTo string
	Subject string // as received
	MsgID   string // with angle brackets, "" when absent
	// TipoRicevuta is the form the sender asked for; "" when the header is
	// absent or holds another value (then completa applies).
	TipoRicevuta daticert.Ricevuta
	// AddrErr names the first address field that could not be parsed.
	AddrErr error
}

// ParseOriginal splits raw (LF or CRLF) into an Original. It fails only
// when raw has no header section; unparsable address fields are reported
// in AddrErr so the access point can name them in its notice.
func ParseOriginal(raw []byte) (*Original, error) {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return nil, err
	}
	o := &Original{Raw: raw, Header: h, Body: body, Subject: h.Get("Subject"), MsgID: strings.TrimSpace(h.Get("Message-ID"))}
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"From", &o.From}, {"To", &o.To}, {"Cc", &o.Cc}, {"Bcc", &o.Bcc}} {
		for _, v := range h.Values(f.name) {
			if strings.TrimSpace(v) == "" {
				continue
			}
			list, err := (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(v)
			if err != nil {
				if o.AddrErr == nil {
					o.AddrErr = fmt.Errorf("%s field %q is not a valid address list: %v", f.name, v, err)
				}
				if f.name == "Bcc" { // any value in Bcc is an exception (RFC 6109 §2.1)
					*f.dst = append(*f.dst, v)
				}
				continue
			}
			for _, a := range list {
				*f.dst = append(*f.dst, strings.ToLower(a.Address))
			}
		}
	}
	if v := h.Get("Reply-To"); v != "" {
		if a, err := (&mail.AddressParser{WordDecoder: wordDecoder}).Parse(v); err == nil {
			o.ReplyTo = strings.ToLower(a.Address)
		} else if list, err := mail.ParseAddressList(v); err == nil && len(list) > 0 {
			o.ReplyTo = strings.ToLower(list[0].Address)
		}
	}
	if r := daticert.Ricevuta(strings.ToLower(h.Get("X-TipoRicevuta"))); r.Valid() {
		o.TipoRicevuta = r
	}
	return o, nil
}

// Tx returns the transaction data of a message accepted with PEC id id;
// classify tells certified from ordinary recipients (the providers' index).
func (o *Original) Tx(id, sender string, classify func(addr string) daticert.DestTipo) *Tx {
	tx := &Tx{ID: id, MsgID: o.MsgID, Mittente: sender, Risposte: o.ReplyTo, Subject: o.Subject, Ricevuta: o.TipoRicevuta}
	if tx.Risposte == "" {
		tx.Risposte = sender
	}
	if o.Header.Has("Subject") {
		s := DecodeSubject(o.Subject)
		tx.Oggetto = &s
	}
	seen := map[string]bool{}
	for _, a := range append(append([]string{}, o.To...), o.Cc...) {
		if seen[a] {
			continue
		}
		seen[a] = true
		tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Addr: a, Tipo: classify(a)})
	}
	return tx
}

// WithMessageID returns the original's bytes with its Message-ID replaced
// by <id> and X-Riferimento-Message-ID naming the old one added right
// after it (RFC 6109 §2.2.1); every other byte is unchanged.
func (o *Original) WithMessageID(id string) []byte {
	return concat(o.headerWithMessageID(id), [][]byte{o.Body})
}

// headerWithMessageID is the header section of WithMessageID.
func (o *Original) headerWithMessageID(id string) []byte {
	var b bytes.Buffer
	done := false
	for _, f := range o.Header {
		if strings.EqualFold(f.Name, "Message-ID") && !done {
			b.WriteString("Message-ID: " + pecid.MessageID(id) + "\r\n")
			if o.MsgID != "" {
				b.WriteString("X-Riferimento-Message-ID: " + o.MsgID + "\r\n")
			}
			done = true
			continue
		}
		if strings.EqualFold(f.Name, "Message-ID") || strings.EqualFold(f.Name, "X-Riferimento-Message-ID") {
			continue
		}
		b.Write(f.Raw)
		b.WriteString("\r\n")
	}
	if !done {
		b.WriteString("Message-ID: " + pecid.MessageID(id) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// envelopeCopied are the fields an envelope carries over unchanged from
// the original (RFC 6109 §2.1.1.2).
var envelopeCopied = []string{"Received", "Return-Path", "To", "Cc", "Reply-To"}

func copiedFields(h rawmime.Header, also ...string) []Field {
	var out []Field
	for _, f := range h {
		for _, n := range append(envelopeCopied, also...) {
			if strings.EqualFold(f.Name, n) {
				// the raw value keeps its folding; drop only the name and colon
				v := strings.TrimPrefix(string(f.Raw[len(f.Name):]), ":")
				out = append(out, Field{Name: f.Name, Value: strings.TrimPrefix(v, " "), Copied: true})
			}
		}
	}
	return out
}

// PerContoDi is the envelope From: "Per conto di: sender" <service address>
// (RFC 6109 §3.1.5, in the Italian wording real providers use).
func (p *Provider) PerContoDi(sender string) string {
	return (&mail.Address{Name: "Per conto di: " + sender, Address: p.ServiceAddr()}).String()
}

// MaxReferencedMessageID is the longest original Message-ID the transport
// envelope can reference: "X-Riferimento-Message-ID: " and the identifier
// on one line of at most 998 octets (RFC 5322 §2.1.1; an identifier has
// no white space to fold at). The access point refuses a longer one.
const MaxReferencedMessageID = maxLine - len("X-Riferimento-Message-ID: ")

// TransportEnvelope wraps an accepted original in the signed transport
// envelope (RFC 6109 §3.1.5). Its Message-ID is tx.ID, its SMTP envelope
// the original's (reverse-path sender, forward-paths rcpts).
func (p *Provider) TransportEnvelope(t time.Time, tx *Tx, o *Original, rcpts []string) (*Message, error) {
	if len(tx.MsgID) > MaxReferencedMessageID {
		return nil, fmt.Errorf("build: the original's Message-ID (%d octets) is longer than the envelope can reference (%d)", len(tx.MsgID), MaxReferencedMessageID)
	}
	t = t.Truncate(time.Second)
	k := kind.PostaCertificata
	m := &Message{Kind: k, ID: tx.ID, MailFrom: tx.Mittente, Rcpts: rcpts, Time: t}
	m.Header = copiedFields(o.Header)
	hasReplyTo := o.Header.Has("Reply-To")
	m.Header = append(m.Header,
		Field{Name: "Date", Value: dateHeader(t, p.loc())},
		Field{Name: "From", Value: p.PerContoDi(tx.Mittente)},
		Field{Name: "Subject", Value: subjectHeader(k.SubjectPrefix(), tx.Subject)},
		Field{Name: "Message-ID", Value: pecid.MessageID(tx.ID)},
	)
	if tx.MsgID != "" {
		m.Header = append(m.Header, Field{Name: "X-Riferimento-Message-ID", Value: tx.MsgID})
	}
	if !hasReplyTo {
		m.Header = append(m.Header, Field{Name: "Reply-To", Value: tx.Mittente})
	}
	m.Header = append(m.Header,
		Field{Name: "X-Trasporto", Value: "posta-certificata"},
		Field{Name: "X-TipoRicevuta", Value: string(tx.RequestedForm())},
	)
	d := p.postacert(k, t, tx)
	d.Ricevuta = tx.RequestedForm()
	m.Daticert = d
	dp, err := daticertPart(d)
	if err != nil {
		return nil, fmt.Errorf("build transport envelope: %w", err)
	}
	text := []string{
		fmt.Sprintf("%s il messaggio \"%s\" è stato inviato da \"%s\" indirizzato a:\r\n%s",
			p.when(t), tx.oggetto(), tx.Mittente, tx.recipientLines(false)),
		"Il messaggio originale è incluso in allegato.",
		idLine(tx.ID),
	}
	return p.sign(m, []part{textParts("Messaggio di posta certificata", text), dp, originalPart(o.headerWithMessageID(tx.ID), o.Body)})
}

// Anomalia wraps a received message that is not a valid PEC message in the
// signed anomaly envelope (RFC 6109 §3.2.2): the human text naming the
// error, then the whole message as received; no daticert. It keeps the
// received Message-ID (a fresh id when there is none) and the SMTP
// envelope (mailFrom, rcpts).
func (p *Provider) Anomalia(t time.Time, received *Original, mailFrom string, rcpts []string, reason string) (*Message, error) {
	t = t.Truncate(time.Second)
	k := kind.Anomalia
	sender := mailFrom
	if len(received.From) > 0 {
		sender = received.From[0]
	}
	if sender == "" {
		sender = "MAILER-DAEMON"
	}
	id := pecid.Bare(received.MsgID)
	m := &Message{Kind: k, MailFrom: mailFrom, Rcpts: rcpts, Time: t}
	m.Header = copiedFields(received.Header)
	if !hasValue(received.Header, "To") {
		// RFC 6109 §3.2.2 has the envelope inherit the received To
		// unchanged. With none (or only blank ones) to inherit, it names
		// the SMTP forward-paths it is delivered to, which RFC 6109 §2.1
		// makes the recipients' data, as its text does: a recipient sees
		// no address the text does not already show, and every
		// generated message has a To.
		m.Header = dropFields(m.Header, "To")
		m.Header = append(m.Header, Field{Name: "To", Value: addressList(rcpts)})
	}
	if id == "" {
		id = p.newID(t)
	} else {
		m.Header = append(m.Header, Field{Name: "Message-ID", Value: received.MsgID, Copied: true})
	}
	m.ID = id
	if received.MsgID == "" {
		m.Header = append(m.Header, Field{Name: "Message-ID", Value: pecid.MessageID(id)})
	}
	m.Header = append(m.Header,
		Field{Name: "Date", Value: dateHeader(t, p.loc())},
		Field{Name: "From", Value: p.PerContoDi(sender)},
		Field{Name: "Subject", Value: subjectHeader(k.SubjectPrefix(), received.Subject)},
		Field{Name: "X-Trasporto", Value: "errore"},
	)
	if !received.Header.Has("Reply-To") {
		m.Header = append(m.Header, Field{Name: "Reply-To", Value: sender})
	}
	all := append(append([]string{}, received.To...), received.Cc...)
	if len(all) == 0 {
		all = rcpts
	}
	text := []string{
		fmt.Sprintf("%s è stato ricevuto il messaggio \"%s\" proveniente da \"%s\" ed indirizzato a:\r\n%s",
			p.when(t), DecodeSubject(received.Subject), sender, strings.Join(all, "\r\n")),
		fmt.Sprintf("Tali dati non sono stati certificati per il seguente errore: %s.", reason),
		"Il messaggio originale è incluso in allegato.",
	}
	return p.sign(m, []part{textParts("Anomalia nel messaggio", text), originalPart(received.Raw)})
}

// hasValue reports whether h has a field name with a non-blank value.
func hasValue(h rawmime.Header, name string) bool {
	for _, v := range h.Values(name) {
		if strings.TrimSpace(v) != "" {
			return true
		}
	}
	return false
}

// dropFields returns fs without the fields named name.
func dropFields(fs []Field, name string) []Field {
	out := fs[:0]
	for _, f := range fs {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	return out
}

// addressList is an address-list field value with one address per line
// (folded after each comma, so that no line nears the 998-octet limit
// whatever the number of addresses); with no address, the empty group
// "undisclosed-recipients:;" (RFC 5322 §3.4).
func addressList(addrs []string) string {
	if len(addrs) == 0 {
		return "undisclosed-recipients:;"
	}
	list := make([]string, len(addrs))
	for i, a := range addrs {
		list[i] = (&mail.Address{Address: a}).String()
	}
	return strings.Join(list, ",\r\n ")
}

// TxFromDaticert rebuilds the transaction data from a received envelope's
// or notice's daticert, so that the notices a recipient's provider emits
// copy intestazione, identificativo and msgid unchanged (PEC-SPEC §6.6
// rules 3–4). subject is the original Subject as received (from the
// carried postacert.eml, or "" to use oggetto).
//
// What comes from another provider's daticert ends up in header fields
// and SMTP commands of our notices: control characters are removed from
// the addresses and identifiers, and the subject is RFC 2047-encoded when
// it holds any, so no field can be injected.
func TxFromDaticert(d *daticert.Postacert, subject string) *Tx {
	dest := make([]daticert.Destinatario, len(d.Destinatari))
	for i, x := range d.Destinatari {
		dest[i] = daticert.Destinatario{Addr: headerValue(x.Addr), Tipo: x.Tipo}
	}
	tx := &Tx{ID: headerValue(d.Identificativo), MsgID: headerValue(d.Msgid), Mittente: headerValue(d.Mittente), Destinatari: dest,
		Risposte: headerValue(d.Risposte), Oggetto: d.Oggetto, Subject: subject, Ricevuta: d.Ricevuta}
	if subject == "" && d.Oggetto != nil {
		tx.Subject = encodeIfNeeded(*d.Oggetto)
	}
	return tx
}

// encodeIfNeeded makes a decoded subject safe for a header again: RFC 2047
// words when it holds 8-bit or control characters.
func encodeIfNeeded(s string) string {
	if needsEncoding(s) {
		return mime.QEncoding.Encode("utf-8", s)
	}
	return s
}

func needsEncoding(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x7f || c < 0x20 && c != '\t' {
			return true
		}
	}
	return false
}

// headerValue drops control characters (CR and LF above all) from a value
// that goes into a header field or an SMTP command.
func headerValue(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
