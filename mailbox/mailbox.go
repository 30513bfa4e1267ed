// Package mailbox keeps the registry of the PEC mailboxes we host and
// their legal life (issue 17): a mailbox is added active, may be
// suspended and reopened, and is closed at the end of the contract. A
// closed mailbox stays readable over IMAP for the read-only period
// (default 30 days; no submission, PEC for it answered with a
// non-delivery notice), then is disabled: its login fails. An address
// once registered is never given again, even after closure. Every change
// is a row of the hash-chained log (point "mailbox") written in the same
// transaction as the change.
//
// Dovecot reads users and passwords from a passwd-file this package
// writes from the registry (passwd.go); the points read states and
// per-mailbox options through Cache (cache.go).
package mailbox

import (
	"errors"
	"fmt"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/point"
	"log/slog"
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

// DefaultReadOnly is how long a closed mailbox stays readable.
const DefaultReadOnly = 30 * 24 * time.Hour

// The log rows' types (store.Event.Type, Point "mailbox"). Recipients
// names the mailbox, Related the change ("active -> closed"), Subject
// the operator's note; the password hash is never logged.
const (
	EventAdd      = store.TypeMailboxAdd
	EventSuspend  = store.TypeMailboxSuspend
	EventClose    = store.TypeMailboxClose
	EventReopen   = store.TypeMailboxReopen
	EventDisable  = store.TypeMailboxDisable
	EventPassword = store.TypeMailboxPassword
	EventOptions  = store.TypeMailboxOptions
)

// Registry is the library API of the registry (pecctl mailbox uses it).
type Registry struct {
	Store store.Mailboxes
	// Clock gives the instant of each change (one per change); nil is
	// time.Now.
	Clock func() time.Time
	// ReadOnly is the read-only period of a closed mailbox; 0 is
	// DefaultReadOnly.
	ReadOnly time.Duration
	// Provider names us in the log rows.
	Provider string
	// Domains, when set, are the only domains a mailbox may be added in
	// ([provider] managed_domains).
	Domains []string
	Log     *slog.Logger
}

func (r *Registry) now() time.Time {
	if r.Clock == nil {
		return time.Now().UTC().Truncate(time.Second)
	}
	return r.Clock().UTC().Truncate(time.Second)
}

func (r *Registry) period() time.Duration { return Period(r.ReadOnly) }

// Period is d, or DefaultReadOnly when d is not positive.
func Period(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultReadOnly
	}
	return d
}

// Effective is the state of m in force at now: a closed mailbox whose
// read-only period is over is disabled even before Sweep records it.
func Effective(m store.Mailbox, now time.Time, period time.Duration) store.MailboxState {
	if m.State == store.MailboxClosed && !now.Before(m.Closed.Add(Period(period))) {
		return store.MailboxDisabled
	}
	return m.State
}

// Op is a change of state.
type Op string

// The changes of state.
const (
	OpSuspend Op = "suspend"
	OpClose   Op = "close"
	OpReopen  Op = "reopen"
	OpDisable Op = "disable" // by Sweep, when the read-only period is over
)

var opEvents = map[Op]store.EventType{OpSuspend: EventSuspend, OpClose: EventClose, OpReopen: EventReopen, OpDisable: EventDisable}

// Transition applies op to m at now (the pure rule):
//
//	active    --suspend--> suspended --reopen--> active
//	active, suspended --close--> closed --reopen (within the period)--> active
//	closed    --disable (after the period)--> disabled (final)
//
// Anything else is refused with an error that says what is possible.
func Transition(m store.Mailbox, op Op, now time.Time, period time.Duration) (store.Mailbox, error) {
	cur := Effective(m, now, period)
	next := m
	next.Changed = now
	switch {
	case op == OpSuspend && cur == store.MailboxActive:
		next.State = store.MailboxSuspended
	case op == OpClose && (cur == store.MailboxActive || cur == store.MailboxSuspended):
		next.State, next.Closed = store.MailboxClosed, now
	case op == OpReopen && (cur == store.MailboxSuspended || cur == store.MailboxClosed):
		next.State, next.Closed = store.MailboxActive, time.Time{}
	case op == OpDisable && m.State == store.MailboxClosed && cur == store.MailboxDisabled:
		next.State = store.MailboxDisabled
	case cur == store.MailboxDisabled:
		return m, fmt.Errorf("mailbox %s is disabled (closed on %s, read-only period over): it cannot be changed or reopened, and its address is never given again",
			m.Address, m.Closed.Format(time.DateOnly))
	case op == OpReopen && cur == store.MailboxActive:
		return m, fmt.Errorf("mailbox %s is active already", m.Address)
	case op == OpClose && cur == store.MailboxClosed:
		return m, fmt.Errorf("mailbox %s is closed already (on %s; readable until %s)", m.Address,
			m.Closed.Format(time.DateOnly), m.Closed.Add(Period(period)).Format(time.DateOnly))
	default:
		return m, fmt.Errorf("mailbox %s is %s: cannot %s it (suspend needs an active mailbox; reopen a suspended one, or a closed one within its read-only period)",
			m.Address, cur, op)
	}
	return next, nil
}

// CheckAddress validates an address for registration.
func (r *Registry) CheckAddress(addr string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(addr))
	local, dom, ok := strings.Cut(a, "@")
	switch {
	case !ok || local == "" || dom == "" || strings.ContainsAny(a, ":\n\r\t <>,;\"\\") || strings.Count(a, "@") != 1:
		return "", fmt.Errorf("%q is not a mailbox address (local@domain, no spaces, ':' or quotes)", addr)
	case len(r.Domains) > 0 && !point.InDomains(a, r.Domains):
		return "", fmt.Errorf("%s is not in a managed domain (%s): add the domain to [provider] managed_domains first", a, strings.Join(r.Domains, ", "))
	}
	return a, nil
}

// ErrNotRegistered is returned for an address that was never registered.
var ErrNotRegistered = errors.New("mailbox not registered")

// Add registers addr as an active mailbox with password and options. An
// address registered before, in any state, is refused: a PEC address is
// never reassigned, even after closure.
func (r *Registry) Add(addr, password string, opts store.MailboxOptions, note string) (store.Mailbox, error) {
	a, err := r.CheckAddress(addr)
	if err != nil {
		return store.Mailbox{}, err
	}
	if err := CheckOptions(opts); err != nil {
		return store.Mailbox{}, err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return store.Mailbox{}, err
	}
	now := r.now()
	m := store.Mailbox{Address: a, State: store.MailboxActive, Created: now, Changed: now, PasswordHash: hash, Options: opts}
	err = r.Store.CreateMailbox(m, r.event(now, EventAdd, a, "-> active", note))
	if errors.Is(err, store.ErrMailboxExists) {
		old, ok, gerr := r.Store.Mailbox(a)
		if gerr != nil || !ok {
			return store.Mailbox{}, fmt.Errorf("mailbox %s is registered already", a)
		}
		return store.Mailbox{}, refuseReuse(old, now, r.period())
	}
	if err != nil {
		return store.Mailbox{}, err
	}
	m.Version = 1
	r.log().Info("mailbox added", "mailbox", a)
	return m, nil
}

// refuseReuse is the error for adding an address that is registered.
func refuseReuse(m store.Mailbox, now time.Time, period time.Duration) error {
	switch st := Effective(m, now, period); st {
	case store.MailboxClosed:
		return fmt.Errorf("mailbox %s was closed on %s and is read-only until %s: a PEC address is never reassigned, even after closure; choose another address, or give it back to the same holder with `pecctl mailbox reopen %s` before then",
			m.Address, m.Closed.Format(time.DateOnly), m.Closed.Add(period).Format(time.DateOnly), m.Address)
	case store.MailboxDisabled:
		return fmt.Errorf("mailbox %s was closed on %s and is disabled: a PEC address is never reassigned, even after closure; choose another address",
			m.Address, m.Closed.Format(time.DateOnly))
	default:
		return fmt.Errorf("mailbox %s is registered already (%s since %s): use `pecctl mailbox show %s`",
			m.Address, st, m.Changed.Format(time.DateOnly), m.Address)
	}
}

// Get returns the mailbox of addr with its state in force now.
func (r *Registry) Get(addr string) (store.Mailbox, error) {
	m, ok, err := r.Store.Mailbox(addr)
	if err != nil {
		return m, err
	}
	if !ok {
		return m, fmt.Errorf("%s: %w (pecctl mailbox list shows the registered ones)", strings.ToLower(addr), ErrNotRegistered)
	}
	return m, nil
}

// List returns every mailbox.
func (r *Registry) List() ([]store.Mailbox, error) { return r.Store.ListMailboxes() }

// State is the state of m in force now (closed turns disabled after the
// read-only period).
func (r *Registry) State(m store.Mailbox) store.MailboxState {
	return Effective(m, r.now(), r.period())
}

// ReadableUntil is when a closed mailbox's read-only period ends.
func (r *Registry) ReadableUntil(m store.Mailbox) time.Time { return m.Closed.Add(r.period()) }

// Change applies op to addr and logs it.
func (r *Registry) Change(addr string, op Op, note string) (store.Mailbox, error) {
	return r.update(addr, func(m store.Mailbox, now time.Time) (store.Mailbox, store.EventType, string, error) {
		next, err := Transition(m, op, now, r.period())
		return next, opEvents[op], fmt.Sprintf("%s -> %s", Effective(m, now, r.period()), next.State), err
	}, note)
}

// Suspend, Close and Reopen are Change with their Op.
func (r *Registry) Suspend(addr, note string) (store.Mailbox, error) {
	return r.Change(addr, OpSuspend, note)
}

// Close starts the read-only period of addr.
func (r *Registry) Close(addr, note string) (store.Mailbox, error) {
	return r.Change(addr, OpClose, note)
}

// Reopen makes a suspended mailbox, or a closed one within its read-only
// period, active again (for the same holder).
func (r *Registry) Reopen(addr, note string) (store.Mailbox, error) {
	return r.Change(addr, OpReopen, note)
}

// SetPassword replaces the password of a mailbox that is not disabled.
func (r *Registry) SetPassword(addr, password, note string) (store.Mailbox, error) {
	hash, err := HashPassword(password)
	if err != nil {
		return store.Mailbox{}, err
	}
	return r.update(addr, func(m store.Mailbox, now time.Time) (store.Mailbox, store.EventType, string, error) {
		if Effective(m, now, r.period()) == store.MailboxDisabled {
			return m, "", "", fmt.Errorf("mailbox %s is disabled: its password cannot be set", m.Address)
		}
		m.PasswordHash, m.Changed = hash, now
		return m, EventPassword, "password", nil
	}, note)
}

// SetOptions replaces the options of a mailbox.
func (r *Registry) SetOptions(addr string, opts store.MailboxOptions, note string) (store.Mailbox, error) {
	if err := CheckOptions(opts); err != nil {
		return store.Mailbox{}, err
	}
	return r.update(addr, func(m store.Mailbox, now time.Time) (store.Mailbox, store.EventType, string, error) {
		m.Options, m.Changed = opts, now
		return m, EventOptions, describeOptions(opts), nil
	}, note)
}

// update reads addr, applies fn at one instant and writes the result with
// its log row, retrying a few times when another change came first.
func (r *Registry) update(addr string, fn func(store.Mailbox, time.Time) (store.Mailbox, store.EventType, string, error), note string) (store.Mailbox, error) {
	for attempt := 0; ; attempt++ {
		m, err := r.Get(addr)
		if err != nil {
			return m, err
		}
		now := r.now()
		next, typ, change, err := fn(m, now)
		if err != nil {
			return m, err
		}
		err = r.Store.UpdateMailbox(next, r.event(now, typ, m.Address, change, note))
		if errors.Is(err, store.ErrMailboxChanged) && attempt < 3 {
			continue
		}
		if err != nil {
			return m, err
		}
		next.Version++
		r.log().Info("mailbox changed", "mailbox", m.Address, "change", typ, "state", next.State)
		return next, nil
	}
}

// Sweep disables the closed mailboxes whose read-only period is over,
// each with its log row, and returns them. Several nodes may sweep at
// once: each mailbox is disabled by one of them.
func (r *Registry) Sweep() ([]string, error) {
	list, err := r.Store.ListMailboxes()
	if err != nil {
		return nil, err
	}
	var done []string
	for _, m := range list {
		now := r.now()
		if m.State != store.MailboxClosed || Effective(m, now, r.period()) != store.MailboxDisabled {
			continue
		}
		next, err := Transition(m, OpDisable, now, r.period())
		if err != nil {
			return done, err
		}
		err = r.Store.UpdateMailbox(next, r.event(now, EventDisable, m.Address, "closed -> disabled", "periodo di sola lettura terminato"))
		if errors.Is(err, store.ErrMailboxChanged) {
			continue // another node did it, or an operator changed it
		}
		if err != nil {
			return done, err
		}
		r.log().Info("mailbox disabled: read-only period over", "mailbox", m.Address, "closed", m.Closed)
		done = append(done, m.Address)
	}
	return done, nil
}

func (r *Registry) event(now time.Time, typ store.EventType, addr, change, note string) store.Event {
	return store.Event{Time: now, Point: store.AtMailbox, Type: typ, Recipients: []string{addr}, Related: []string{change},
		Subject: note, Provider: r.Provider}
}

func (r *Registry) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// CheckOptions validates a mailbox's options.
func CheckOptions(o store.MailboxOptions) error {
	switch {
	case o.OrdinaryMail != "" && o.OrdinaryMail != "accept" && o.OrdinaryMail != "refuse":
		return fmt.Errorf("ordinary mail policy %q: use accept or refuse (or nothing for the provider's default)", o.OrdinaryMail)
	case o.ReceiptForm != "" && !daticert.Ricevuta(o.ReceiptForm).Valid():
		return fmt.Errorf("receipt form %q: use completa, breve or sintetica", o.ReceiptForm)
	case o.QuotaBytes < 0:
		return fmt.Errorf("quota %d: use a size in bytes, or 0 for none", o.QuotaBytes)
	case o.ForwardTo != "" && (!strings.Contains(o.ForwardTo, "@") || strings.ContainsAny(o.ForwardTo, " \n\r\t<>,;")):
		return fmt.Errorf("forward address %q is not an address", o.ForwardTo)
	}
	return nil
}

func describeOptions(o store.MailboxOptions) string {
	return fmt.Sprintf("ordinary_mail=%s forward_to=%s receipt_form=%s quota_bytes=%d", o.OrdinaryMail, o.ForwardTo, o.ReceiptForm, o.QuotaBytes)
}
