package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

// The delivery point's record of what it handed to Dovecot, one row per
// (message key, recipient): see store.Delivery.

const deliveriesSchema = `
CREATE TABLE deliveries (
	msg_key TEXT NOT NULL,                -- PEC id of an envelope, or a content hash
	rcpt    TEXT NOT NULL COLLATE NOCASE,
	state   TEXT NOT NULL CHECK (state IN ('pending', 'stored', 'failed', 'unknown')),
	owner   TEXT NOT NULL DEFAULT '',     -- the LMTP transaction that recorded the intent
	pid     INTEGER NOT NULL DEFAULT 0,   -- its process
	at_ns   INTEGER NOT NULL,             -- last change
	PRIMARY KEY (msg_key, rcpt)
) STRICT;
CREATE INDEX deliveries_at ON deliveries(at_ns);
`

// Deliveries returns the rows of key for rcpts, by lower-cased recipient.
func (s *Store) Deliveries(key string, rcpts []string) (map[string]store.Delivery, error) {
	out := map[string]store.Delivery{}
	for _, r := range rcpts {
		var d store.Delivery
		var at int64
		err := s.db.QueryRow("SELECT msg_key, rcpt, state, owner, pid, at_ns FROM deliveries WHERE msg_key = ? AND rcpt = ?", key, strings.ToLower(r)).
			Scan(&d.Key, &d.Rcpt, &d.State, &d.Owner.ID, &d.Owner.PID, &at)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("store: deliveries of %s: %w", key, err)
		}
		d.At = time.Unix(0, at).UTC()
		out[strings.ToLower(r)] = d
	}
	return out, nil
}

// ClaimDeliveries records, in one transaction, the intent to hand the
// message key to Dovecot for rcpts. It fails with
// store.ErrDeliveryConflict, recording nothing, when any of them already
// has a row; with another error when the store cannot be written. Only
// after it returned nil may the message reach the mailbox.
func (s *Store) ClaimDeliveries(key string, rcpts []string, owner store.DeliveryOwner, at time.Time) error {
	if key == "" || owner.ID == "" || !store.ValidTime(at) {
		return fmt.Errorf("store: claim deliveries: need a key, an owner and a time")
	}
	err := s.write(func(tx *sql.Tx) error {
		for _, r := range rcpts {
			res, err := tx.Exec(`INSERT INTO deliveries (msg_key, rcpt, state, owner, pid, at_ns) VALUES (?, ?, ?, ?, ?, ?)
				ON CONFLICT (msg_key, rcpt) DO NOTHING`, key, strings.ToLower(r), store.DeliveryPending, owner.ID, owner.PID, at.UnixNano())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return fmt.Errorf("%w (%s, %s)", store.ErrDeliveryConflict, key, r)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: claim deliveries: %w", err)
	}
	return nil
}

func commitDeliveries(tx *sql.Tx, marks []store.DeliveryMark) error {
	for _, m := range marks {
		if m.Key == "" || m.Rcpt == "" || !store.ValidTime(m.At) {
			return fmt.Errorf("delivery %s/%s: need key, recipient and time", m.Key, m.Rcpt)
		}
		rcpt := strings.ToLower(m.Rcpt)
		var res sql.Result
		var err error
		switch {
		case m.From == "" && m.To != "":
			res, err = tx.Exec(`INSERT INTO deliveries (msg_key, rcpt, state, at_ns) VALUES (?, ?, ?, ?) ON CONFLICT (msg_key, rcpt) DO NOTHING`,
				m.Key, rcpt, m.To, m.At.UnixNano())
		case m.From == store.DeliveryPending && m.To == "":
			res, err = tx.Exec(`DELETE FROM deliveries WHERE msg_key = ? AND rcpt = ? AND state = ? AND owner = ?`,
				m.Key, rcpt, store.DeliveryPending, m.Owner)
		case m.From == store.DeliveryPending:
			res, err = tx.Exec(`UPDATE deliveries SET state = ?, owner = '', pid = 0, at_ns = ? WHERE msg_key = ? AND rcpt = ? AND state = ? AND owner = ?`,
				m.To, m.At.UnixNano(), m.Key, rcpt, store.DeliveryPending, m.Owner)
		default:
			return fmt.Errorf("delivery %s/%s: cannot move from %q to %q", m.Key, m.Rcpt, m.From, m.To)
		}
		if err != nil {
			return fmt.Errorf("delivery %s/%s: %w", m.Key, m.Rcpt, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			return fmt.Errorf("%w (%s, %s: not %q)", store.ErrDeliveryConflict, m.Key, m.Rcpt, m.From)
		}
	}
	return nil
}
