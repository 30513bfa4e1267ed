// Package timer sends the notices of failed delivery within the maximum
// time (RFC 6109 §2.1.1.1.2, §3.1.6): for every certified recipient of a
// transport envelope we dispatched, if neither a take-charge nor a
// delivery receipt arrived within 12 hours the sender gets the 12 h
// warning; if no delivery receipt arrived by the final deadline (between
// 22 and 24 hours; 23 h by default) the sender gets the 24 h notice and
// tracking ends. A non-delivery notice also ends tracking: the recipient's
// outcome is final (PEC-SPEC §6.6 rule 4).
//
// State lives in the store, so timers survive restarts; a notice and the
// mark that it was sent are committed together, so none is lost or sent
// twice. Every node's pecmilter may run a Runner on a shared store: the
// notice's mark is committed only if no other runner recorded it first
// (store.Mark.Once), so each notice is queued once for the cluster.
package timer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/store"
)

// Defaults of RFC 6109 §3.1.6.
const (
	DefaultWarn  = 12 * time.Hour
	DefaultFinal = 23 * time.Hour // within the rule's window of 22–24 h
)

// Track returns the tracking rows for the certified recipients of an
// envelope dispatched at sent (esterno recipients get no timer).
func Track(tx *build.Tx, rcpts []string, sent time.Time) ([]store.Tracked, error) {
	data, err := json.Marshal(tx)
	if err != nil {
		return nil, err
	}
	cert := map[string]bool{}
	for _, d := range tx.Destinatari {
		if d.Tipo == daticert.Certificato || d.Tipo == "" {
			cert[d.Addr] = true
		}
	}
	var out []store.Tracked
	for _, r := range rcpts {
		if cert[r] {
			out = append(out, store.Tracked{PECID: tx.ID, Rcpt: r, Sent: sent, Tx: data})
		}
	}
	return out, nil
}

// Runner queues due notices.
type Runner struct {
	Store    Store
	Provider *build.Provider
	Now      func() time.Time
	Warn     time.Duration // default 12 h
	Final    time.Duration // default 23 h
	// HeldTimeout: an acceptance held for longer without Postfix's
	// confirmation is dropped (store/held.go); default DefaultHeldTimeout.
	HeldTimeout time.Duration
	Kick        func()
	Log         *slog.Logger
	// ClockProblem, when set, says why no notice may be signed now (the
	// clock guard, point.ClockProblem): RunOnce then signs nothing and the
	// due notices wait for a pass with the clock back within bound.
	ClockProblem func() string
}

func (r *Runner) now() time.Time {
	if r.Now != nil {
		return r.Now().Truncate(time.Second)
	}
	return time.Now().Truncate(time.Second)
}

// Notice is a timeout notice (RFC 6109 §3.1.6).
type Notice int

// The notices.
const (
	NoNotice Notice = iota
	Notice12        // the warning: neither a take-charge nor a receipt within 12 h
	Notice24        // the final notice: no receipt by the final deadline; tracking ends
)

// Due is the notice due at now for an open tracked recipient t (RFC 6109
// §3.1.6), the one place the rule is written: the 24 h notice once final
// has passed since the envelope was dispatched (it supersedes a 12 h one
// not yet sent, after a long outage); else the 12 h warning once warn has
// passed, unless a take-charge covering the recipient arrived or the
// warning was sent already. A recipient with a delivery or non-delivery
// notice, or with its 24 h notice sent, is not open (store.OpenTimers).
func Due(t store.Timer, now time.Time, warn, final time.Duration) Notice {
	switch {
	case !t.Sent.After(now.Add(-final)):
		return Notice24
	case !t.Sent.After(now.Add(-warn)) && !t.Presa && !t.Notice12:
		return Notice12
	}
	return NoNotice
}

// RunOnce queues every notice due now and returns how many. It walks the
// open tracked recipients old enough for a notice once, in order; a row
// whose notice cannot be built or committed is reported and skipped for
// this pass, so that it does not hold back the others.
func (r *Runner) RunOnce(ctx context.Context) (int, error) {
	if r.ClockProblem != nil {
		if p := r.ClockProblem(); p != "" {
			return 0, fmt.Errorf("no timeout notice signed until the clock is back within bound (retried at the next pass): %s", p)
		}
	}
	now := r.now()
	n := 0
	var first error
	err := EachDue(r.Store, now, r.Warn, r.Final, 100, func(t store.Timer, due Notice) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.notify(now, t, due == Notice24); errors.Is(err, errOther) {
			return nil
		} else if err != nil {
			r.log().Error("timeout notice not sent: retried at the next pass", "pec_id", t.PECID, "rcpt", t.Rcpt, "error", err)
			if first == nil {
				first = err
			}
			return nil
		}
		n++
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, first
}

// OpenTimers is what EachDue reads (store.Timers.OpenTimers).
type OpenTimers interface {
	OpenTimers(sentBy time.Time, after store.Timer, limit int) ([]store.Timer, error)
}

// errEnough stops EachDue early without an error.
var errEnough = errors.New("timer: enough")

// EachDue calls fn, oldest first, for every open tracked recipient whose
// notice is due at now (Due), reading the store page rows at a time with
// its cursor; warn and final zero mean DefaultWarn and DefaultFinal. An
// error of fn stops the walk and is returned.
func EachDue(st OpenTimers, now time.Time, warn, final time.Duration, page int, fn func(store.Timer, Notice) error) error {
	if warn == 0 {
		warn = DefaultWarn
	}
	if final == 0 {
		final = DefaultFinal
	}
	var after store.Timer
	for {
		open, err := st.OpenTimers(now.Add(-warn), after, page)
		if err != nil {
			return err
		}
		for _, t := range open {
			after = t
			if due := Due(t, now, warn, final); due != NoNotice {
				if err := fn(t, due); err != nil {
					return err
				}
			}
		}
		if len(open) < page {
			return nil
		}
	}
}

// CountDue counts the notices due at now, up to max: the timer backlog a
// monitor watches.
func CountDue(st OpenTimers, now time.Time, warn, final time.Duration, max int) (int, error) {
	n := 0
	err := EachDue(st, now, warn, final, 500, func(store.Timer, Notice) error {
		if n++; n >= max {
			return errEnough
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		err = nil
	}
	return n, err
}

// errOther: another runner (another node) committed that notice first.
var errOther = errors.New("timer: notice queued by another runner")

func (r *Runner) notify(now time.Time, d store.Timer, final bool) error {
	var tx build.Tx
	if err := json.Unmarshal(d.Tx, &tx); err != nil {
		return fmt.Errorf("timer: tracking data of %s/%s: %w", d.PECID, d.Rcpt, err)
	}
	m, err := r.Provider.Render(build.Evidence{Kind: kind.PreavvisoErroreConsegna, Time: now, Tx: &tx, Rcpt: d.Rcpt, Sent: d.Sent, Final: final})
	if err != nil {
		return fmt.Errorf("timer: building the notice for %s/%s: %w", d.PECID, d.Rcpt, err)
	}
	mark, label := store.MarkNotice12, "12h"
	if final {
		mark, label = store.MarkNotice24, "24h"
	}
	subj := ""
	if tx.Oggetto != nil {
		subj = *tx.Oggetto
	}
	txn := store.Txn{
		Events: []store.Event{{Time: now, Point: store.AtTimer, Type: store.TypePreavviso, PECID: d.PECID, MsgID: tx.MsgID,
			Sender: tx.Mittente, Recipients: []string{d.Rcpt}, Subject: subj, Related: []string{"<" + m.ID + ">"},
			Provider: r.Provider.Name, Error: "mancata consegna entro " + label}},
		Outbox: []store.Outgoing{{MailFrom: m.MailFrom, Rcpts: m.Rcpts, Data: m.Bytes(), MessageID: "<" + m.ID + ">", Kind: m.Kind}},
		// Once: with several nodes running timers, the notice and its mark
		// are committed by exactly one of them
		Marks: []store.Mark{{PECID: d.PECID, Rcpt: d.Rcpt, What: mark, At: now, Once: true}},
	}
	if final {
		// a 12 h notice not yet sent is superseded by the final one
		txn.Marks = append(txn.Marks, store.Mark{PECID: d.PECID, Rcpt: d.Rcpt, What: store.MarkNotice12, At: now})
	}
	if err := r.Store.Commit(txn); errors.Is(err, store.ErrMarked) {
		r.log().Debug("timeout notice queued by another runner", "pec_id", d.PECID, "rcpt", d.Rcpt, "notice", label)
		return errOther
	} else if err != nil {
		return err
	}
	r.log().Info("timeout notice queued", "pec_id", d.PECID, "rcpt", d.Rcpt, "notice", label, "sent", d.Sent)
	if r.Kick != nil {
		r.Kick()
	}
	return nil
}

// Store is what the timers need of the provider's state.
type Store interface {
	OpenTimers(sentBy time.Time, after store.Timer, limit int) ([]store.Timer, error)
	Commit(store.Txn) error
	DropUnqueued(before time.Time) ([]store.HeldItem, error)
}

// DefaultHeldTimeout is how long a held acceptance waits for Postfix's
// confirmation: Postfix keeps a queued message (and so the confirmation
// recipient) at most maximal_queue_lifetime = 1 d (RFC 6109 §2.2.2), plus
// an hour of margin. Normally the confirmation comes within seconds.
const DefaultHeldTimeout = 25 * time.Hour

// DropUnqueued drops the held acceptances that Postfix never confirmed:
// their messages were never queued, so the sender gets no acceptance and
// the log no row (store.DropUnqueued). It returns how many.
func (r *Runner) DropUnqueued() (int, error) {
	timeout := r.HeldTimeout
	if timeout == 0 {
		timeout = DefaultHeldTimeout
	}
	dropped, err := r.Store.DropUnqueued(r.now().Add(-timeout))
	for _, h := range dropped {
		r.log().Error("acceptance dropped: Postfix never confirmed that it queued the transport envelope; no acceptance was sent and the log has no row for it",
			"queue_id", h.QueueID, "pec_ids", h.PECIDs, "held_since", h.Created, "waited", timeout)
	}
	return len(dropped), err
}

// Run checks every interval (default 1 min) until ctx is done.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	if interval == 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.log().Error("timers", "error", err)
		}
		if _, err := r.DropUnqueued(); err != nil && ctx.Err() == nil {
			r.log().Error("held acceptances", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}
