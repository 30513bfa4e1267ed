package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/store"
)

// ServiceState implements store.Service.
func (s *Store) ServiceState() (store.ServiceState, error) {
	var st store.ServiceState
	var reason, by []byte
	var since int64
	err := s.read(func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT suspended, reason, since_ns, by_whom FROM service_state WHERE one = 1`).
			Scan(&st.Suspended, &reason, &since, &by)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.ServiceState{}, nil
	}
	if err != nil {
		return st, s.explain("read the service state from", err)
	}
	st.Reason, st.By, st.Since = string(reason), string(by), time.Unix(0, since).UTC()
	return st, nil
}

// SetServiceState implements store.Service: the row and its event in one
// transaction, under the chain's lock.
func (s *Store) SetServiceState(st store.ServiceState, ev store.Event) error {
	if !store.ValidTime(st.Since) {
		return fmt.Errorf("store: service state: Since %v is zero or out of range", st.Since)
	}
	p, err := prepareTxn(store.Txn{Events: []store.Event{ev}})
	if err != nil {
		return fmt.Errorf("store: service state: %w", err)
	}
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		c, err := lockChain(ctx, tx)
		if err != nil {
			return err
		}
		var q pipe
		if err := p.apply(&q, c); err != nil {
			return err
		}
		q.exec("recording the service state", nil, `INSERT INTO service_state (one, suspended, reason, since_ns, by_whom) VALUES (1, $1, $2, $3, $4)
			ON CONFLICT (one) DO UPDATE SET suspended = excluded.suspended, reason = excluded.reason,
				since_ns = excluded.since_ns, by_whom = excluded.by_whom`, st.Suspended, b(st.Reason), ns(st.Since), b(st.By))
		return q.run(ctx, tx)
	})
	if err != nil {
		return s.explain("record the service state in", err)
	}
	return nil
}
