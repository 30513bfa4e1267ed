// Package store is the contract of the provider's durable state (RFC 6109
// §2.3 log, outbox, timers, virus store): the types every backend reads
// and writes, and the legal encoding of the event log's hash chain, which
// every backend must reproduce byte for byte. The SQLite backend is
// store/sqlite. This package holds no driver and no cgo.
package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors returned by the outbox methods.
var (
	ErrNotPending = errors.New("store: outbox item is not pending (unknown id or already sent)")
)

// Event is one row of the PEC event log (RFC 6109 §2.3; PEC-SPEC §6.5).
type Event struct {
	ID         int64     // row id, set when read back; ignored by Commit
	Time       time.Time // the transaction instant
	Point      string    // "access", "incoming", "delivery", "timer", "outbox", "service" (suspend, resume)
	Type       string    // "accettazione", "non-accettazione", "posta-certificata", "presa-in-carico", "avvenuta-consegna", "errore-consegna", "anomalia", "rilevazione-virus", "preavviso-errore-consegna", "sent", ...
	PECID      string    // identificativo of the transaction
	MsgID      string    // the original Message-ID (with angle brackets)
	Sender     string
	Recipients []string
	Subject    string
	Related    []string // ids of generated messages (receipts/envelopes)
	Provider   string   // sending provider (gestore)
	Error      string
	QueueID    string // Postfix queue id when known
}

// Outgoing is a generated message (receipt/notice) to be sent by SMTP.
type Outgoing struct {
	MailFrom  string
	Rcpts     []string
	Data      []byte
	MessageID string
	Kind      string
}

// Quarantined is an infected message kept in the virus store (RFC 6109
// §2.2.4, 30 months).
type Quarantined struct {
	Time       time.Time
	PECID      string
	Sender     string
	Recipients []string
	Signature  string
	Data       []byte
}

// Txn is everything one SMTP transaction must record atomically.
type Txn struct {
	Events []Event
	Outbox []Outgoing
	Virus  []Quarantined
	// Track starts the 12 h / 24 h timers of certified recipients
	// (tracking.go); Marks records take-charge and delivery outcomes and
	// notices sent by the timers.
	Track []Tracked
	Marks []Mark
	// Deliveries moves the delivery point's rows (delivery.go); the whole
	// Txn fails with ErrDeliveryConflict when one is not in the state it
	// expects.
	Deliveries []DeliveryMark
}

// Queued is a pending outbox item.
type Queued struct {
	ID int64
	Outgoing
	Attempts int
	NextTry  time.Time // zero: as soon as possible
	// LastError is the error of the last failed attempt ("" after none);
	// set by Claim.
	LastError string
}

// Query selects event log rows. Empty fields do not filter. From is
// inclusive, To exclusive; Limit <= 0 means no limit. Sender and Recipient
// match case-insensitively (ASCII). Rows come oldest first.
type Query struct {
	PECID     string
	MsgID     string
	Sender    string
	Recipient string
	Type      string // event type, e.g. "accettazione"
	Point     string // "access", "incoming", "delivery", ...
	From, To  time.Time
	Limit     int
}

// ---- canonical encoding and chain ----

// ZeroHash is the prev_hash of the first row of an empty log.
var ZeroHash = make([]byte, sha256.Size)

// canonical is the encoding the row hash covers: a version tag and every
// field of e in a fixed order, each string as an 8-byte big-endian length
// followed by its bytes, each list as an 8-byte count followed by its
// strings. The time is UTC RFC 3339 with nanoseconds. ID is not included:
// the position of a row is protected by the chain itself.
func canonical(e *Event) []byte {
	b := make([]byte, 0, 256)
	str := func(s string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	list := func(l []string) {
		b = binary.BigEndian.AppendUint64(b, uint64(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str("pec-event-v1")
	str(e.Time.UTC().Format(time.RFC3339Nano))
	str(e.Point)
	str(e.Type)
	str(e.PECID)
	str(e.MsgID)
	str(e.Sender)
	list(e.Recipients)
	str(e.Subject)
	list(e.Related)
	str(e.Provider)
	str(e.Error)
	str(e.QueueID)
	return b
}

// RowHash is SHA-256(prev || canonical(e)): the hash of the row holding e
// after a row whose hash is prev. Every backend stores exactly this.
func RowHash(prev []byte, e *Event) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical(e))
	return h.Sum(nil)
}

// ValidTime reports whether t can be stored: not zero, and in the range
// of Unix nanoseconds (years 1678 to 2262).
func ValidTime(t time.Time) bool {
	return !t.IsZero() && time.Unix(0, t.UnixNano()).Equal(t)
}

// LinkedEvent is an event row with its chain values as stored.
type LinkedEvent struct {
	Event
	PrevHash []byte // hash of the previous row (the purge anchor for the first row)
	Hash     []byte // SHA-256(PrevHash || canonical(Event))
}

// ChainHash is the hash a row holding e has when it follows a row whose
// hash is prev: what VerifyLog recomputes. Archives use it to check the
// rows they hold without the store.
func (e Event) ChainHash(prev []byte) []byte {
	e.Time = time.Unix(0, e.Time.UnixNano()).UTC()
	return RowHash(prev, &e)
}

// Empty reports whether the transaction records nothing.
func (t Txn) Empty() bool {
	return len(t.Events) == 0 && len(t.Outbox) == 0 && len(t.Virus) == 0 && len(t.Track) == 0 && len(t.Marks) == 0 && len(t.Deliveries) == 0
}

// Tracked starts tracking one certified recipient of an envelope.
type Tracked struct {
	PECID string
	Rcpt  string
	Sent  time.Time
	Tx    []byte // opaque to the store
}

// Mark kinds.
const (
	MarkPresa    = "presa-in-carico"   // a take-charge covering the recipient arrived
	MarkConsegna = "avvenuta-consegna" // delivery receipt arrived: tracking ends
	MarkErrore   = "errore-consegna"   // non-delivery notice arrived: tracking ends (our choice, PEC-SPEC §6.6 rule 4)
	MarkNotice12 = "notice-12h"        // the 12 h notice was queued
	MarkNotice24 = "notice-24h"        // the 24 h notice was queued: tracking ends
)

// Mark records an event about a tracked recipient. Marks for unknown
// (PEC id, recipient) pairs are ignored: notices about envelopes of other
// providers pass through too.
type Mark struct {
	PECID string
	Rcpt  string
	What  string
	At    time.Time
	// Once makes the whole Commit fail with ErrMarked, writing nothing,
	// when this mark does not change its row (recorded already, or no such
	// row): a timer notice is committed by exactly one runner however many
	// nodes run timers.
	Once bool
}

// Timer is a tracked recipient whose deadline has come.
type Timer struct {
	PECID string
	Rcpt  string
	Sent  time.Time
	Tx    []byte
	Final bool // the 24 h notice (else the 12 h one)
}

// TrackingState is one timer row, for tests and pecctl.
type TrackingState struct {
	PECID, Rcpt, Outcome                 string
	Sent                                 time.Time
	Presa, OutcomeAt, Notice12, Notice24 time.Time
}

// ClaimOwner is the process holding a claim. Instance must be unique per
// run of a process; Proc, when not empty, identifies the process on its
// host more precisely than PID (which the kernel reuses).
type ClaimOwner struct {
	Host     string
	PID      int
	Instance string
	Proc     string
}

// ClaimHolder is an owner of live claims and how many items it holds.
type ClaimHolder struct {
	ClaimOwner
	Items int
	Until time.Time // the latest lease end among its items
}

// HeldItem is a held transaction as DropUnqueued reports it.
type HeldItem struct {
	Token   string
	QueueID string
	Created time.Time
	PECIDs  []string // of its log rows
}

// PendingItem is an unsent outbox item as an operator sees it.
type PendingItem struct {
	ID        int64
	Created   time.Time
	MailFrom  string
	Rcpts     []string
	MessageID string
	Kind      string
	Attempts  int
	NextTry   time.Time // zero: as soon as possible
	LastError string
}

// NormalizeEvent checks e and returns it as every backend stores and
// reads it back, so that the hash covers exactly what is stored: ID
// cleared, the time in UTC at nanosecond precision, each list as it comes
// back from its JSON text (invalid UTF-8 replaced by U+FFFD, empty as
// nil). Strings outside lists are kept byte for byte.
func NormalizeEvent(e Event) (Event, error) {
	if !ValidTime(e.Time) {
		return e, fmt.Errorf("event %q/%q: Time %v is zero or out of range", e.Point, e.Type, e.Time)
	}
	if e.Type == "" {
		return e, fmt.Errorf("event at %q: empty Type", e.Point)
	}
	e.ID = 0
	e.Time = time.Unix(0, e.Time.UnixNano()).UTC()
	var err error
	if e.Recipients, err = DecodeList(EncodeList(e.Recipients)); err != nil {
		return e, err
	}
	if e.Related, err = DecodeList(EncodeList(e.Related)); err != nil {
		return e, err
	}
	return e, nil
}

// EncodeList is the JSON text a backend stores for a list of strings
// ("[]" when empty).
func EncodeList(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, err := json.Marshal(l)
	if err != nil { // cannot happen for []string
		panic(err)
	}
	return string(b)
}

// DecodeList reads what EncodeList wrote; an empty list is nil.
func DecodeList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, err
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}
