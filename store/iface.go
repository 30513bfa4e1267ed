package store

import (
	"errors"
	"time"
)

// The narrow interfaces every backend implements (store/sqlite,
// store/postgres). Consumers take the narrowest one they need; Store is
// all of them, for the programs that open a backend (store/open) and
// the operator's tool.

// Committer records a whole transaction atomically: when Commit returns
// nil everything in the Txn is durable; when it returns an error nothing
// of it was written. A backend that cannot reach its database returns an
// error (the caller tempfails: fail closed).
type Committer interface {
	Commit(Txn) error
}

// Held keeps the access point's acceptances until Postfix has queued the
// transport envelope (RFC 6109 §3.1.4; store/sqlite/held.go tells why).
type Held interface {
	// HoldUntilQueued records txn, accepted at at for Postfix queue id
	// queueID, under token; nothing of it is effective until ConfirmQueued.
	HoldUntilQueued(token, queueID string, at time.Time, txn Txn) error
	// ConfirmQueued makes the held transaction of token effective in one
	// database transaction; found is false for an unknown token
	// (confirmed already, or dropped): confirming twice is harmless.
	ConfirmQueued(token string) (found bool, err error)
	// DropUnqueued forgets the held transactions created before before,
	// with their timer rows, and returns them. Each is returned by exactly
	// one caller, however many nodes call it at once.
	DropUnqueued(before time.Time) ([]HeldItem, error)
	// HeldCount is the number of transactions still held.
	HeldCount() (int, error)
}

// Points is what the access, incoming and delivery points write.
type Points interface {
	Committer
	Held
}

// Deliveries is the delivery point's record of what it handed to Dovecot
// (delivery.go): at most one delivery per (message, recipient).
type Deliveries interface {
	// Deliveries returns the rows of key for rcpts, by lower-cased
	// recipient.
	Deliveries(key string, rcpts []string) (map[string]Delivery, error)
	// ClaimDeliveries records the intent to deliver key to rcpts; it
	// fails with ErrDeliveryConflict, recording nothing, when any of them
	// has a row already (on any node).
	ClaimDeliveries(key string, rcpts []string, owner DeliveryOwner, at time.Time) error
}

// DeliveryPoint is what the delivery point (pecdeliver) needs.
type DeliveryPoint interface {
	Points
	Deliveries
}

// Log reads and maintains the hash-chained event log (RFC 6109 §2.3).
type Log interface {
	// Events returns the rows matching q, oldest first.
	Events(Query) ([]Event, error)
	// CountSenderEvents counts the rows of type typ of the mailbox sender
	// (ASCII case-insensitive) since a time, without reading them.
	CountSenderEvents(sender string, typ EventType, since time.Time) (int, error)
	// LogHead returns the id and hash of the last row (0 and the anchor
	// hash when the log is empty).
	LogHead() (id int64, hash []byte, err error)
	// LogAnchor returns the id and hash of the last purged row (0 and
	// ZeroHash when nothing was purged).
	LogAnchor() (id int64, hash []byte, err error)
	// VerifyLog walks the chain from the anchor to the head in one
	// consistent snapshot (writers go on meanwhile) and returns 0, nil
	// when it is intact, else the first bad row and what is wrong.
	VerifyLog() (firstBad int64, err error)
	// EachLinkedEvent calls fn in id order for every row whose time is in
	// [from, to), with its chain values.
	EachLinkedEvent(from, to time.Time, fn func(LinkedEvent) error) error
	// CountEvents returns the number of rows whose time is in [from, to).
	CountEvents(from, to time.Time) (int, error)
	// EventLink returns the chain values of row id; ok is false when the
	// row is not in the log.
	EventLink(id int64) (prev, hash []byte, ok bool, err error)
	// Purge deletes the rows and virus items older than before (rows as a
	// prefix of the chain, the anchor moved) and the outbox items sent
	// before it, and the health samples older than before.
	Purge(before time.Time) (events, virus int, err error)
}

// Outbox is the durable queue of generated messages and its claims; a
// sender also commits log rows (a refusal by the re-injection listener).
type Outbox interface {
	Committer
	// Claim takes up to limit due items for owner for lease: no other
	// sender (of any node) gets them until the lease ends or the item is
	// sent, retried or released.
	Claim(owner ClaimOwner, now time.Time, lease time.Duration, limit int) ([]Queued, error)
	// Release makes claimed, unsent items due again at at.
	Release(ids []int64, at time.Time) error
	// MarkSent records that item id was accepted at at and logs it; it
	// returns ErrNotPending if the item is unknown or already sent.
	MarkSent(id int64, at time.Time) error
	// MarkRetry records a failed attempt and schedules the next one.
	MarkRetry(id int64, errText string, next time.Time) error
	// ClaimHolders lists the owners of the claims in force.
	ClaimHolders() ([]ClaimHolder, error)
	// ReleaseClaimsOf makes the items owner still holds due at at.
	ReleaseClaimsOf(owner ClaimOwner, at time.Time) (int, error)
	// OutboxDepth is the number of unsent items.
	OutboxDepth() (int, error)
	// DuePending lists unsent items due at now, without claiming them.
	DuePending(now time.Time, limit int) ([]Queued, error)
	// Pending lists every unsent item (pecctl outbox list).
	Pending(limit int) ([]PendingItem, error)
	// RetryAll makes every unsent item due at at (pecctl outbox retry).
	RetryAll(at time.Time) (int, error)
}

// Timers is what the 12 h / 24 h timers need (RFC 6109 §3.1.6).
type Timers interface {
	Committer
	// OpenTimers returns the tracked recipients still waiting for an
	// outcome (no delivery or non-delivery notice, no 24 h notice, not a
	// held acceptance) dispatched at or before sentBy, ordered by (Sent,
	// PECID, Rcpt) and strictly after the row after (the zero Timer:
	// from the first), at most limit. Which notice is due is the timer
	// package's rule (timer.Due), not the store's.
	OpenTimers(sentBy time.Time, after Timer, limit int) ([]Timer, error)
	// Tracking returns the tracking rows of a PEC id.
	Tracking(pecid string) ([]TrackingState, error)
	// DropUnqueued is Held.DropUnqueued: the timer runner drops the
	// acceptances Postfix never confirmed.
	DropUnqueued(before time.Time) ([]HeldItem, error)
}

// Quarantine reads the virus store (RFC 6109 §2.2.4).
type Quarantine interface {
	VirusItems(pecid string) ([]Quarantined, error)
	CountVirus(from, to time.Time) (int, error)
}

// Leases elect one node for cluster-wide work (the providers' index copy,
// the daily archive): a named lease has at most one holder at a time, and
// a holder that stops renewing loses it when it ends.
type Leases interface {
	// Lease takes the lease name for holder until now+ttl when it is free,
	// ended, or already held by holder (a renewal). held reports whether
	// holder has it now; st is the lease as it stands after the call.
	// A lease that was finished (Finish) is never taken again.
	Lease(name, holder string, now time.Time, ttl time.Duration) (held bool, st LeaseState, err error)
	// Finish records that the work of lease name is done, with a note for
	// operators (e.g. where its result is); only the holder can finish.
	Finish(name, holder string, at time.Time, note string) error
	// Unlease gives up the lease when holder has it and it is not finished.
	Unlease(name, holder string) error
}

// LeaseState is a lease as stored.
type LeaseState struct {
	Name   string
	Holder string
	Until  time.Time
	Done   time.Time // zero while the work is not finished
	Note   string
}

// Shared keeps small named documents that every node reads (the
// providers' index copy fetched once for the cluster).
type Shared interface {
	// PutShared replaces the document name.
	PutShared(name string, data []byte, at time.Time) error
	// GetShared returns the document name and when it was put; ok is
	// false when there is none.
	GetShared(name string) (data []byte, at time.Time, ok bool, err error)
}

// Service keeps the provider's service state: suspended or active
// (Aruba manual §9.7.7), one row shared by every process and every node.
type Service interface {
	// ServiceState returns the state as stored; the zero value (active,
	// never changed) when it was never set.
	ServiceState() (ServiceState, error)
	// SetServiceState records st and ev, its row in the hash-chained
	// event log, in one transaction: both or neither.
	SetServiceState(st ServiceState, ev Event) error
}

// ServiceState is the provider's service state.
type ServiceState struct {
	Suspended bool
	Reason    string    // why, as the operator gave it
	Since     time.Time // when it was set (zero: never)
	By        string    // who set it (login@host)
}

// Store is everything a backend provides.
type Store interface {
	Points
	Deliveries
	Log
	Outbox
	Timers
	Quarantine
	Leases
	Shared
	Service
	Mailboxes
	// Ping checks that the database answers (health checks).
	Ping() error
	// Describe names the database for operators' messages, without
	// secrets (a path, or a URL without its password).
	Describe() string
	Close() error
}

// ErrMarked is returned by Commit, which then wrote nothing, when a Mark
// with Once set did not change its tracking row: the mark was recorded
// already (another node's timer sent that notice) or the row is unknown.
var ErrMarked = errors.New("store: the mark is recorded already: another runner sent that notice")
