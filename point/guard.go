package point

import (
	"fmt"
	"time"

	"github.com/pecgo/pec/build"
)

// The provider-wide guards that stop the points (PROVIDER-REQUIREMENTS:
// Intesi §4.2, Aruba §6.6 for the clock; Aruba §9.7.7 for the
// suspension). They are pure rules over a state the adapters read
// (internal/guard): the kernel's clock synchronisation and the service
// state in the store.

// ClockState is the kernel's clock synchronisation state, as adjtimex(2)
// reports it (chrony or ntpd discipline the kernel clock and keep it
// there).
type ClockState struct {
	// Synchronized: STA_UNSYNC is clear and the clock state is not
	// TIME_ERROR.
	Synchronized bool
	// MaxError is the kernel's bound on the offset from UTC (maxerror);
	// EstError its estimate (esterror).
	MaxError, EstError time.Duration
}

// Gate is the provider-wide state the points read before they sign. nil
// in a point means no guard (tests of other rules).
type Gate interface {
	// ClockProblem says why the clock may not put a legal time on a
	// receipt now; "" when it may.
	ClockProblem() string
	// Suspended reports whether the provider suspended its service and
	// why; an error when the state cannot be read (the caller fails
	// closed: tempfail).
	Suspended() (suspended bool, reason string, err error)
}

// ClockProblem is the clock rule: receipts carry legal time (RFC 6109
// §4.1: the points need an accurate temporal reference), and
// providers keep their servers within 1 s of UTC and stop signing beyond
// (Intesi §4.2, Aruba §6.6). The clock may sign when the kernel is
// synchronised and its maximum error is within bound; err (the state
// cannot be read) fails closed. bound <= 0 turns the rule off.
func ClockProblem(st ClockState, err error, bound time.Duration) string {
	switch {
	case bound <= 0:
		return ""
	case err != nil:
		return "cannot read the kernel's clock synchronisation state: " + err.Error()
	case !st.Synchronized:
		return fmt.Sprintf("the system clock is not synchronised to UTC (kernel maximum error %v): check chronyd or ntpd (chronyc tracking)", st.MaxError)
	case st.MaxError > bound:
		return fmt.Sprintf("the system clock's maximum error %v exceeds the bound of %v: check chronyd or ntpd (chronyc tracking)", st.MaxError, bound)
	}
	return ""
}

// SuspendedReason is the reason of the formal non-acceptance the access
// point issues while the service is suspended (Aruba §9.7.7).
const SuspendedReason = "servizio sospeso"

// gateAccess is the access point's guard (Aruba §9.7.7, Intesi §4.2):
// no signing with a clock out of bound (tempfail: the client retries);
// while suspended, only the formal non-acceptance of RFC 6109 §3.1.2,
// through refuse, with the reason "servizio sospeso" (plus the
// operator's). stop is false when the message goes on to the other rules.
func (a *Access) gateAccess(now time.Time, env Envelope, tx *build.Tx, raw []byte) (d Decision, stop bool) {
	if a.Gate == nil {
		return Decision{}, false
	}
	if p := a.Gate.ClockProblem(); p != "" {
		a.log().Error("not signing: clock out of bound, tempfailing", "queue_id", env.QueueID, "problem", p)
		return tempfail("4.3.0", "PEC: server clock not synchronised, no receipt can be signed now; try again later"), true
	}
	susp, why, err := a.Gate.Suspended()
	if err != nil {
		a.log().Error("cannot read the service state, tempfailing", "queue_id", env.QueueID, "error", err)
		return tempfail("4.3.0", "PEC: store not available, try again later"), true
	}
	if !susp {
		return Decision{}, false
	}
	reason := SuspendedReason
	if why != "" {
		reason += " (" + why + ")"
	}
	return a.refuse(now, env, tx, raw, reason), true
}

// gateIncoming is the incoming point's guard: with a clock out of bound
// or while the service is suspended nothing is taken in charge; every
// message is tempfailed, so the sending provider keeps it and retries
// (RFC 6109 §3.2: the take-charge is what binds us; Aruba §9.7.7).
func (in *Incoming) gateIncoming(env Envelope) (d Decision, stop bool) {
	if in.Gate == nil {
		return Decision{}, false
	}
	if p := in.Gate.ClockProblem(); p != "" {
		in.log().Error("not signing: clock out of bound, tempfailing", "queue_id", env.QueueID, "problem", p)
		return tempfail("4.3.0", "PEC: server clock not synchronised, no receipt can be signed now; try again later"), true
	}
	susp, why, err := in.Gate.Suspended()
	if err != nil {
		in.log().Error("cannot read the service state, tempfailing", "queue_id", env.QueueID, "error", err)
		return tempfail("4.3.0", "PEC: store not available, try again later"), true
	}
	if susp {
		in.log().Info("service suspended: tempfailing, no take-charge", "queue_id", env.QueueID, "reason", why)
		return tempfail("4.3.2", "PEC: service suspended by the provider, try again later"), true
	}
	return Decision{}, false
}
