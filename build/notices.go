package build

import (
	"fmt"
	"strings"
	"time"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/pecid"
)

// postacert returns the daticert of a notice of kind k at t for tx.
func (p *Provider) postacert(k kind.Kind, t time.Time, tx *Tx) *daticert.Postacert {
	d := &daticert.Postacert{
		Tipo:             k.Tipo(),
		Errore:           daticert.Nessuno,
		Mittente:         tx.Mittente,
		Destinatari:      tx.Destinatari,
		Risposte:         tx.Risposte,
		Oggetto:          tx.Oggetto,
		GestoreEmittente: p.Name,
		Identificativo:   tx.ID,
		Msgid:            tx.MsgID,
	}
	if d.Risposte == "" {
		d.Risposte = tx.Mittente
	}
	d.SetTime(t, p.loc())
	return d
}

// notice builds a signed notice: the common headers of RFC 6109 §2.1.1.1,
// the human text, daticert.xml and, when original is not nil, postacert.eml.
func (p *Provider) notice(k kind.Kind, t time.Time, tx *Tx, to string, d *daticert.Postacert, title string, text []string, original []byte, extra ...Field) (*Message, error) {
	t = t.Truncate(time.Second)
	id := p.newID(t)
	hname, hval := k.TypeHeader()
	to = headerValue(to)
	m := &Message{Kind: k, ID: id, MailFrom: p.ServiceAddr(), Rcpts: []string{to}, Time: t, Daticert: d}
	m.Header = []Field{
		{Name: "Date", Value: dateHeader(t, p.loc())},
		{Name: "From", Value: p.ServiceAddr()},
		{Name: "To", Value: to},
		{Name: "Subject", Value: subjectHeader(k.SubjectPrefix(), tx.Subject)},
		{Name: "Message-ID", Value: pecid.MessageID(id)},
		{Name: hname, Value: hval},
	}
	if k.VerificaSicurezza() {
		m.Header = append(m.Header, Field{Name: "X-VerificaSicurezza", Value: "errore"})
	}
	for _, f := range extra {
		m.Header = append(m.Header, Field{Name: f.Name, Value: headerValue(f.Value)})
	}
	if tx.MsgID != "" {
		m.Header = append(m.Header, Field{Name: "X-Riferimento-Message-ID", Value: headerValue(tx.MsgID)})
	}
	dp, err := daticertPart(d)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", k, err)
	}
	parts := []part{textParts(title, text), dp}
	if original != nil {
		parts = append(parts, originalPart(original))
	}
	return p.sign(m, parts)
}

// oggetto is the decoded subject for the human text.
func (tx *Tx) oggetto() string {
	if tx.Oggetto != nil {
		return *tx.Oggetto
	}
	return ""
}

func (tx *Tx) recipientLines(withType bool) string {
	var lines []string
	for _, d := range tx.Destinatari {
		if !withType {
			lines = append(lines, d.Addr)
		} else if d.Tipo == daticert.Esterno {
			lines = append(lines, d.Addr+` ("posta ordinaria")`)
		} else {
			lines = append(lines, d.Addr+` ("posta certificata")`)
		}
	}
	return strings.Join(lines, "\r\n")
}

func (p *Provider) when(t time.Time) string {
	day, clock, zone := humanTime(t, p.loc())
	return "Il giorno " + day + " alle ore " + clock + " " + zone
}

func idLine(id string) string { return "Identificativo messaggio: " + id }

// Accettazione builds the acceptance receipt to the sender, listing every
// recipient with its type (RFC 6109 §3.1.4).
func (p *Provider) Accettazione(t time.Time, tx *Tx) (*Message, error) {
	d := p.postacert(kind.Accettazione, t, tx)
	text := []string{
		fmt.Sprintf("%s il messaggio \"%s\" proveniente da \"%s\" ed indirizzato a:\r\n%s\r\nè stato accettato dal sistema ed inoltrato.",
			p.when(t), tx.oggetto(), tx.Mittente, tx.recipientLines(true)),
		idLine(tx.ID),
	}
	return p.notice(kind.Accettazione, t, tx, tx.Mittente, d, "Ricevuta di accettazione", text, nil)
}

// NonAccettazione builds the notice of non-acceptance for a formal
// exception; reason goes into the text and errore-esteso (RFC 6109 §3.1.2).
// It never includes the original.
func (p *Provider) NonAccettazione(t time.Time, tx *Tx, reason string) (*Message, error) {
	d := p.postacert(kind.NonAccettazione, t, tx)
	d.Errore = daticert.Altro
	d.SetErroreEsteso(reason)
	text := []string{
		fmt.Sprintf("%s nel messaggio \"%s\" proveniente da \"%s\" ed indirizzato a:\r\n%s\r\nè stato rilevato un problema che ne impedisce l'accettazione a causa di: %s.",
			p.when(t), tx.oggetto(), tx.Mittente, tx.recipientLines(false), reason),
		"Il messaggio non è stato accettato.",
		idLine(tx.ID),
	}
	return p.notice(kind.NonAccettazione, t, tx, tx.Mittente, d, "Avviso di non accettazione", text, nil)
}

// NonAccettazioneVirus builds the notice of non-acceptance for a virus
// found at the access point (RFC 6109 §3.1.3).
func (p *Provider) NonAccettazioneVirus(t time.Time, tx *Tx, virus string) (*Message, error) {
	d := p.postacert(kind.NonAccettazioneVirus, t, tx)
	d.Errore = daticert.Virus
	d.SetErroreEsteso("virus: " + virus)
	text := []string{
		fmt.Sprintf("%s nel messaggio \"%s\" proveniente da \"%s\" ed indirizzato a:\r\n%s\r\nè stato rilevato un problema di sicurezza: %s.",
			p.when(t), tx.oggetto(), tx.Mittente, tx.recipientLines(false), virus),
		"Il messaggio non è stato accettato.",
		idLine(tx.ID),
	}
	return p.notice(kind.NonAccettazioneVirus, t, tx, tx.Mittente, d, "Avviso di non accettazione per virus", text, nil)
}

// Preavviso builds the timeout notice for one certified recipient (RFC 6109
// §3.1.6): final=false is the 12 h warning, final=true the 24 h notice that
// ends the transaction. Both share the type header and Subject; the text
// tells them apart. daticert errore is "altro" with an errore-esteso that
// names the deadline (the rules do not fix the value; we choose a generic
// error because the notice reports a failure to deliver in time).
func (p *Provider) Preavviso(t time.Time, tx *Tx, rcpt string, sent time.Time, final bool) (*Message, error) {
	d := p.postacert(kind.PreavvisoErroreConsegna, t, tx)
	d.Errore = daticert.Altro
	d.Consegna = rcpt
	day, clock, zone := humanTime(sent, p.loc())
	var outcome string
	if final {
		d.SetErroreEsteso("mancata consegna entro 24 ore")
		outcome = "non è stato consegnato entro 24 ore dal suo invio. La transazione è da considerarsi conclusa con esito negativo."
	} else {
		d.SetErroreEsteso("mancata consegna entro 12 ore")
		outcome = "non è stato consegnato nelle prime 12 ore dal suo invio. Seguirà un ulteriore avviso se non perverrà conferma di consegna nelle successive 12 ore."
	}
	text := []string{
		fmt.Sprintf("%s si comunica che il messaggio \"%s\" inviato da \"%s\" il giorno %s alle ore %s %s ed indirizzato a \"%s\" %s",
			p.when(t), tx.oggetto(), tx.Mittente, day, clock, zone, rcpt, outcome),
		idLine(tx.ID),
	}
	return p.notice(kind.PreavvisoErroreConsegna, t, tx, tx.Mittente, d,
		"Avviso di mancata consegna per superamento dei tempi massimi previsti", text, nil)
}

// PresaInCarico builds the take-charge notice, one per incoming SMTP
// transaction, covering ricezione (our recipients of that transaction),
// sent to the sending provider's mailReceipt (RFC 6109 §3.2.1).
func (p *Provider) PresaInCarico(t time.Time, tx *Tx, mailReceipt string, ricezione []string) (*Message, error) {
	d := p.postacert(kind.PresaInCarico, t, tx)
	d.Ricezione = ricezione
	text := []string{
		fmt.Sprintf("%s il messaggio \"%s\" proveniente da \"%s\" ed indirizzato a:\r\n%s\r\nè stato accettato dal sistema.",
			p.when(t), tx.oggetto(), tx.Mittente, strings.Join(ricezione, "\r\n")),
		idLine(tx.ID),
	}
	return p.notice(kind.PresaInCarico, t, tx, mailReceipt, d, "Ricevuta di presa in carico", text, nil)
}

// RilevazioneVirus builds the virus-detection notice for one affected
// recipient, to the sending provider's mailReceipt, with X-Mittente naming
// the original sender (RFC 6109 §3.2.3). The recipient goes in <consegna>.
func (p *Provider) RilevazioneVirus(t time.Time, tx *Tx, mailReceipt, rcpt, virus string) (*Message, error) {
	d := p.postacert(kind.RilevazioneVirus, t, tx)
	d.Errore = daticert.Virus
	d.Consegna = rcpt
	d.SetErroreEsteso("virus: " + virus)
	text := []string{
		fmt.Sprintf("%s nel messaggio \"%s\" proveniente da \"%s\" ed indirizzato a \"%s\" è stato rilevato un problema di sicurezza: %s.",
			p.when(t), tx.oggetto(), tx.Mittente, rcpt, virus),
		"Il messaggio non è stato consegnato.",
		idLine(tx.ID),
	}
	return p.notice(kind.RilevazioneVirus, t, tx, mailReceipt, d, "Avviso di rilevazione virus", text, nil,
		Field{Name: "X-Mittente", Value: tx.Mittente})
}

// ErroreConsegnaVirus builds the virus non-delivery notice to our sender,
// from the data of a virus-detection notice received from the recipient's
// provider (RFC 6109 §3.2.4).
func (p *Provider) ErroreConsegnaVirus(t time.Time, tx *Tx, rcpt, errore string) (*Message, error) {
	d := p.postacert(kind.ErroreConsegnaVirus, t, tx)
	d.Errore = daticert.Virus
	d.Consegna = rcpt
	if errore == "" {
		errore = "virus"
	}
	d.SetErroreEsteso(errore)
	text := []string{
		fmt.Sprintf("%s nel messaggio \"%s\" proveniente da \"%s\" ed indirizzato a \"%s\" è stato rilevato un problema di sicurezza (%s).",
			p.when(t), tx.oggetto(), tx.Mittente, rcpt, errore),
		"Il messaggio non è stato consegnato.",
		idLine(tx.ID),
	}
	return p.notice(kind.ErroreConsegnaVirus, t, tx, tx.Mittente, d, "Avviso di mancata consegna per virus", text, nil)
}

// AvvenutaConsegna builds the delivery receipt for one recipient (RFC 6109
// §3.3.2). daticert ricevuta keeps the form the sender requested
// (tx.Ricevuta) while the content follows Form(tx.Ricevuta, rcpt is To):
// completa carries postacert (the original as delivered), breve its
// hashed form, sintetica nothing.
func (p *Provider) AvvenutaConsegna(t time.Time, tx *Tx, rcpt string, primary bool, postacert []byte) (*Message, error) {
	d := p.postacert(kind.AvvenutaConsegna, t, tx)
	d.Ricevuta = tx.RequestedForm()
	d.Consegna = rcpt
	form := Form(d.Ricevuta, primary)
	var original []byte
	title := "Ricevuta di avvenuta consegna"
	switch form {
	case daticert.Completa:
		original = postacert
	case daticert.Breve:
		title = "Ricevuta breve di avvenuta consegna"
		original = Breve(postacert)
	case daticert.Sintetica:
		title = "Ricevuta sintetica di avvenuta consegna"
	}
	text := []string{
		fmt.Sprintf("%s il messaggio \"%s\" proveniente da \"%s\" ed indirizzato a \"%s\" è stato correttamente consegnato al destinatario.",
			p.when(t), tx.oggetto(), tx.Mittente, rcpt),
		idLine(tx.ID),
	}
	if original != nil {
		text = append(text, "Il messaggio originale è incluso in allegato.")
	}
	return p.notice(kind.AvvenutaConsegna, t, tx, tx.Mittente, d, title, text, original)
}

// DefaultForm is the delivery receipt form of a sender who asked for none
// (RFC 6109 §3.3.2: without X-TipoRicevuta the receipt is complete). The
// one place the default is written.
const DefaultForm = daticert.Completa

// RequestedForm is the receipt form the sender asked for (X-TipoRicevuta
// at submission, ricevuta in the envelope's daticert), DefaultForm when
// none.
func (tx *Tx) RequestedForm() daticert.Ricevuta {
	if tx.Ricevuta == "" {
		return DefaultForm
	}
	return tx.Ricevuta
}

// Form is the receipt form one recipient gets (RFC 6109 §3.3.2.1–3): a
// primary (To) recipient gets what was requested, a Cc recipient the
// sintetica form; sintetica requested means sintetica for everybody.
func Form(req daticert.Ricevuta, primary bool) daticert.Ricevuta {
	if req == "" {
		req = DefaultForm
	}
	if !primary {
		return daticert.Sintetica
	}
	return req
}

// ErroreConsegna builds the non-delivery notice for one recipient (RFC 6109
// §3.3.3): errore is no-dest, no-dominio or altro; esteso the coded cause,
// e.g. "5.1.1 - Example PEC - casella inesistente".
func (p *Provider) ErroreConsegna(t time.Time, tx *Tx, rcpt string, errore daticert.Errore, esteso string) (*Message, error) {
	if errore != daticert.NoDest && errore != daticert.NoDominio && errore != daticert.Altro {
		return nil, fmt.Errorf("build: errore-consegna needs errore no-dest, no-dominio or altro, not %q", errore)
	}
	d := p.postacert(kind.ErroreConsegna, t, tx)
	d.Errore = errore
	d.Consegna = rcpt
	d.SetErroreEsteso(esteso)
	text := []string{
		fmt.Sprintf("%s nel messaggio \"%s\" proveniente da \"%s\" ed indirizzato a \"%s\" è stato rilevato il seguente errore: %s.",
			p.when(t), tx.oggetto(), tx.Mittente, rcpt, esteso),
		"Il messaggio è stato rifiutato dal sistema.",
		idLine(tx.ID),
	}
	return p.notice(kind.ErroreConsegna, t, tx, tx.Mittente, d, "Avviso di mancata consegna", text, nil)
}
