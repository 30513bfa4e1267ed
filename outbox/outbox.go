// Package outbox sends the generated messages (receipts, notices) that the
// store holds in its outbox to an SMTP listener: the Postfix re-injection
// smtpd (one without milters), on a unix socket that only our processes
// can reach (postfix-examples/master.cf.pec: pec-reinject).
//
// An item is marked sent only after the server answered 250 to DATA, so a
// crash at any point loses nothing; the price is that a crash between that
// 250 and MarkSent sends the item again (at-least-once). Several senders
// (pecmilter and pecdeliver) may share one store: each claims the items it
// sends for a lease (store.Claim), and on start gives back the claims of
// dead senders on its host (owner.go).
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// claimLease is how long a claimed item stays reserved for one sender
// that may still be alive (one on another host, or one whose death cannot
// be told from here: see owner.go).
const claimLease = 10 * time.Minute

// Sender drains the outbox of Store to Addr.
type Sender struct {
	Store    store.Outbox
	Addr     string                           // the Postfix re-injection listener: unix:/path, or host:port / inet:host:port
	Helo     string                           // default "localhost"
	Now      func() time.Time                 // default time.Now
	Logger   *slog.Logger                     // default slog.Default()
	Backoff  func(attempts int) time.Duration // delay after the attempts-th failure; default DefaultBackoff
	Interval time.Duration                    // poll interval; default 2s
	// OnResult, when set, is called after each attempt to send an item:
	// with nil once the item is sent and recorded as sent, with the error
	// when the attempt failed (the item is retried later). For metrics;
	// it must not block.
	OnResult func(err error)
	// Owner is written next to every item this sender claims; default
	// ThisProcess().
	Owner store.ClaimOwner
	// OnUndeliverable, when set, is called with StageReinject and the
	// item's kind when the re-injection listener refuses an item
	// permanently (for metrics). It must not block.
	OnUndeliverable func(stage, kind string)
	// Local is the delivery point's LMTP address ([deliver] listen) and
	// LocalDomains the domains whose mailboxes it keeps. An item whose
	// recipients are all in LocalDomains (an acceptance, notices for our
	// own users and our service mailbox) goes to the delivery point
	// directly: one Postfix transit fewer, the same rules there. When the
	// delivery point cannot be reached or does not take the item for
	// every recipient, the item goes through Addr, as every item does
	// when Local is "": failures are handled as before (Postfix's queue,
	// its bounces).
	Local        string
	LocalDomains []string

	once      sync.Once
	kick      chan struct{}
	drain     sync.Mutex // one pass at a time
	recovered bool       // dead owners' claims released (under drain)
	// Bookkeeping the store refused (it was down): items sent but not yet
	// marked sent, and claimed items not given back. The next pass
	// records them first, so a store outage of seconds neither resends a
	// receipt nor leaves items waiting for their lease (under drain).
	unmarked   []unmarked
	unreleased []int64
}

type unmarked struct {
	it store.Queued
	at time.Time
}

// batch is how many items DrainOnce claims at a time: few, so that a claim
// is sent well within its lease even to a slow listener (another sender
// may take over an item whose lease ended).
const batch = 10

// DefaultBackoff is 10 s after the first failure, then doubling, capped
// at 30 min: receipts are due within minutes (a provider promises the
// acceptance receipt within 30 minutes), so a fixed listener is retried soon.
func DefaultBackoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	if attempts > 9 { // 10 s << 8 > 30 min
		return 30 * time.Minute
	}
	return min(10*time.Second<<(attempts-1), 30*time.Minute)
}

func (s *Sender) init() {
	s.once.Do(func() {
		s.kick = make(chan struct{}, 1)
		if s.Owner == (store.ClaimOwner{}) {
			s.Owner = ThisProcess()
		}
	})
}

func (s *Sender) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Sender) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Kick wakes Run up for a pass now (e.g. right after a Commit). It never
// blocks; kicks while a pass is pending coalesce.
func (s *Sender) Kick() {
	s.init()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run drains the outbox every Interval and whenever Kick is called, until
// ctx is done; then it returns nil. Errors of a pass are logged, not returned.
func (s *Sender) Run(ctx context.Context) error {
	s.init()
	interval := s.Interval
	if interval <= 0 {
		interval = 2 * time.Second
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
		if _, err := s.DrainOnce(ctx); err != nil && ctx.Err() == nil {
			s.log().Warn("outbox: pass stopped", "addr", s.Addr, "error", err.Error())
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(interval)
	}
}

// DrainOnce makes one pass over the items due now, sending each once, oldest
// first, over one SMTP connection. It returns how many were sent. It stops
// early (leaving the rest due) and returns an error when the server cannot
// be reached or the connection breaks, or when the store fails; a refused
// message only schedules that item for a retry.
//
// The first pass first gives back the claims of dead senders on this host
// (a previous run of this program killed while it held items, or the other
// daemon sharing the store), so what they held is sent in this pass.
func (s *Sender) DrainOnce(ctx context.Context) (sent int, err error) {
	s.init()
	s.drain.Lock()
	defer s.drain.Unlock()
	if !s.recovered {
		s.recovered = s.releaseDead()
	}
	if err := s.settle(); err != nil {
		return 0, err
	}
	var c, lc *smtp.Client // the re-injection listener; the delivery point (LMTP)
	var stop, lstop func() bool
	lmtpDown := false // the delivery point did not answer in this pass
	hangUp := func() {
		if c != nil {
			c.Quit() // also closes; errors are irrelevant here
			c.Close()
			stop()
			c = nil
		}
	}
	hangUpLocal := func() {
		if lc != nil {
			lc.Quit()
			lc.Close()
			lstop()
			lc = nil
		}
	}
	defer hangUp()
	defer hangUpLocal()
	var maxSeen int64
	for {
		if err := ctx.Err(); err != nil {
			return sent, err
		}
		items, err := s.Store.Claim(s.Owner, s.now(), claimLease, batch)
		if err != nil {
			return sent, err
		}
		progressed := false
		for i, it := range items {
			// on an early return the items after this one go back to due
			rest := items[i+1:]
			if it.ID <= maxSeen {
				s.release([]store.Queued{it}) // already tried in this pass (a zero backoff): due again at once
				continue
			}
			maxSeen, progressed = it.ID, true
			if err := ctx.Err(); err != nil {
				s.release(append([]store.Queued{it}, rest...))
				return sent, err
			}
			if !lmtpDown && s.isLocal(it) {
				if lc == nil {
					if lc, lstop, err = s.dialLocal(ctx); err != nil {
						s.log().Warn("outbox: the delivery point does not answer over LMTP; sending through the re-injection listener",
							"local", s.Local, "error", err.Error())
						lmtpDown = true
					}
				}
				if lc != nil {
					lerr := sendLocal(lc, it)
					if lerr == nil {
						if merr := s.sentOK(it, rest); merr != nil {
							return sent, merr
						}
						sent++
						continue
					}
					// Any refusal: the item goes through the re-injection
					// listener as it did before this path existed: Postfix
					// queues and retries a temporary failure, bounces a
					// permanent one to the service mailbox (undeliverable
					// row, stage bounce); recipients the delivery point
					// took already get no second copy (one per message and
					// recipient).
					s.log().Info("outbox: the delivery point did not take the item; sending it through the re-injection listener",
						itemAttrs(it, "error", lerr.Error())...)
					var se *smtp.SMTPError
					if !errors.As(lerr, &se) || lc.Reset() != nil {
						hangUpLocal()
						lmtpDown = true
					}
				}
			}
			if c == nil {
				if c, stop, err = s.dial(ctx); err != nil {
					s.release(rest)
					if serr := s.failed(it, err); serr != nil {
						return sent, serr
					}
					return sent, err
				}
			}
			err := send(c, it)
			if err == nil {
				if merr := s.sentOK(it, rest); merr != nil {
					return sent, merr
				}
				sent++
				continue
			}
			if serr := s.failed(it, err); serr != nil {
				s.release(rest)
				return sent, serr
			}
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				// Connection-level failure: the rest waits for the next pass.
				s.release(rest)
				return sent, err
			}
			if rerr := c.Reset(); rerr != nil {
				hangUp() // e.g. after a 421; redial for the next item
			}
		}
		if !progressed || len(items) < batch {
			return sent, nil
		}
	}
}

// sentOK records that it was sent. A store that cannot record it ends
// the pass (the rest given back): the next pass records it while this
// sender lives (its claim keeps the item), else it is sent again when the
// claim ends.
func (s *Sender) sentOK(it store.Queued, rest []store.Queued) error {
	at := s.now()
	if err := s.Store.MarkSent(it.ID, at); errors.Is(err, store.ErrNotPending) {
		// another sender took it over after the lease and sent it too
		s.log().Warn("outbox: item sent by another sender too (lease expired)", itemAttrs(it)...)
	} else if err != nil {
		s.log().Error("outbox: sent but could not mark sent; the next pass records it (a restart would send it again)",
			itemAttrs(it, "error", err.Error())...)
		s.unmarked = append(s.unmarked, unmarked{it, at})
		s.release(rest)
		return err
	}
	if s.OnResult != nil {
		s.OnResult(nil)
	}
	s.log().Info("outbox: sent", itemAttrs(it, "attempts", it.Attempts+1)...)
	return nil
}

// releaseDead makes the items held by dead owners (deadOwner) due now. It
// reports whether the check could be made; when the store fails it is
// tried again on the next pass.
func (s *Sender) releaseDead() bool {
	holders, err := s.Store.ClaimHolders()
	if err != nil {
		s.log().Warn("outbox: cannot list claimed items to release those of dead senders; will try again on the next pass", "error", err.Error())
		return false
	}
	for _, h := range holders {
		dead, why := deadOwner(s.Owner, h.ClaimOwner)
		attrs := []any{"owner_host", h.Host, "owner_pid", h.PID, "owner_instance", h.Instance, "items", h.Items, "lease_until", h.Until}
		if !dead {
			s.log().Info("outbox: items claimed by another sender that may be alive; they wait for it or for the end of its lease", attrs...)
			continue
		}
		n, err := s.Store.ReleaseClaimsOf(h.ClaimOwner, s.now())
		if err != nil {
			s.log().Warn("outbox: cannot release the items of a dead sender; will try again on the next pass", append(attrs, "error", err.Error())...)
			return false
		}
		s.log().Info("outbox: released the items claimed by a dead sender", append(attrs, "released", n, "reason", why)...)
	}
	return true
}

// release gives claimed but untried items back (due now).
func (s *Sender) release(items []store.Queued) {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	if err := s.Store.Release(ids, s.now()); err != nil {
		s.log().Warn("outbox: could not release claimed items; the next pass gives them back", "error", err)
		s.unreleased = append(s.unreleased, ids...)
	}
}

// settle records what earlier passes could not: items sent but not marked
// sent, and claimed items not given back. It stops at the first store
// error (the pass then stops too).
func (s *Sender) settle() error {
	for len(s.unmarked) > 0 {
		u := s.unmarked[0]
		err := s.Store.MarkSent(u.it.ID, u.at)
		if errors.Is(err, store.ErrNotPending) {
			s.log().Warn("outbox: item sent by another sender too (lease expired)", itemAttrs(u.it)...)
		} else if err != nil {
			return err
		} else {
			s.log().Info("outbox: sent (recorded late)", itemAttrs(u.it)...)
		}
		s.unmarked = s.unmarked[1:]
	}
	if len(s.unreleased) > 0 {
		if err := s.Store.Release(s.unreleased, s.now()); err != nil {
			return err
		}
		s.unreleased = nil
	}
	return nil
}

// dial connects to the re-injection listener and greets; stop must be
// called when done with the client.
func (s *Sender) dial(ctx context.Context) (c *smtp.Client, stop func() bool, err error) {
	return s.connect(ctx, s.Addr, "[reinject] address", false)
}

// dialLocal connects to the delivery point's LMTP listener.
func (s *Sender) dialLocal(ctx context.Context) (c *smtp.Client, stop func() bool, err error) {
	return s.connect(ctx, s.Local, "[deliver] listen", true)
}

func (s *Sender) connect(ctx context.Context, spec, setting string, lmtp bool) (c *smtp.Client, stop func() bool, err error) {
	network, addr, err := config.SplitAddr(spec)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", setting, err)
	}
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, nil, err
	}
	if lmtp {
		c = smtp.NewClientLMTP(conn)
	} else {
		c = smtp.NewClient(conn)
	}
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 5 * time.Minute
	// Cancelling ctx aborts a send in progress.
	stop = context.AfterFunc(ctx, func() { conn.Close() })
	helo := s.Helo
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		c.Close()
		stop()
		return nil, nil, err
	}
	return c, stop, nil
}

// isLocal reports whether every recipient of it is a mailbox of
// LocalDomains.
func (s *Sender) isLocal(it store.Queued) bool {
	if s.Local == "" || len(it.Rcpts) == 0 {
		return false
	}
	for _, r := range it.Rcpts {
		if !point.InDomains(r, s.LocalDomains) {
			return false
		}
	}
	return true
}

// sendLocal transmits one item over LMTP. The delivery point answers each
// recipient after the data: nil when every one was delivered; a temporary
// failure of any recipient is the item's answer (it is sent again: the
// delivery point keeps one copy per message and recipient, so those
// delivered are not delivered twice), else the first permanent one.
func sendLocal(c *smtp.Client, it store.Queued) error {
	err := send(c, it)
	var lerr smtp.LMTPDataError
	if !errors.As(err, &lerr) {
		return err
	}
	var first *smtp.SMTPError
	for _, r := range slices.Sorted(maps.Keys(lerr)) {
		se := lerr[r]
		// the recipient and the enhanced status go into the text: it is
		// what the log row and the operator see
		text := "<" + r + ">: " + se.Message
		if c := se.EnhancedCode; c != smtp.NoEnhancedCode && c[0] > 0 {
			text = fmt.Sprintf("<%s>: %d.%d.%d %s", r, c[0], c[1], c[2], se.Message)
		}
		e := &smtp.SMTPError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: text}
		if se.Code < 500 {
			return e
		}
		if first == nil {
			first = e
		}
	}
	if first == nil {
		return nil
	}
	return first
}

// send transmits one item; nil means the server answered 250 to DATA.
func send(c *smtp.Client, it store.Queued) error {
	if err := c.Mail(it.MailFrom, nil); err != nil {
		return err
	}
	for _, r := range it.Rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(it.Data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// failed schedules a retry of it after err and logs it: a permanent (5xx)
// refusal at error level, since a receipt must never be dropped silently and
// an operator has to look; anything else at warning level.
func (s *Sender) failed(it store.Queued, err error) error {
	if s.OnResult != nil {
		s.OnResult(err)
	}
	backoff := s.Backoff
	if backoff == nil {
		backoff = DefaultBackoff
	}
	attempts := it.Attempts + 1
	next := s.now().Add(backoff(attempts))
	attrs := itemAttrs(it, "attempts", attempts, "next_try", next, "error", err.Error())
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		s.log().Error("outbox: refused permanently; kept and retried, operator action needed",
			append(attrs, "smtp_code", se.Code)...)
		s.undeliverable(it, err)
	} else if se != nil {
		s.log().Warn("outbox: refused temporarily; will retry", append(attrs, "smtp_code", se.Code)...)
	} else {
		s.log().Warn("outbox: send failed; will retry", attrs...)
	}
	if merr := s.Store.MarkRetry(it.ID, err.Error(), next); errors.Is(merr, store.ErrNotPending) {
		return nil // another sender took it over after the lease and sent it
	} else if merr != nil {
		s.log().Error("outbox: could not schedule retry", itemAttrs(it, "error", merr.Error())...)
		return fmt.Errorf("outbox: scheduling retry of %d: %w", it.ID, merr)
	}
	return nil
}

// StageReinject is the stage of OnUndeliverable for a refusal by the
// re-injection listener.
const StageReinject = "reinject"

// undeliverable records a permanent refusal in the event log (type
// "undeliverable", point "outbox", the cause in Error) and the metric,
// once per distinct refusal of an item: the retries that follow with the
// same answer add nothing.
func (s *Sender) undeliverable(it store.Queued, err error) {
	if it.LastError == err.Error() {
		return
	}
	if s.OnUndeliverable != nil {
		s.OnUndeliverable(StageReinject, string(it.Kind))
	}
	ev := store.Event{Time: s.now().Truncate(time.Second), Point: store.AtOutbox, Type: store.TypeUndeliverable, Sender: it.MailFrom,
		Recipients: it.Rcpts, Related: []string{it.MessageID}, Error: string(it.Kind) + ": " + err.Error()}
	if cerr := s.Store.Commit(store.Txn{Events: []store.Event{ev}}); cerr != nil {
		s.log().Error("outbox: cannot record the refusal in the event log", itemAttrs(it, "error", cerr.Error())...)
	}
}

func itemAttrs(it store.Queued, more ...any) []any {
	return append([]any{"id", it.ID, "message_id", it.MessageID, "kind", it.Kind, "rcpts", it.Rcpts}, more...)
}
