package store

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The mailbox registry: the PEC mailboxes we host, with their legal life
// (package mailbox applies the rules; this is what the backends keep).
// Rows are never deleted, so an address once used is never given again.

// AtMailbox is the point of the registry's log rows: a change of a
// mailbox, by an operator (pecctl mailbox) or at the end of a read-only
// period. Recipients names the mailbox.
const AtMailbox EventPoint = "mailbox"

// The types of the registry's log rows.
const (
	TypeMailboxAdd      EventType = "mailbox-add"
	TypeMailboxSuspend  EventType = "mailbox-suspend"
	TypeMailboxClose    EventType = "mailbox-close"
	TypeMailboxReopen   EventType = "mailbox-reopen"
	TypeMailboxDisable  EventType = "mailbox-disable"
	TypeMailboxPassword EventType = "mailbox-password"
	TypeMailboxOptions  EventType = "mailbox-options"
)

// MailboxState is where a mailbox is in its life.
type MailboxState string

// The states.
const (
	// MailboxActive sends and receives PEC.
	MailboxActive MailboxState = "active"
	// MailboxSuspended keeps its mail readable but neither sends nor
	// receives; it can be reopened.
	MailboxSuspended MailboxState = "suspended"
	// MailboxClosed stays readable for the read-only period, then is
	// disabled; it can be reopened within that period.
	MailboxClosed MailboxState = "closed"
	// MailboxDisabled can no longer log in; it is final.
	MailboxDisabled MailboxState = "disabled"
)

// Valid reports whether s is one of the four states.
func (s MailboxState) Valid() bool {
	switch s {
	case MailboxActive, MailboxSuspended, MailboxClosed, MailboxDisabled:
		return true
	}
	return false
}

// MailboxOptions are a mailbox's own settings; empty fields take the
// provider's defaults.
type MailboxOptions struct {
	OrdinaryMail string // "accept" or "refuse" (RFC 6109 §2.2.2); "" = the provider's default
	ForwardTo    string // a copy of accepted ordinary mail goes there
	ReceiptForm  string // default delivery-receipt form: "completa", "breve", "sintetica"; "" = completa
	QuotaBytes   int64  // Dovecot quota; 0 = none
}

// Mailbox is one row of the registry.
type Mailbox struct {
	Address      string // lower case, the Dovecot login
	State        MailboxState
	Created      time.Time
	Changed      time.Time // last change of any field
	Closed       time.Time // when it was closed; zero unless closed or disabled
	PasswordHash string    // in Dovecot's {SCHEME}hash form
	Options      MailboxOptions
	// Version counts the changes: UpdateMailbox writes only over the
	// version it read (two operators at once cannot undo each other).
	Version int64
}

// Errors of the registry.
var (
	// ErrMailboxExists: the address is in the registry already, in any
	// state (addresses are never reassigned).
	ErrMailboxExists = errors.New("store: the mailbox address is registered already")
	// ErrMailboxChanged: the row changed since it was read (or is not
	// there); read it again and retry.
	ErrMailboxChanged = errors.New("store: the mailbox changed meanwhile (or is not registered): read it again")
)

// Mailboxes is the registry as the backends keep it. Each change is
// written with its log row (Point "mailbox") in one transaction.
type Mailboxes interface {
	// CreateMailbox inserts m (Version 1) and appends ev to the log; it
	// returns ErrMailboxExists, writing nothing, when the address is
	// registered in any state.
	CreateMailbox(m Mailbox, ev Event) error
	// UpdateMailbox replaces the row of m.Address when its version is
	// still m.Version, stores m.Version+1 and appends ev; otherwise it
	// returns ErrMailboxChanged, writing nothing.
	UpdateMailbox(m Mailbox, ev Event) error
	// Mailbox returns the row of addr (any case); ok is false when the
	// address was never registered.
	Mailbox(addr string) (m Mailbox, ok bool, err error)
	// ListMailboxes returns every row, by address.
	ListMailboxes() ([]Mailbox, error)
}

// CheckMailbox validates a row before a backend writes it.
func CheckMailbox(m Mailbox, ev Event) error {
	switch {
	case m.Address == "" || m.Address != strings.ToLower(m.Address) || !strings.Contains(m.Address, "@"):
		return fmt.Errorf("store: mailbox address %q: need a lower-case address", m.Address)
	case !m.State.Valid():
		return fmt.Errorf("store: mailbox %s: unknown state %q", m.Address, m.State)
	case !ValidTime(m.Created) || !ValidTime(m.Changed):
		return fmt.Errorf("store: mailbox %s: created/changed time missing or out of range", m.Address)
	case !m.Closed.IsZero() && !ValidTime(m.Closed):
		return fmt.Errorf("store: mailbox %s: closed time out of range", m.Address)
	case ev.Point != AtMailbox:
		return fmt.Errorf("store: mailbox %s: the log row must be of point \"mailbox\", not %q", m.Address, ev.Point)
	}
	return nil
}
