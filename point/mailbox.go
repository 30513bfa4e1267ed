package point

import (
	"strings"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/store"
)

// Mailboxes with a legal life (package mailbox keeps the registry): the
// rules the points apply to a mailbox's state and options.

// MailboxRegistry is the mailbox registry as the rules read it (package
// mailbox's Cache): the state in force at now and the mailbox's options.
// ok is false for an address that was never registered: it keeps the
// behaviour of the static configuration. An error means the registry
// cannot be read, and the caller fails closed.
type MailboxRegistry interface {
	MailboxStatus(addr string, now time.Time) (st MailboxStatus, ok bool, err error)
	// MailboxOptions are addr's options alone (they do not depend on
	// the instant).
	MailboxOptions(addr string) (o store.MailboxOptions, ok bool, err error)
}

// MailboxStatus is a registered mailbox as the rules see it.
type MailboxStatus struct {
	State   store.MailboxState // already disabled when the read-only period is over
	Options store.MailboxOptions
}

// MayUse tells what a state allows: submission (the access point),
// reception of PEC and ordinary mail (the delivery point) and login
// (Dovecot, through the users file package mailbox writes).
//
//   - active: everything;
//   - suspended: login only: the holder reads the mail it has, sends and
//     receives nothing until reopened;
//   - closed: login only, for the read-only period;
//   - disabled: nothing.
func MayUse(s store.MailboxState) (submit, receive, login bool) {
	switch s {
	case store.MailboxActive:
		return true, true, true
	case store.MailboxSuspended, store.MailboxClosed:
		return false, false, true
	}
	return false, false, false
}

// SubmissionRefusal is the SMTP answer of the access point to a message
// submitted by a mailbox whose state forbids sending. It is a 5xx refusal
// (550 5.7.1), not a notice of non-acceptance: RFC 6109 §3.1.2 gives that
// notice for a message that fails the formal checks or carries a virus,
// both properties of the message; a mailbox that has no service cannot
// open a PEC transaction at all, so no PEC id is issued, nothing is
// signed and the client sees the refusal at once. The refusal is logged
// (non-accettazione, "solo errore SMTP") so the log keeps the attempt.
func SubmissionRefusal(addr string, s store.MailboxState) Decision {
	text := "PEC: mailbox " + strings.ToLower(addr) + " is " + string(s) + ": it cannot send; ask the provider"
	return reply(Reject, 550, "5.7.1", text)
}

// mailboxReasons are the log's words for a mailbox that cannot send.
var mailboxReasons = map[store.MailboxState]string{
	store.MailboxSuspended: "casella sospesa: invio non consentito",
	store.MailboxClosed:    "casella chiusa: invio non consentito",
	store.MailboxDisabled:  "casella disabilitata: invio non consentito",
}

// mailboxGate applies the sender's state and options at the access point:
// a mailbox that may not send is refused (SubmissionRefusal); an active
// one's default receipt form fills in for a message that asks for none
// (X-TipoRicevuta absent). refused reports that d is the answer.
func (a *Access) mailboxGate(now time.Time, env Envelope, tx *build.Tx, o *build.Original) (d Decision, refused bool) {
	if a.Mailboxes == nil {
		return Decision{}, false
	}
	st, ok, err := a.Mailboxes.MailboxStatus(env.AuthUser, now)
	if err != nil {
		a.log().Error("cannot read the mailbox registry, tempfailing", "mailbox", env.AuthUser, "error", err)
		return tempfail("4.3.0", "PEC: mailbox registry not available, try again later"), true
	}
	if !ok {
		return Decision{}, false
	}
	if submit, _, _ := MayUse(st.State); !submit {
		d := SubmissionRefusal(env.AuthUser, st.State)
		d.Txn.Events = []store.Event{a.event(now, env, tx, nil, store.TypeNonAccettazione, mailboxReasons[st.State]+" (solo errore SMTP)")}
		return d, true
	}
	if f := daticert.Ricevuta(st.Options.ReceiptForm); o != nil && o.TipoRicevuta == "" && f.Valid() {
		tx.Ricevuta = f
	}
	return Decision{}, false
}

// registryOptions are addr's options from the registry, when it is
// registered and the registry answers; otherwise the static policy
// decides (the registry's errors fail closed at the state checks, which
// come first at the access and delivery points).
func (p *Policy) registryOptions(addr string) (store.MailboxOptions, bool) {
	if p.Registry == nil {
		return store.MailboxOptions{}, false
	}
	o, ok, err := p.Registry.MailboxOptions(addr)
	if err != nil || !ok {
		return store.MailboxOptions{}, false
	}
	return o, true
}
