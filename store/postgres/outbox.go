package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/store"
)

// liveClaim is the condition on outbox_claims c for a claim still in force:
// its item unsent and still carrying the lease end the claim wrote.
const liveClaim = `EXISTS (SELECT 1 FROM outbox o WHERE o.id = c.item AND o.sent_ns IS NULL AND o.next_try_ns = c.until_ns)`

// Claim takes up to limit (default 100) due items for owner until
// now+lease. The items are chosen with FOR UPDATE SKIP LOCKED: claimers on
// several nodes at once get disjoint items without waiting for each
// other. The claim is the pushed next try itself, so an item whose holder
// died is due again when the lease ends, on whichever node looks first.
func (s *Store) Claim(owner store.ClaimOwner, now time.Time, lease time.Duration, limit int) ([]store.Queued, error) {
	if limit <= 0 {
		limit = 100
	}
	until := now.Add(lease)
	var out []store.Queued
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `UPDATE outbox SET next_try_ns = $1
			WHERE id IN (SELECT id FROM outbox WHERE sent_ns IS NULL AND next_try_ns <= $2 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING id, mail_from, rcpts, data, message_id, kind, attempts, last_error`, ns(until), ns(now), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			var q store.Queued
			var rcpts string
			if err := rows.Scan(&q.ID, &q.MailFrom, &rcpts, &q.Data, &q.MessageID, &q.Kind, &q.Attempts, &q.LastError); err != nil {
				rows.Close()
				return err
			}
			if q.Rcpts, err = store.DecodeList(rcpts); err != nil {
				rows.Close()
				return fmt.Errorf("item %d: bad recipients: %w", q.ID, err)
			}
			q.NextTry = until.UTC()
			out = append(out, q)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(out) == 0 {
			return nil
		}
		// forget claims that are over (those no other claimer is touching)
		if _, err := tx.Exec(ctx, `DELETE FROM outbox_claims WHERE item IN
			(SELECT c.item FROM outbox_claims AS c WHERE NOT `+liveClaim+` FOR UPDATE SKIP LOCKED)`); err != nil {
			return err
		}
		for _, q := range out {
			if _, err := tx.Exec(ctx, `INSERT INTO outbox_claims (item, until_ns, host, pid, instance, proc) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (item) DO UPDATE SET until_ns = excluded.until_ns, host = excluded.host, pid = excluded.pid,
					instance = excluded.instance, proc = excluded.proc`,
				q.ID, ns(until), owner.Host, owner.PID, owner.Instance, owner.Proc); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.explain("claim from", err)
	}
	sortQueued(out)
	return out, nil
}

func sortQueued(q []store.Queued) {
	for i := 1; i < len(q); i++ {
		for j := i; j > 0 && q[j].ID < q[j-1].ID; j-- {
			q[j], q[j-1] = q[j-1], q[j]
		}
	}
}

// ClaimHolders lists the owners of the claims in force.
func (s *Store) ClaimHolders() ([]store.ClaimHolder, error) {
	var out []store.ClaimHolder
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT host, pid, instance, proc, count(*), max(until_ns) FROM outbox_claims AS c
			WHERE `+liveClaim+` GROUP BY host, pid, instance, proc ORDER BY host, pid, instance`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h store.ClaimHolder
			var until int64
			if err := rows.Scan(&h.Host, &h.PID, &h.Instance, &h.Proc, &h.Items, &until); err != nil {
				return err
			}
			h.Until = fromNS(until)
			out = append(out, h)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("claim holders of", err)
	}
	return out, nil
}

// ReleaseClaimsOf makes the items that owner still holds due at at.
func (s *Store) ReleaseClaimsOf(owner store.ClaimOwner, at time.Time) (int, error) {
	var n int64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbox SET next_try_ns = $1
			WHERE sent_ns IS NULL AND id IN (SELECT c.item FROM outbox_claims AS c
				WHERE c.host = $2 AND c.pid = $3 AND c.instance = $4 AND c.proc = $5 AND c.until_ns = outbox.next_try_ns)`,
			ns(at), owner.Host, owner.PID, owner.Instance, owner.Proc)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		_, err = tx.Exec(ctx, `DELETE FROM outbox_claims WHERE host = $1 AND pid = $2 AND instance = $3 AND proc = $4`,
			owner.Host, owner.PID, owner.Instance, owner.Proc)
		return err
	})
	if err != nil {
		return 0, s.explain(fmt.Sprintf("releasing the claims of %s pid %d (%s) in", owner.Host, owner.PID, owner.Instance), err)
	}
	return int(n), nil
}

// DuePending returns up to limit unsent items due at now, oldest first,
// without claiming them.
func (s *Store) DuePending(now time.Time, limit int) ([]store.Queued, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []store.Queued
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT id, mail_from, rcpts, data, message_id, kind, attempts, next_try_ns
			FROM outbox WHERE sent_ns IS NULL AND next_try_ns <= $1 ORDER BY id LIMIT $2`, ns(now), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var q store.Queued
			var rcpts string
			var next int64
			if err := rows.Scan(&q.ID, &q.MailFrom, &rcpts, &q.Data, &q.MessageID, &q.Kind, &q.Attempts, &next); err != nil {
				return err
			}
			if q.Rcpts, err = store.DecodeList(rcpts); err != nil {
				return fmt.Errorf("item %d: bad recipients: %w", q.ID, err)
			}
			if next != 0 {
				q.NextTry = fromNS(next)
			}
			out = append(out, q)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("due pending of", err)
	}
	return out, nil
}

// Release makes claimed, unsent items due again at at.
func (s *Store) Release(ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE outbox SET next_try_ns = $1 WHERE id = ANY($2) AND sent_ns IS NULL", ns(at), ids)
		return err
	})
	if err != nil {
		return s.explain("release in", err)
	}
	return nil
}

// MarkSent records that item id was accepted at at and appends the
// "outbox sent" row to the log in the same transaction.
func (s *Store) MarkSent(id int64, at time.Time) error {
	if !store.ValidTime(at) {
		return fmt.Errorf("store: mark sent %d: time %v is zero or out of range", id, at)
	}
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		c, err := lockChain(ctx, tx)
		if err != nil {
			return err
		}
		var from, rcpts, msgID string
		var sent *int64
		err = tx.QueryRow(ctx, "SELECT mail_from, rcpts, message_id, sent_ns FROM outbox WHERE id = $1 FOR UPDATE", id).
			Scan(&from, &rcpts, &msgID, &sent)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && sent != nil) {
			return store.ErrNotPending
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "UPDATE outbox SET sent_ns = $1, attempts = attempts + 1, last_error = '' WHERE id = $2", ns(at), id); err != nil {
			return err
		}
		rl, err := store.DecodeList(rcpts)
		if err != nil {
			return fmt.Errorf("bad recipients: %w", err)
		}
		e, err := store.NormalizeEvent(store.Event{Time: at, Point: store.AtOutbox, Type: store.TypeSent, Sender: from, Recipients: rl, Related: []string{msgID}})
		if err != nil {
			return err
		}
		var q pipe
		appendEvents(&q, c, []store.Event{e})
		return q.run(ctx, tx)
	})
	if errors.Is(err, store.ErrNotPending) {
		return fmt.Errorf("store: mark sent %d: %w", id, err)
	}
	if err != nil {
		return s.explain(fmt.Sprintf("mark sent %d in", id), err)
	}
	return nil
}

// MarkRetry records a failed attempt of item id and schedules the next one.
func (s *Store) MarkRetry(id int64, errText string, next time.Time) error {
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = $1, next_try_ns = $2
			WHERE id = $3 AND sent_ns IS NULL`, errText, ns(next), id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotPending
		}
		return nil
	})
	if errors.Is(err, store.ErrNotPending) {
		return fmt.Errorf("store: mark retry %d: %w", id, err)
	}
	if err != nil {
		return s.explain(fmt.Sprintf("mark retry %d in", id), err)
	}
	return nil
}

// OutboxDepth returns the number of items not yet sent.
func (s *Store) OutboxDepth() (int, error) {
	return s.count("outbox depth of", "SELECT count(*) FROM outbox WHERE sent_ns IS NULL")
}

// Pending lists every unsent outbox item, oldest first.
func (s *Store) Pending(limit int) ([]store.PendingItem, error) {
	if limit <= 0 {
		limit = 1000
	}
	var out []store.PendingItem
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT id, created_ns, mail_from, rcpts, message_id, kind, attempts, next_try_ns, last_error
			FROM outbox WHERE sent_ns IS NULL ORDER BY id LIMIT $1`, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p store.PendingItem
			var created, next int64
			var rcpts string
			if err := rows.Scan(&p.ID, &created, &p.MailFrom, &rcpts, &p.MessageID, &p.Kind, &p.Attempts, &next, &p.LastError); err != nil {
				return err
			}
			if p.Rcpts, err = store.DecodeList(rcpts); err != nil {
				return fmt.Errorf("item %d: %w", p.ID, err)
			}
			p.Created = fromNS(created)
			if next != 0 {
				p.NextTry = fromNS(next)
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("pending of", err)
	}
	return out, nil
}

// RetryAll makes every unsent item due at at.
func (s *Store) RetryAll(at time.Time) (int, error) {
	var n int64
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE outbox SET next_try_ns = $1 WHERE sent_ns IS NULL AND next_try_ns > $1`, ns(at))
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, s.explain("retry in", err)
	}
	return int(n), nil
}
