package sqlite

import (
	"fmt"
	"time"

	"github.com/pecgo/pec/store"
)

// CountSenderEvents returns how many log rows of type typ the mailbox
// sender (case-insensitive) has since since, without reading them: the
// access point's per-mailbox rate limit asks it for every submission
// (RFC 6109 leaves the limit to the provider). It uses the events_sender
// index; no schema change.
func (s *Store) CountSenderEvents(sender string, typ store.EventType, since time.Time) (int, error) {
	var n int
	err := s.db.QueryRow(`SELECT count(*) FROM events WHERE sender = ? COLLATE NOCASE AND type = ? AND time_ns >= ?`,
		sender, string(typ), since.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count events: %w", err)
	}
	return n, nil
}
