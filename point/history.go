package point

import (
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

// History is what the rules read back from the provider's log
// (store/sqlite and store/postgres implement it).
type History interface {
	// CountSenderEvents counts the rows of type typ of the mailbox
	// sender since a time (the access point's rate limit).
	CountSenderEvents(sender string, typ store.EventType, since time.Time) (int, error)
	// Events returns the rows matching q.
	Events(store.Query) ([]store.Event, error)
	// Tracking returns the tracked recipients of the envelope pecid
	// (timer.Track): the envelopes we sent, to whom.
	Tracking(pecid string) ([]store.TrackingState, error)
}

// acceptedSince counts the acceptances of sender since a time: the
// per-mailbox rate limit (RFC 6109 leaves the limit to the provider;
// PEC-SPEC §6.6). One COUNT over the log, every node's rows.
func acceptedSince(h History, sender string, since time.Time) (int, error) {
	return h.CountSenderEvents(sender, store.TypeAccettazione, since)
}

// chargedRecipients is the set of recipients (lower case) our
// take-charges already covered for the envelope pecid, from either path:
// the incoming point for other providers' envelopes, the delivery point
// for our own (RFC 6109 §3.2.1, §3.4). A nil History knows of none.
func chargedRecipients(h History, pecid string) (map[string]bool, error) {
	out, _, err := takeCharges(h, pecid, "")
	return out, err
}

// takeCharges reads the take-charges issued for pecid at point at (""
// for any): the recipients they cover (lower case) and the provider the
// last one names. A nil History knows of none.
func takeCharges(h History, pecid string, at store.EventPoint) (rcpts map[string]bool, provider string, err error) {
	rcpts = map[string]bool{}
	if h == nil {
		return rcpts, "", nil
	}
	ev, err := h.Events(store.Query{PECID: pecid, Type: store.TypePresaInCarico, Point: at})
	for _, e := range ev {
		provider = e.Provider
		for _, r := range e.Recipients {
			rcpts[strings.ToLower(r)] = true
		}
	}
	return rcpts, provider, err
}

// dispatchedTo reads once whom we sent the envelope pecid to (its
// deliveries are tracked: timer.Track) and returns the test for one
// recipient. A nil History trusts the id's domain alone.
func dispatchedTo(h History, pecid string) (func(rcpt string) bool, error) {
	if h == nil {
		return func(string) bool { return true }, nil
	}
	rows, err := h.Tracking(pecid)
	if err != nil {
		return nil, err
	}
	return func(rcpt string) bool {
		for _, r := range rows {
			if strings.EqualFold(r.Rcpt, rcpt) {
				return true
			}
		}
		return false
	}, nil
}
