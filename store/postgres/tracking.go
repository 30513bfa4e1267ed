package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pecgo/pec/store"
)

// ---- timers (RFC 6109 §3.1.6) ----

func commitTracking(p *pipe, txn store.Txn) error {
	for _, t := range txn.Track {
		if !store.ValidTime(t.Sent) || t.PECID == "" || t.Rcpt == "" {
			return fmt.Errorf("tracking %s/%s: need PEC id, recipient and time", t.PECID, t.Rcpt)
		}
		data := t.Tx
		if data == nil {
			data = []byte{}
		}
		p.exec(fmt.Sprintf("tracking %s/%s", t.PECID, t.Rcpt), nil,
			`INSERT INTO tracking (pecid, rcpt, sent_ns, tx) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`,
			b(t.PECID), b(strings.ToLower(t.Rcpt)), ns(t.Sent), data)
	}
	for _, m := range txn.Marks {
		var q string
		switch m.What {
		case store.MarkPresa:
			q = `UPDATE tracking SET presa_ns = $1 WHERE pecid = $2 AND rcpt = $3 AND presa_ns IS NULL`
		case store.MarkConsegna, store.MarkErrore:
			q = `UPDATE tracking SET outcome_ns = $1, outcome = '` + string(m.What) + `' WHERE pecid = $2 AND rcpt = $3 AND outcome_ns IS NULL`
		case store.MarkNotice12:
			q = `UPDATE tracking SET notice12_ns = $1 WHERE pecid = $2 AND rcpt = $3 AND notice12_ns IS NULL`
		case store.MarkNotice24:
			q = `UPDATE tracking SET notice24_ns = $1 WHERE pecid = $2 AND rcpt = $3 AND notice24_ns IS NULL`
		default:
			return fmt.Errorf("tracking: unknown mark %q", m.What)
		}
		var check func(pgconn.CommandTag) error
		if m.Once {
			check = func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() == 0 {
					return fmt.Errorf("tracking mark %s %s/%s: %w", m.What, m.PECID, m.Rcpt, store.ErrMarked)
				}
				return nil
			}
		}
		p.exec(fmt.Sprintf("tracking mark %s %s/%s", m.What, m.PECID, m.Rcpt), check, q, ns(m.At), b(m.PECID), b(strings.ToLower(m.Rcpt)))
	}
	return nil
}

// OpenTimers is store.Timers.OpenTimers (the tracking_open index).
func (s *Store) OpenTimers(sentBy time.Time, after store.Timer, limit int) ([]store.Timer, error) {
	if limit <= 0 {
		limit = 100
	}
	afterNS := int64(math.MinInt64)
	if !after.Sent.IsZero() {
		afterNS = ns(after.Sent)
	}
	var out []store.Timer
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `
			SELECT pecid, rcpt, sent_ns, tx, presa_ns IS NOT NULL, notice12_ns IS NOT NULL FROM tracking
			WHERE outcome_ns IS NULL AND notice24_ns IS NULL AND held IS NULL AND sent_ns <= $1
				AND (sent_ns, pecid, rcpt) > ($2, $3, $4)
			ORDER BY sent_ns, pecid, rcpt LIMIT $5`, ns(sentBy), afterNS, b(after.PECID), b(after.Rcpt), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t store.Timer
			var pecid, rcpt []byte
			var sent int64
			if err := rows.Scan(&pecid, &rcpt, &sent, &t.Tx, &t.Presa, &t.Notice12); err != nil {
				return err
			}
			t.PECID, t.Rcpt, t.Sent = string(pecid), string(rcpt), fromNS(sent)
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("open timers of", err)
	}
	return out, nil
}

// Tracking returns the tracking rows of a PEC id.
func (s *Store) Tracking(pecid string) ([]store.TrackingState, error) {
	var out []store.TrackingState
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT pecid, rcpt, outcome, sent_ns, presa_ns, outcome_ns, notice12_ns, notice24_ns
			FROM tracking WHERE pecid = $1 ORDER BY rcpt`, b(pecid))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var t store.TrackingState
			var p, r []byte
			var sent int64
			var presa, outcome, n12, n24 *int64
			if err := rows.Scan(&p, &r, &t.Outcome, &sent, &presa, &outcome, &n12, &n24); err != nil {
				return err
			}
			t.PECID, t.Rcpt, t.Sent = string(p), string(r), fromNS(sent)
			t.Presa, t.OutcomeAt, t.Notice12, t.Notice24 = fromNullNS(presa), fromNullNS(outcome), fromNullNS(n12), fromNullNS(n24)
			out = append(out, t)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("tracking of", err)
	}
	return out, nil
}

// ---- acceptances held until Postfix queued the envelope ----

// HoldUntilQueued records txn under token; nothing of it is effective
// until ConfirmQueued. Its timer rows are written at once, marked held.
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
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO held (token, queue_id, created_ns, txn) VALUES ($1, $2, $3, $4)`, token, queueID, ns(at), data); err != nil {
			return err
		}
		var q pipe
		if err := commitTracking(&q, store.Txn{Track: track}); err != nil {
			return err
		}
		for _, t := range track {
			q.exec("holding tracking", nil, `UPDATE tracking SET held = $1 WHERE pecid = $2 AND rcpt = $3`, token, b(t.PECID), b(strings.ToLower(t.Rcpt)))
		}
		return q.run(ctx, tx)
	})
	if err != nil {
		return s.explain("hold in", err)
	}
	return nil
}

// ConfirmQueued makes the held transaction of token effective, in one
// database transaction; found is false for an unknown token.
func (s *Store) ConfirmQueued(token string) (found bool, err error) {
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		found = false
		var data []byte
		err := tx.QueryRow(ctx, `SELECT txn FROM held WHERE token = $1`, token).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var txn store.Txn
		if err := json.Unmarshal(data, &txn); err != nil {
			return fmt.Errorf("held transaction %s: %w", token, err)
		}
		p, err := prepareTxn(txn)
		if err != nil {
			return fmt.Errorf("held transaction %s: %w", token, err)
		}
		// the chain first (lock order), then the held row: of two nodes
		// confirming the same token, the second finds it gone
		c, err := lockChain(ctx, tx)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM held WHERE token = $1`, token)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return nil // confirmed or dropped meanwhile
		}
		var q pipe
		if err := p.apply(&q, c); err != nil {
			return err
		}
		q.exec("releasing tracking", nil, `UPDATE tracking SET held = NULL WHERE held = $1`, token)
		if err := q.run(ctx, tx); err != nil {
			return err
		}
		found = true
		return nil
	})
	if err != nil {
		return false, s.explain("confirm queued in", err)
	}
	return found, nil
}

// DropUnqueued forgets the held transactions created before before, with
// their timer rows, and returns them. DELETE ... RETURNING hands each to
// exactly one caller when several nodes drop at once.
func (s *Store) DropUnqueued(before time.Time) ([]store.HeldItem, error) {
	var out []store.HeldItem
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `DELETE FROM held WHERE created_ns < $1 RETURNING token, queue_id, created_ns, txn`, ns(before))
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
			h.Created = fromNS(created)
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
			if _, err := tx.Exec(ctx, `DELETE FROM tracking WHERE held = $1`, h.Token); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, s.explain("drop unqueued in", err)
	}
	sortHeld(out)
	return out, nil
}

func sortHeld(h []store.HeldItem) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Created.Before(h[j-1].Created); j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

// HeldCount is the number of transactions waiting for Postfix to queue
// their message.
func (s *Store) HeldCount() (int, error) {
	return s.count("held count of", `SELECT count(*) FROM held`)
}
