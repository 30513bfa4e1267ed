// Package lmtp is the delivery point (RFC 6109 §2.2.3, §3.3): an LMTP
// server that Postfix delivers to and that forwards to Dovecot's LMTP,
// emitting one delivery or non-delivery receipt per recipient of every
// valid transport envelope, according to Dovecot's per-recipient answer.
//
// The PEC rules live in Delivery (pure: message, results, instant in;
// receipts, log rows and per-recipient answers out); server.go is the
// LMTP adapter.
package lmtp

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/verify"
)

// Delivery holds the delivery point's rules.
type Delivery struct {
	Provider *build.Provider
	Config   *config.Config
	Roots    *smime.Roots
	Index    func() (filter.Directory, error)
}

// Message is a message classified for delivery.
type Message struct {
	Kind kind.Kind
	// PEC is set for a valid transport envelope: only those get receipts
	// (RFC 6109 §2.2.3; anomaly envelopes and notices get none).
	PEC       bool
	Tx        *build.Tx
	Postacert []byte // the original inside the envelope
	To, Cc    []string
	// Ours is set when the envelope is signed by us: it came from our own
	// access point and never passed our incoming point (same-provider
	// traffic, RFC 6109 §3.4), so the delivery point does the incoming
	// point's part for it: the take-charge to our own mailReceipt.
	Ours        bool
	MailReceipt string
	Notice      *verify.Report // for valid notices: their daticert (timer correlation)
	// SignerDomains are the managed domains of the notice's signer: a
	// notice counts for a recipient only when its provider manages it.
	SignerDomains []string
}

// Classify reads a message handed over for delivery.
func (d *Delivery) Classify(raw []byte) (*Message, error) {
	r := verify.Message(raw, d.Roots)
	if r.Message == nil {
		return &Message{Kind: kind.Ordinaria}, nil
	}
	m := &Message{Kind: r.Message.Kind}
	if !r.Valid() || r.Message.Daticert == nil {
		return m, nil
	}
	dir, err := d.Index()
	if err != nil {
		return nil, err // fail closed: tempfail, Postfix retries
	}
	_, mailReceipt, domains, err := dir.ProviderFor(r.Signature.Signer)
	if err != nil {
		return m, nil // the incoming point wraps these; here just deliver
	}
	orig := r.Message.Original
	m.Tx = build.TxFromDaticert(r.Message.Daticert, "")
	if m.Kind != kind.PostaCertificata {
		m.Notice = r
		m.SignerDomains = domains
		return m, nil
	}
	m.PEC = true
	m.Postacert = orig
	m.MailReceipt = mailReceipt
	m.Ours = d.Provider.Signer != nil && r.Signature.Signer.Equal(d.Provider.Signer.Cert)
	if o, err := build.ParseOriginal(orig); err == nil {
		m.To, m.Cc = o.To, o.Cc
		m.Tx.Subject = o.Subject
	}
	return m, nil
}

// Result is Dovecot's answer for one recipient: nil when stored.
type Result struct {
	Rcpt string
	Err  error
}

// Outcome is what the delivery point answers Postfix per recipient and
// what it must commit first.
type Outcome struct {
	Status map[string]error // per recipient; nil = 250
	Txn    store.Txn
}

// Decide turns Dovecot's per-recipient results into receipts (RFC 6109
// §3.3.2, §3.3.3) and the answers for Postfix:
//   - stored → delivery receipt in the requested form (To: the form asked
//     for; Cc: sintetica), 250 to Postfix;
//   - permanent failure → non-delivery notice with the coded cause, and
//     250 to Postfix: the PEC notice is the answer, an SMTP bounce to the
//     sender would duplicate it;
//   - temporary failure → the temporary error to Postfix and no receipt:
//     Postfix retries (RFC 6109 §2.2.2: at most 24 h, maximal_queue_lifetime).
func (d *Delivery) Decide(now time.Time, m *Message, mailFrom string, results []Result) (Outcome, error) {
	now = now.Truncate(time.Second)
	out := Outcome{Status: map[string]error{}}
	if !m.PEC {
		for _, r := range results {
			out.Status[r.Rcpt] = r.Err
		}
		if m.Notice != nil {
			out.Txn.Events = append(out.Txn.Events, d.noticeEvent(now, m, results))
			out.Txn.Marks = marks(now, m)
		}
		return out, nil
	}
	tx := m.Tx
	if m.Ours {
		// same provider: the take-charge our incoming point would have sent,
		// for the recipients this transaction settled (a temporarily failed
		// one is covered by the transaction that retries it)
		var ours []string
		for _, r := range results {
			if !temporary(r.Err) {
				ours = append(ours, strings.ToLower(r.Rcpt))
			}
		}
		if len(ours) > 0 {
			pic, err := d.Provider.PresaInCarico(now, tx, m.MailReceipt, ours)
			if err != nil {
				return out, err
			}
			out.Txn.Events = append(out.Txn.Events, d.event(now, tx, "presa-in-carico", "", ours, pic.ID))
			out.Txn.Outbox = append(out.Txn.Outbox, outgoing(pic))
		}
	}
	for _, r := range results {
		rcpt := strings.ToLower(r.Rcpt)
		var se *smtp.SMTPError
		switch {
		case r.Err == nil:
			n, err := d.Provider.AvvenutaConsegna(now, tx, rcpt, primary(rcpt, m.To, m.Cc), m.Postacert)
			if err != nil {
				return out, err
			}
			out.Status[r.Rcpt] = nil
			out.Txn.Events = append(out.Txn.Events, d.event(now, tx, "avvenuta-consegna", "", []string{rcpt}, n.ID))
			out.Txn.Outbox = append(out.Txn.Outbox, outgoing(n))
		case errors.As(r.Err, &se) && se.Code >= 500:
			errore, esteso := d.cause(rcpt, se)
			n, err := d.Provider.ErroreConsegna(now, tx, rcpt, errore, esteso)
			if err != nil {
				return out, err
			}
			out.Status[r.Rcpt] = nil
			out.Txn.Events = append(out.Txn.Events, d.event(now, tx, "errore-consegna", esteso, []string{rcpt}, n.ID))
			out.Txn.Outbox = append(out.Txn.Outbox, outgoing(n))
		default:
			out.Status[r.Rcpt] = r.Err // temporary: no receipt, Postfix retries
		}
	}
	return out, nil
}

// temporary reports a failure that Postfix will retry.
func temporary(err error) bool {
	var se *smtp.SMTPError
	return err != nil && !(errors.As(err, &se) && se.Code >= 500)
}

// primary: To recipients get the requested form; Cc the sintetica one; a
// recipient in neither (cannot tell) counts as primary (RFC 6109 §3.3.2.1).
func primary(rcpt string, to, cc []string) bool {
	for _, a := range to {
		if strings.EqualFold(a, rcpt) {
			return true
		}
	}
	for _, a := range cc {
		if strings.EqualFold(a, rcpt) {
			return false
		}
	}
	return true
}

// cause codes a permanent failure as "<status> - <provider> - <reason>",
// the form real providers use (PEC-SPEC §5.2, NOTA 12), with errore
// no-dest for an unknown mailbox (RFC 6109 §4.4).
func (d *Delivery) cause(rcpt string, se *smtp.SMTPError) (daticert.Errore, string) {
	code := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
		code = fmt.Sprint(se.Code)
	}
	name := d.Provider.Name
	switch {
	case !d.Config.IsManaged(rcpt):
		return daticert.NoDominio, code + " - " + name + " - dominio del destinatario non gestito"
	case se.EnhancedCode == smtp.EnhancedCode{5, 1, 1}:
		return daticert.NoDest, "5.1.1 - " + name + " - casella del destinatario inesistente"
	case se.EnhancedCode == smtp.EnhancedCode{5, 2, 2}:
		return daticert.Altro, "5.2.2 - " + name + " - casella del destinatario piena"
	case se.EnhancedCode == smtp.EnhancedCode{5, 2, 1}:
		return daticert.Altro, "5.2.1 - " + name + " - casella del destinatario disabilitata"
	}
	return daticert.Altro, code + " - " + name + " - " + strings.TrimSpace(se.Message)
}

func (d *Delivery) event(now time.Time, tx *build.Tx, typ, errText string, rcpts []string, related ...string) store.Event {
	subj := ""
	if tx.Oggetto != nil {
		subj = *tx.Oggetto
	}
	return store.Event{Time: now, Point: "delivery", Type: typ, PECID: tx.ID, MsgID: tx.MsgID, Sender: tx.Mittente,
		Recipients: rcpts, Subject: subj, Related: related, Provider: d.Provider.Name, Error: errText}
}

// noticeEvent logs a notice delivered to one of our users, so the sender's
// provider sees delivery and non-delivery receipts for its timers
// (PEC-SPEC §6.6 rule 4).
func (d *Delivery) noticeEvent(now time.Time, m *Message, results []Result) store.Event {
	p := m.Notice.Message
	var about []string
	about = append(about, p.Recipients()...)
	var rc []string
	for _, r := range results {
		rc = append(rc, r.Rcpt)
	}
	e := d.event(now, m.Tx, "ricevuta-"+string(m.Kind), "", rc)
	e.Related = about
	if n := p.Header.Get("Message-ID"); n != "" {
		e.Related = append(e.Related, n)
	}
	return e
}

// marks correlates a notice arriving for one of our users (or our service
// mailbox) with the envelope we sent, by identificativo and recipient
// (PEC-SPEC §6.6 rule 4), for the 12 h / 24 h timers. Only the provider
// that manages a recipient's domain can speak for that recipient.
func marks(now time.Time, m *Message) []store.Mark {
	p := m.Notice.Message
	var what string
	switch m.Kind {
	case kind.PresaInCarico:
		what = store.MarkPresa
	case kind.AvvenutaConsegna:
		what = store.MarkConsegna
	case kind.ErroreConsegna, kind.ErroreConsegnaVirus, kind.RilevazioneVirus:
		what = store.MarkErrore
	default:
		return nil
	}
	var out []store.Mark
	for _, rcpt := range p.Recipients() {
		if filter.InDomains(rcpt, m.SignerDomains) {
			out = append(out, store.Mark{PECID: p.Daticert.Identificativo, Rcpt: rcpt, What: what, At: now})
		}
	}
	return out
}

func outgoing(m *build.Message) store.Outgoing { return point.Outgoing(m) }
