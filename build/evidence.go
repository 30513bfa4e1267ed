package build

import (
	"errors"
	"fmt"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
)

// Evidence is what a point certifies in one notice, before any form: the
// kind, the instant, the transaction and the facts that kind needs. The
// rules (package point, package timer) decide it; a Renderer writes it.
// Which fields a kind reads is in renderers below.
type Evidence struct {
	Kind kind.Kind
	Time time.Time // the transaction instant (RFC 6109 §4.1)
	Tx   *Tx
	// Rcpt is the recipient the notice is about (daticert consegna):
	// delivery, non-delivery, virus and timeout notices.
	Rcpt string
	// MailReceipt is where a notice for another provider goes (its
	// service mailbox): take-charge and virus detection notices.
	MailReceipt string
	// Ricezione lists the recipients a take-charge covers.
	Ricezione []string
	// Errore is the non-delivery cause's code (RFC 6109 §4.4).
	Errore daticert.Errore
	// Cause is the reason in words: the formal exception of a
	// non-acceptance, the virus found, the coded cause of a non-delivery
	// (errore-esteso).
	Cause string
	// Primary: the recipient is a To recipient (delivery receipt form,
	// RFC 6109 §3.3.2.1).
	Primary bool
	// Original is the message as delivered (postacert), for the delivery
	// receipt's complete and brief forms.
	Original []byte
	// Sent is when the envelope was dispatched; Final marks the 24 h
	// notice (timeout notices, RFC 6109 §3.1.6).
	Sent  time.Time
	Final bool
}

// Renderer turns evidence into the message that carries it. The PEC
// renderer is Provider.Render (daticert, Italian text, MIME, S/MIME
// signature); another form of evidence (e.g. ETSI EN 319 532 REM) is a
// second Renderer set in Provider.Renderer, the rules unchanged.
type Renderer interface {
	Render(Evidence) (*Message, error)
}

// renderers is the PEC form of each notice kind (RFC 6109 §3).
var renderers = map[kind.Kind]func(p *Provider, e Evidence) (*Message, error){
	kind.Accettazione:    func(p *Provider, e Evidence) (*Message, error) { return p.Accettazione(e.Time, e.Tx) },
	kind.NonAccettazione: func(p *Provider, e Evidence) (*Message, error) { return p.NonAccettazione(e.Time, e.Tx, e.Cause) },
	kind.NonAccettazioneVirus: func(p *Provider, e Evidence) (*Message, error) {
		return p.NonAccettazioneVirus(e.Time, e.Tx, e.Cause)
	},
	kind.PreavvisoErroreConsegna: func(p *Provider, e Evidence) (*Message, error) {
		return p.Preavviso(e.Time, e.Tx, e.Rcpt, e.Sent, e.Final)
	},
	kind.PresaInCarico: func(p *Provider, e Evidence) (*Message, error) {
		return p.PresaInCarico(e.Time, e.Tx, e.MailReceipt, e.Ricezione)
	},
	kind.RilevazioneVirus: func(p *Provider, e Evidence) (*Message, error) {
		return p.RilevazioneVirus(e.Time, e.Tx, e.MailReceipt, e.Rcpt, e.Cause)
	},
	kind.ErroreConsegnaVirus: func(p *Provider, e Evidence) (*Message, error) {
		return p.ErroreConsegnaVirus(e.Time, e.Tx, e.Rcpt, e.Cause)
	},
	kind.AvvenutaConsegna: func(p *Provider, e Evidence) (*Message, error) {
		return p.AvvenutaConsegna(e.Time, e.Tx, e.Rcpt, e.Primary, e.Original)
	},
	kind.ErroreConsegna: func(p *Provider, e Evidence) (*Message, error) {
		return p.ErroreConsegna(e.Time, e.Tx, e.Rcpt, e.Errore, e.Cause)
	},
}

// Render writes the evidence as the notice it is: with the renderer set
// in p.Renderer, else in the PEC form, signed with p's key.
func (p *Provider) Render(e Evidence) (*Message, error) {
	if p.Renderer != nil {
		return p.Renderer.Render(e)
	}
	if e.Tx == nil {
		return nil, errors.New("build: evidence without transaction data")
	}
	f, ok := renderers[e.Kind]
	if !ok {
		return nil, fmt.Errorf("build: %q is not a notice kind", e.Kind)
	}
	return f(p, e)
}
