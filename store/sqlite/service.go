package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/pecgo/pec/store"
)

// serviceSchema keeps the provider's service state (Aruba manual §9.7.7):
// at most one row; none means active, never changed.
const serviceSchema = `
CREATE TABLE service_state (
	one       INTEGER PRIMARY KEY CHECK (one = 1),
	suspended INTEGER NOT NULL,
	reason    TEXT    NOT NULL,
	since_ns  INTEGER NOT NULL,
	by_whom   TEXT    NOT NULL
) STRICT;
`

// ServiceState implements store.Service.
func (s *Store) ServiceState() (store.ServiceState, error) {
	var st store.ServiceState
	var susp int
	var since int64
	err := s.db.QueryRow(`SELECT suspended, reason, since_ns, by_whom FROM service_state WHERE one = 1`).
		Scan(&susp, &st.Reason, &since, &st.By)
	if errors.Is(err, sql.ErrNoRows) {
		return store.ServiceState{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("store: service state: %w", err)
	}
	st.Suspended, st.Since = susp != 0, time.Unix(0, since).UTC()
	return st, nil
}

// SetServiceState implements store.Service: the row and its event in one
// transaction.
func (s *Store) SetServiceState(st store.ServiceState, ev store.Event) error {
	if !store.ValidTime(st.Since) {
		return fmt.Errorf("store: service state: Since %v is zero or out of range", st.Since)
	}
	r, err := prepareEvent(ev)
	if err != nil {
		return fmt.Errorf("store: service state: %w", err)
	}
	susp := 0
	if st.Suspended {
		susp = 1
	}
	err = s.write(func(tx *sql.Tx) error {
		if err := appendEvents(tx, []eventRow{r}); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO service_state (one, suspended, reason, since_ns, by_whom) VALUES (1, ?, ?, ?, ?)
			ON CONFLICT (one) DO UPDATE SET suspended = excluded.suspended, reason = excluded.reason,
				since_ns = excluded.since_ns, by_whom = excluded.by_whom`, susp, st.Reason, st.Since.UnixNano(), st.By)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: service state: %w", err)
	}
	return nil
}
