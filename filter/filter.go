// Package filter is the milter adapter of the access and incoming points
// (RFC 6109 §2.2.1, §2.2.2): it collects what Postfix sends, asks the
// rule core (package point), commits the Decision's transaction to the
// store and only then answers Postfix, so an accepted message always has
// its receipts durably recorded (or held until Postfix queues it).
package filter

import (
	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// The rule core's types, for the milter adapter and the incoming point
// while it moves into package point.
type (
	Envelope  = point.Envelope
	Action    = point.Action
	Decision  = point.Decision
	Scanner   = point.Scanner
	Directory = point.Directory
	Clock     = point.Clock
)

// The actions.
const (
	Accept   = point.Accept
	Reject   = point.Reject
	TempFail = point.TempFail
	Discard  = point.Discard
)

func reply(action Action, code int, status, text string) Decision {
	return point.Reply(action, code, status, text)
}

func tempfail(status, text string) Decision { return point.Tempfail(status, text) }

func outgoing(m *build.Message) store.Outgoing { return point.Outgoing(m) }

func subjectOf(o *build.Original) string { return point.SubjectOf(o) }
