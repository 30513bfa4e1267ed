package sqlite

import (
	"github.com/pecgo/pec/store"

	"database/sql"
	"fmt"
	"sort"
	"time"
)

// Claims of outbox items. A sender that claims items (Claim) writes who it
// is next to each of them, so that a sender starting after a crash can
// tell the claims of dead processes from the claims of live ones and give
// the former back at once (ReleaseClaimsOf) instead of waiting for their
// lease to end. The outbox table is untouched: a claim is live while its
// item is unsent and its next_try_ns is still the lease end the claim
// wrote; any later change (sent, retry scheduled, released, pecctl outbox
// retry) ends it.

const claimsSchema = `
CREATE TABLE IF NOT EXISTS outbox_claims (
	item     INTEGER PRIMARY KEY,  -- outbox.id
	until_ns INTEGER NOT NULL,     -- the lease end written into outbox.next_try_ns
	host     TEXT NOT NULL,        -- host name of the claiming process
	pid      INTEGER NOT NULL,
	instance TEXT NOT NULL,        -- unique per run of the claiming process
	proc     TEXT NOT NULL         -- identity of the process on its host ('' when unknown)
) STRICT;
`

func (s *Store) initClaims() error {
	if _, err := s.db.Exec(claimsSchema); err != nil {
		return s.explain("cannot create the outbox claims table in", err)
	}
	return nil
}

// liveClaim is the condition on outbox_claims c for a claim still in force.
const liveClaim = `EXISTS (SELECT 1 FROM outbox o WHERE o.id = c.item AND o.sent_ns IS NULL AND o.next_try_ns = c.until_ns)`

// Claim is DuePending for senders that may run in several processes
// (pecmilter and pecdeliver share one store): in one transaction it takes
// the due items, pushes their NextTry to now+lease, so no other sender
// takes them meanwhile, and records owner as their holder. An item whose
// sender died becomes due again when the lease ends, or earlier when a
// sender on the same host releases the claims of dead owners
// (ReleaseClaimsOf). Attempts is not changed.
func (s *Store) Claim(owner store.ClaimOwner, now time.Time, lease time.Duration, limit int) ([]store.Queued, error) {
	if limit <= 0 {
		limit = 100
	}
	until := now.Add(lease)
	var out []store.Queued
	err := s.write(func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.Query(`UPDATE outbox SET next_try_ns = ?
		WHERE id IN (SELECT id FROM outbox WHERE sent_ns IS NULL AND next_try_ns <= ? ORDER BY id LIMIT ?)
		RETURNING id, mail_from, rcpts, message_id, kind, attempts, last_error`, until.UnixNano(), now.UnixNano(), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var q store.Queued
			var rcpts string
			if err := rows.Scan(&q.ID, &q.MailFrom, &rcpts, &q.MessageID, &q.Kind, &q.Attempts, &q.LastError); err != nil {
				rows.Close()
				return err
			}
			if q.Rcpts, err = decodeList(rcpts); err != nil {
				rows.Close()
				return fmt.Errorf("item %d: bad recipients: %w", q.ID, err)
			}
			q.NextTry = until.UTC()
			out = append(out, q)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// the messages, read apart: the claim did not rewrite them
		for i := range out {
			if err := tx.QueryRow(`SELECT data FROM outbox_data WHERE id = ?`, out[i].ID).Scan(&out[i].Data); err != nil {
				return fmt.Errorf("item %d: message: %w", out[i].ID, err)
			}
		}
		// Forget claims that are over, then record the new ones.
		if _, err := tx.Exec(`DELETE FROM outbox_claims AS c WHERE NOT ` + liveClaim); err != nil {
			return err
		}
		for _, q := range out {
			if _, err := tx.Exec(`INSERT OR REPLACE INTO outbox_claims (item, until_ns, host, pid, instance, proc) VALUES (?, ?, ?, ?, ?, ?)`,
				q.ID, until.UnixNano(), owner.Host, owner.PID, owner.Instance, owner.Proc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ClaimHolders lists the owners of the claims in force, by host, PID and
// instance.
func (s *Store) ClaimHolders() ([]store.ClaimHolder, error) {
	rows, err := s.db.Query(`SELECT host, pid, instance, proc, count(*), max(until_ns) FROM outbox_claims AS c
		WHERE ` + liveClaim + ` GROUP BY host, pid, instance, proc ORDER BY host, pid, instance`)
	if err != nil {
		return nil, fmt.Errorf("store: claim holders: %w", err)
	}
	defer rows.Close()
	var out []store.ClaimHolder
	for rows.Next() {
		var h store.ClaimHolder
		var until int64
		if err := rows.Scan(&h.Host, &h.PID, &h.Instance, &h.Proc, &h.Items, &until); err != nil {
			return nil, fmt.Errorf("store: claim holders: %w", err)
		}
		h.Until = time.Unix(0, until).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: claim holders: %w", err)
	}
	return out, nil
}

// ReleaseClaimsOf makes the items that owner (all four fields equal) still
// holds due at at, and returns how many. For a sender that knows owner is
// dead: its claims need not wait for their lease.
func (s *Store) ReleaseClaimsOf(owner store.ClaimOwner, at time.Time) (int, error) {
	var n int64
	err := s.write(func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE outbox SET next_try_ns = ?
			WHERE sent_ns IS NULL AND id IN (SELECT c.item FROM outbox_claims AS c
				WHERE c.host = ? AND c.pid = ? AND c.instance = ? AND c.proc = ? AND c.until_ns = outbox.next_try_ns)`,
			at.UnixNano(), owner.Host, owner.PID, owner.Instance, owner.Proc)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.Exec(`DELETE FROM outbox_claims WHERE host = ? AND pid = ? AND instance = ? AND proc = ?`,
			owner.Host, owner.PID, owner.Instance, owner.Proc)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: releasing the claims of %s pid %d (%s): %w", owner.Host, owner.PID, owner.Instance, err)
	}
	return int(n), nil
}
