package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pecgo/pec/store"
)

// The delivery point's record of what it handed to Dovecot, one row per
// (message key, recipient): see store.Delivery. The primary key makes a
// claim exclusive across nodes: of two nodes inserting the same row at
// once, the second waits for the first to commit and then finds it.

// Deliveries returns the rows of key for rcpts, by lower-cased recipient.
func (s *Store) Deliveries(key string, rcpts []string) (map[string]store.Delivery, error) {
	out := map[string]store.Delivery{}
	err := s.read(func(ctx context.Context) error {
		for _, r := range rcpts {
			var d store.Delivery
			var k, rc []byte
			var at int64
			err := s.pool.QueryRow(ctx, "SELECT msg_key, rcpt, state, owner, pid, at_ns FROM deliveries WHERE msg_key = $1 AND rcpt = $2",
				b(key), b(strings.ToLower(r))).Scan(&k, &rc, &d.State, &d.Owner.ID, &d.Owner.PID, &at)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			d.Key, d.Rcpt, d.At = string(k), string(rc), fromNS(at)
			out[strings.ToLower(r)] = d
		}
		return nil
	})
	if err != nil {
		return nil, s.explain("deliveries of "+key+" in", err)
	}
	return out, nil
}

// ClaimDeliveries records, in one transaction, the intent to hand the
// message key to Dovecot for rcpts; store.ErrDeliveryConflict, recording
// nothing, when any of them already has a row.
func (s *Store) ClaimDeliveries(key string, rcpts []string, owner store.DeliveryOwner, at time.Time) error {
	if key == "" || owner.ID == "" || !store.ValidTime(at) {
		return fmt.Errorf("store: claim deliveries: need a key, an owner and a time")
	}
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		var q pipe
		for _, r := range rcpts {
			q.exec("claiming delivery", func(tag pgconn.CommandTag) error {
				if tag.RowsAffected() != 1 {
					return fmt.Errorf("%w (%s, %s)", store.ErrDeliveryConflict, key, r)
				}
				return nil
			}, `INSERT INTO deliveries (msg_key, rcpt, state, owner, pid, at_ns) VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (msg_key, rcpt) DO NOTHING`, b(key), b(strings.ToLower(r)), store.DeliveryPending, owner.ID, owner.PID, ns(at))
		}
		return q.run(ctx, tx)
	})
	if errors.Is(err, store.ErrDeliveryConflict) {
		return fmt.Errorf("store: claim deliveries: %w", err)
	}
	if err != nil {
		return s.explain("claim deliveries in", err)
	}
	return nil
}

// commitDeliveries queues the moves of delivery rows; each must change
// exactly one row, else the transaction fails with ErrDeliveryConflict.
func commitDeliveries(p *pipe, marks []store.DeliveryMark) error {
	for _, m := range marks {
		if m.Key == "" || m.Rcpt == "" || !store.ValidTime(m.At) {
			return fmt.Errorf("delivery %s/%s: need key, recipient and time", m.Key, m.Rcpt)
		}
		rcpt := b(strings.ToLower(m.Rcpt))
		check := func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("%w (%s, %s: not %q)", store.ErrDeliveryConflict, m.Key, m.Rcpt, m.From)
			}
			return nil
		}
		what := fmt.Sprintf("delivery %s/%s", m.Key, m.Rcpt)
		switch {
		case m.From == "" && m.To != "":
			p.exec(what, check, `INSERT INTO deliveries (msg_key, rcpt, state, at_ns) VALUES ($1, $2, $3, $4) ON CONFLICT (msg_key, rcpt) DO NOTHING`,
				b(m.Key), rcpt, m.To, ns(m.At))
		case m.From == store.DeliveryPending && m.To == "":
			p.exec(what, check, `DELETE FROM deliveries WHERE msg_key = $1 AND rcpt = $2 AND state = $3 AND owner = $4`,
				b(m.Key), rcpt, store.DeliveryPending, m.Owner)
		case m.From == store.DeliveryPending:
			p.exec(what, check, `UPDATE deliveries SET state = $1, owner = '', pid = 0, at_ns = $2 WHERE msg_key = $3 AND rcpt = $4 AND state = $5 AND owner = $6`,
				m.To, ns(m.At), b(m.Key), rcpt, store.DeliveryPending, m.Owner)
		default:
			return fmt.Errorf("delivery %s/%s: cannot move from %q to %q", m.Key, m.Rcpt, m.From, m.To)
		}
	}
	return nil
}
