package sqlite

import (
	"github.com/pecgo/pec/store"

	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Leases and shared documents (store.Leases, store.Shared). On one machine
// there is one node, so they elect it every time; they exist so that the
// programs run the same code on SQLite as on a cluster's PostgreSQL.

const clusterSchema = `
CREATE TABLE IF NOT EXISTS leases (
	name     TEXT PRIMARY KEY,
	holder   TEXT NOT NULL,
	until_ns INTEGER NOT NULL,
	done_ns  INTEGER,           -- the work is finished (never taken again)
	note     TEXT NOT NULL DEFAULT ''
) STRICT;
CREATE TABLE IF NOT EXISTS shared (
	name  TEXT PRIMARY KEY,
	at_ns INTEGER NOT NULL,
	data  BLOB NOT NULL
) STRICT;
`

func (s *Store) initCluster() error {
	if _, err := s.db.Exec(clusterSchema); err != nil {
		return s.explain("cannot create the leases table in", err)
	}
	return nil
}

func nsTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// Lease implements store.Leases.
func (s *Store) Lease(name, holder string, now time.Time, ttl time.Duration) (held bool, st store.LeaseState, err error) {
	if name == "" || holder == "" {
		return false, st, errors.New("store: lease: need a name and a holder")
	}
	err = s.write(func(tx *sql.Tx) error {
		if _, err := tx.Exec(`INSERT INTO leases (name, holder, until_ns) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ns = excluded.until_ns
			WHERE leases.done_ns IS NULL AND (leases.holder = excluded.holder OR leases.until_ns <= ?)`,
			name, holder, now.Add(ttl).UnixNano(), now.UnixNano()); err != nil {
			return err
		}
		var until int64
		var done sql.NullInt64
		if err := tx.QueryRow(`SELECT holder, until_ns, done_ns, note FROM leases WHERE name = ?`, name).
			Scan(&st.Holder, &until, &done, &st.Note); err != nil {
			return err
		}
		st.Name, st.Until, st.Done = name, time.Unix(0, until).UTC(), nsTime(done)
		held = st.Holder == holder && st.Done.IsZero()
		return nil
	})
	if err != nil {
		return false, st, fmt.Errorf("store: lease %s: %w", name, err)
	}
	return held, st, nil
}

// Finish implements store.Leases.
func (s *Store) Finish(name, holder string, at time.Time, note string) error {
	err := s.write(func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE leases SET done_ns = ?, note = ? WHERE name = ? AND holder = ? AND done_ns IS NULL`,
			at.UnixNano(), note, name, holder)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("%s does not hold it", holder)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: finish lease %s: %w", name, err)
	}
	return nil
}

// Unlease implements store.Leases.
func (s *Store) Unlease(name, holder string) error {
	err := s.write(func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM leases WHERE name = ? AND holder = ? AND done_ns IS NULL`, name, holder)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: unlease %s: %w", name, err)
	}
	return nil
}

// PutShared implements store.Shared.
func (s *Store) PutShared(name string, data []byte, at time.Time) error {
	if data == nil {
		data = []byte{}
	}
	err := s.write(func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO shared (name, at_ns, data) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET at_ns = excluded.at_ns, data = excluded.data`, name, at.UnixNano(), data)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: put %s: %w", name, err)
	}
	return nil
}

// GetShared implements store.Shared.
func (s *Store) GetShared(name string) (data []byte, at time.Time, ok bool, err error) {
	var ns int64
	err = s.db.QueryRow(`SELECT at_ns, data FROM shared WHERE name = ?`, name).Scan(&ns, &data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, time.Time{}, false, nil
	}
	if err != nil {
		return nil, time.Time{}, false, fmt.Errorf("store: get %s: %w", name, err)
	}
	return data, time.Unix(0, ns).UTC(), true, nil
}

// Ping checks that the database file answers.
func (s *Store) Ping() error {
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM chain").Scan(&n); err != nil {
		return fmt.Errorf("store: %s does not answer: %w", s.path, err)
	}
	return nil
}

// Describe is the database file's path.
func (s *Store) Describe() string { return s.path }

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

var _ store.Store = (*Store)(nil)
