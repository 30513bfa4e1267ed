package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/store"
)

// Lease implements store.Leases with one row per lease: the upsert below
// takes it only when it is free, ended or ours, and PostgreSQL serialises
// concurrent upserts of one name, so at most one holder wins. Holders'
// clocks decide when a lease ends: keep the nodes' clocks synchronised
// (NTP) and ttl far above their skew.
func (s *Store) Lease(name, holder string, now time.Time, ttl time.Duration) (held bool, st store.LeaseState, err error) {
	if name == "" || holder == "" {
		return false, st, errors.New("store: lease: need a name and a holder")
	}
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO leases (name, holder, until_ns) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns
			WHERE leases.done_ns IS NULL AND (leases.holder = excluded.holder OR leases.until_ns <= $4)`,
			name, holder, ns(now.Add(ttl)), ns(now)); err != nil {
			return err
		}
		var until int64
		var done *int64
		if err := tx.QueryRow(ctx, `SELECT holder, until_ns, done_ns, note FROM leases WHERE name = $1`, name).
			Scan(&st.Holder, &until, &done, &st.Note); err != nil {
			return err
		}
		st.Name, st.Until, st.Done = name, fromNS(until), fromNullNS(done)
		held = st.Holder == holder && st.Done.IsZero()
		return nil
	})
	if err != nil {
		return false, st, s.explain("lease "+name+" in", err)
	}
	return held, st, nil
}

// Finish implements store.Leases.
func (s *Store) Finish(name, holder string, at time.Time, note string) error {
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE leases SET done_ns = $1, note = $2 WHERE name = $3 AND holder = $4 AND done_ns IS NULL`,
			ns(at), note, name, holder)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s does not hold it", holder)
		}
		return nil
	})
	if err != nil {
		return s.explain("finish lease "+name+" in", err)
	}
	return nil
}

// Unlease implements store.Leases.
func (s *Store) Unlease(name, holder string) error {
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2 AND done_ns IS NULL`, name, holder)
		return err
	})
	if err != nil {
		return s.explain("unlease "+name+" in", err)
	}
	return nil
}

// PutShared implements store.Shared.
func (s *Store) PutShared(name string, data []byte, at time.Time) error {
	if data == nil {
		data = []byte{}
	}
	err := s.write(func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO shared (name, at_ns, data) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET at_ns = excluded.at_ns, data = excluded.data`, name, ns(at), data)
		return err
	})
	if err != nil {
		return s.explain("put "+name+" in", err)
	}
	return nil
}

// GetShared implements store.Shared.
func (s *Store) GetShared(name string) (data []byte, at time.Time, ok bool, err error) {
	var n int64
	err = s.read(func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT at_ns, data FROM shared WHERE name = $1`, name).Scan(&n, &data)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, s.explain("get "+name+" from", err)
	}
	return data, fromNS(n), true, nil
}
