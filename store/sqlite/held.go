package sqlite

import (
	"github.com/pecgo/pec/store"

	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// An acceptance is true only once Postfix has queued the transport
// envelope (RFC 6109 §3.1.4: the acceptance receipt attests that the
// provider took the message in charge). The access milter answers Postfix
// before Postfix writes its queue file, and Postfix can still fail after
// the milter's answer (a crash, a queue write error, a message its cleanup
// cannot rewrite). So the access point holds the transaction here, keyed
// by a random token, and adds a confirmation recipient carrying the token
// to the envelope: Postfix delivers that recipient to the delivery point
// only from a queued message, and the delivery point then makes the
// transaction effective (ConfirmQueued): log rows, acceptance receipt,
// timers. A held transaction that is never confirmed is dropped
// (DropUnqueued): no acceptance, no log row, no timer for mail that never
// left.
//
// store.Timer rows are written at once but marked held, so that a take-charge
// or receipt arriving before the confirmation still finds its row; the
// timers skip held rows.

// HoldUntilQueued records txn, accepted at at for Postfix queue id
// queueID, under token; nothing of it is effective until ConfirmQueued.
func (s *Store) HoldUntilQueued(token, queueID string, at time.Time, txn store.Txn) error {
	if token == "" || !store.ValidTime(at) {
		return errors.New("store: hold: need a token and a time")
	}
	if _, err := prepareTxn(txn); err != nil {
		return fmt.Errorf("store: hold: %w", err)
	}
	track := txn.Track
	txn.Track = nil
	data, err := json.Marshal(txn)
	if err != nil {
		return fmt.Errorf("store: hold: %w", err)
	}
	err = s.write(func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO held (token, queue_id, created_ns, txn) VALUES (?, ?, ?, ?)`, token, queueID, at.UnixNano(), data); err != nil {
			return err
		}
		if err := commitTracking(tx, store.Txn{Track: track}); err != nil {
			return err
		}
		for _, t := range track {
			if _, err := tx.Exec(`UPDATE tracking SET held = ? WHERE pecid = ? AND rcpt = ?`, token, t.PECID, t.Rcpt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: hold: %w", err)
	}
	return nil
}

// ConfirmQueued makes the held transaction of token effective, in one
// database transaction. found is false for an unknown token (confirmed
// already, or dropped): confirming twice is harmless.
func (s *Store) ConfirmQueued(token string) (found bool, err error) {
	err = s.write(func(tx *sql.Tx) error {
		var data []byte
		err := tx.QueryRow(`SELECT txn FROM held WHERE token = ?`, token).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var txn store.Txn
		if err := json.Unmarshal(data, &txn); err != nil {
			return fmt.Errorf("held transaction %s: %w", token, err)
		}
		c, err := prepareTxn(txn)
		if err != nil {
			return fmt.Errorf("held transaction %s: %w", token, err)
		}
		if err := c.apply(tx); err != nil {
			return err
		}
		if _, err := tx.Exec(`UPDATE tracking SET held = NULL WHERE held = ?`, token); err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM held WHERE token = ?`, token); err != nil {
			return err
		}
		found = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("store: confirm queued: %w", err)
	}
	return found, nil
}

// DropUnqueued forgets the held transactions created before before, with
// their timer rows, and returns them: Postfix never queued their messages.
func (s *Store) DropUnqueued(before time.Time) ([]store.HeldItem, error) {
	var out []store.HeldItem
	err := s.write(func(tx *sql.Tx) error {
		out = nil
		rows, err := tx.Query(`SELECT token, queue_id, created_ns, txn FROM held WHERE created_ns < ? ORDER BY created_ns`, before.UnixNano())
		if err != nil {
			return err
		}
		for rows.Next() {
			var h store.HeldItem
			var created int64
			var data []byte
			if err := rows.Scan(&h.Token, &h.QueueID, &created, &data); err != nil {
				rows.Close()
				return err
			}
			h.Created = time.Unix(0, created).UTC()
			var txn store.Txn
			if json.Unmarshal(data, &txn) == nil {
				for _, e := range txn.Events {
					h.PECIDs = append(h.PECIDs, e.PECID)
				}
			}
			out = append(out, h)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, h := range out {
			if _, err := tx.Exec(`DELETE FROM tracking WHERE held = ?`, h.Token); err != nil {
				return err
			}
			if _, err := tx.Exec(`DELETE FROM held WHERE token = ?`, h.Token); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: drop unqueued: %w", err)
	}
	return out, nil
}

// HeldCount is the number of transactions waiting for Postfix to queue
// their message.
func (s *Store) HeldCount() (int, error) {
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM held`).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: held count: %w", err)
	}
	return n, nil
}
