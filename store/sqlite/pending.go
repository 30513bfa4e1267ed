package sqlite

import (
	"github.com/pecgo/pec/store"

	"fmt"
	"time"
)

// Pending lists every unsent outbox item, oldest first, whatever its next
// try (pecctl outbox list).
func (s *Store) Pending(limit int) ([]store.PendingItem, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.Query(`SELECT id, created_ns, mail_from, rcpts, message_id, kind, attempts, next_try_ns, last_error
		FROM outbox WHERE sent_ns IS NULL ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: pending: %w", err)
	}
	defer rows.Close()
	var out []store.PendingItem
	for rows.Next() {
		var p store.PendingItem
		var created, next int64
		var rcpts string
		if err := rows.Scan(&p.ID, &created, &p.MailFrom, &rcpts, &p.MessageID, &p.Kind, &p.Attempts, &next, &p.LastError); err != nil {
			return nil, fmt.Errorf("store: pending: %w", err)
		}
		if p.Rcpts, err = decodeList(rcpts); err != nil {
			return nil, fmt.Errorf("store: pending: item %d: %w", p.ID, err)
		}
		p.Created = time.Unix(0, created).UTC()
		if next != 0 {
			p.NextTry = time.Unix(0, next).UTC()
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// RetryAll makes every unsent item due at at (pecctl outbox retry, after
// the operator fixed what made them fail). A sender in the middle of
// sending one keeps it: that item is retried at the latest when its lease
// ends, so at most it is sent twice, never lost.
func (s *Store) RetryAll(at time.Time) (int, error) {
	res, err := s.db.Exec(`UPDATE outbox SET next_try_ns = ? WHERE sent_ns IS NULL AND next_try_ns > ?`, at.UnixNano(), at.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("store: retry: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}
