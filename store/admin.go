package store

import (
	"math"
	"time"
)

// Generated is a copy of a message the provider generated (a receipt, a
// notice, a transport envelope) as the outbox keeps it: pending, or sent
// until Purge removes it with the log rows of its time.
type Generated struct {
	ID        int64
	Created   time.Time
	Sent      time.Time // zero while pending
	MailFrom  string
	Rcpts     []string
	MessageID string
	Kind      string
	Data      []byte
}

// VirusItem is an item of the virus store with its id.
type VirusItem struct {
	ID int64
	Quarantined
}

// Records is what the operator's tool reads to answer a holder's or an
// authority's request (pecctl log export, pecctl virus): copies of the
// messages generated and the virus store's items.
type Records interface {
	// GeneratedByMessageID returns the outbox items whose Message-ID is
	// one of ids, oldest first.
	GeneratedByMessageID(ids []string) ([]Generated, error)
	// VirusBetween returns the virus store items whose time is in
	// [from, to) (a zero from: no start, a zero to: no end), oldest
	// first; with pecid not empty,
	// only that transaction's.
	VirusBetween(from, to time.Time, pecid string) ([]VirusItem, error)
	// VirusItem returns the item id; ok is false when there is none.
	VirusItem(id int64) (item VirusItem, ok bool, err error)
}

// HealthSample is one health check of a daemon as recorded in the store:
// the availability figures of pecctl report come from them.
type HealthSample struct {
	Node   string // host name (and daemon) that checked
	At     time.Time
	OK     bool
	Detail string // what failed, "" when OK
}

// Health keeps the daemons' periodic health samples.
type Health interface {
	// RecordHealth appends a sample.
	RecordHealth(HealthSample) error
	// HealthSamples returns the samples whose time is in [from, to),
	// oldest first.
	HealthSamples(from, to time.Time) ([]HealthSample, error)
}

// NSBounds are the bounds of [from, to) as the stores' nanosecond columns
// compare them: a zero from is no start, a zero to no end. (The zero time
// itself has no UnixNano: it is before 1678.)
func NSBounds(from, to time.Time) (lo, hi int64) {
	lo, hi = math.MinInt64, math.MaxInt64
	if !from.IsZero() {
		lo = from.UnixNano()
	}
	if !to.IsZero() {
		hi = to.UnixNano()
	}
	return lo, hi
}
