package store

import (
	"errors"
	"time"
)

// The delivery point hands each message to Dovecot at most once per
// (message, recipient). Before Dovecot gets the end of the message the
// intent is recorded (a backend's ClaimDeliveries: state pending); the
// outcome moves the row, in the same transaction as the receipts
// (Txn.Deliveries). A retry or a replay finds the row and does not store
// a second copy.
//
// The key is the PEC id (identificativo) for transport envelopes, so that
// a replayed envelope is recognised (RFC 6109 §3.3.2: one delivery
// receipt per recipient); for every other message it is a hash of its
// content chosen by the delivery point.

// Delivery states.
const (
	// DeliveryPending: the intent is recorded and Dovecot got (or is
	// getting) the message; its answer is not recorded yet.
	DeliveryPending = "pending"
	// DeliveryStored: Dovecot stored the message; its receipt, if any,
	// was committed with the row.
	DeliveryStored = "stored"
	// DeliveryFailed: Dovecot refused it for good; its non-delivery
	// notice, if any, was committed with the row.
	DeliveryFailed = "failed"
	// DeliveryUnknown: a pending row whose transaction ended without its
	// outcome: the message may or may not be in the mailbox; no receipt
	// was issued.
	DeliveryUnknown = "unknown"
)

// ErrDeliveryConflict is returned when a delivery row is not in the state
// the caller expects: another transaction delivered (or is delivering) the
// same message to the same recipient meanwhile.
var ErrDeliveryConflict = errors.New("store: the delivery of this message to this recipient was recorded meanwhile by another transaction")

// DeliveryOwner identifies the LMTP transaction that records an intent.
type DeliveryOwner struct {
	ID  string // unique across processes and transactions
	PID int    // the process, so that another one can tell it died
}

// Delivery is the recorded state of one (key, recipient).
type Delivery struct {
	Key, Rcpt string
	State     string
	Owner     DeliveryOwner // of a pending row
	At        time.Time
}

// DeliveryMark moves one delivery row within a Txn.
type DeliveryMark struct {
	Key, Rcpt string
	// From is the state the row must be in: "" (no row) or
	// DeliveryPending with Owner as its owner.
	From  string
	Owner string
	// To is the new state; "" removes the row (a temporary failure: the
	// next attempt starts over).
	To string
	At time.Time
}
