package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

var _ store.Records = (*Store)(nil)

// BackupTo writes a consistent copy of the whole store to path (which must
// not exist) with VACUUM INTO: one read transaction, so writers go on
// meanwhile and the copy is the state of one instant. The copy is a
// plain SQLite file (no -wal), compacted.
func (s *Store) BackupTo(path string) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("store: backup: %s exists already", path)
	}
	if _, err := s.db.Exec("VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	return nil
}

// GeneratedByMessageID implements store.Records.
func (s *Store) GeneratedByMessageID(ids []string) ([]store.Generated, error) {
	var out []store.Generated
	for len(ids) > 0 {
		n := min(len(ids), 500)
		batch := ids[:n]
		ids = ids[n:]
		args := make([]any, len(batch))
		for i, id := range batch {
			args[i] = id
		}
		rows, err := s.db.Query(`SELECT o.id, o.created_ns, o.sent_ns, o.mail_from, o.rcpts, o.message_id, o.kind, d.data
			FROM outbox o JOIN outbox_data d ON d.id = o.id
			WHERE o.message_id IN (?`+strings.Repeat(",?", len(batch)-1)+`) ORDER BY o.id`, args...)
		if err != nil {
			return nil, fmt.Errorf("store: generated messages: %w", err)
		}
		for rows.Next() {
			var g store.Generated
			var created int64
			var sent sql.NullInt64
			var rcpts string
			if err := rows.Scan(&g.ID, &created, &sent, &g.MailFrom, &rcpts, &g.MessageID, &g.Kind, &g.Data); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: generated messages: %w", err)
			}
			g.Created = time.Unix(0, created).UTC()
			if sent.Valid {
				g.Sent = time.Unix(0, sent.Int64).UTC()
			}
			if g.Rcpts, err = decodeList(rcpts); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: generated message %d: %w", g.ID, err)
			}
			out = append(out, g)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("store: generated messages: %w", err)
		}
	}
	return out, nil
}

const virusCols = "id, time_ns, pecid, sender, recipients, signature, data"

func scanVirus(sc scanner) (store.VirusItem, error) {
	var v store.VirusItem
	var t int64
	var rcpts string
	if err := sc.Scan(&v.ID, &t, &v.PECID, &v.Sender, &rcpts, &v.Signature, &v.Data); err != nil {
		return v, err
	}
	v.Time = time.Unix(0, t).UTC()
	var err error
	if v.Recipients, err = decodeList(rcpts); err != nil {
		return v, fmt.Errorf("virus item %d: bad recipients: %w", v.ID, err)
	}
	return v, nil
}

// VirusBetween implements store.Records.
func (s *Store) VirusBetween(from, to time.Time, pecid string) ([]store.VirusItem, error) {
	lo, hi := store.NSBounds(from, to)
	q := "SELECT " + virusCols + " FROM virus WHERE time_ns >= ? AND time_ns < ?"
	args := []any{lo, hi}
	if pecid != "" {
		q += " AND pecid = ?"
		args = append(args, pecid)
	}
	rows, err := s.db.Query(q+" ORDER BY id", args...)
	if err != nil {
		return nil, fmt.Errorf("store: virus items: %w", err)
	}
	defer rows.Close()
	var out []store.VirusItem
	for rows.Next() {
		v, err := scanVirus(rows)
		if err != nil {
			return nil, fmt.Errorf("store: virus items: %w", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: virus items: %w", err)
	}
	return out, nil
}

// VirusItem implements store.Records.
func (s *Store) VirusItem(id int64) (store.VirusItem, bool, error) {
	v, err := scanVirus(s.db.QueryRow("SELECT "+virusCols+" FROM virus WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("store: virus item %d: %w", id, err)
	}
	return v, true, nil
}

const healthSchema = `
CREATE TABLE health (
	id     INTEGER PRIMARY KEY,
	node   TEXT NOT NULL,
	at_ns  INTEGER NOT NULL,
	ok     INTEGER NOT NULL,
	detail TEXT NOT NULL
) STRICT;
CREATE INDEX health_at ON health(at_ns);
`

var _ store.Health = (*Store)(nil)

// RecordHealth implements store.Health.
func (s *Store) RecordHealth(h store.HealthSample) error {
	if !store.ValidTime(h.At) {
		return fmt.Errorf("store: health sample: time %v is zero or out of range", h.At)
	}
	return s.write(func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO health (node, at_ns, ok, detail) VALUES (?, ?, ?, ?)", h.Node, h.At.UnixNano(), h.OK, h.Detail)
		return err
	})
}

// HealthSamples implements store.Health.
func (s *Store) HealthSamples(from, to time.Time) ([]store.HealthSample, error) {
	rows, err := s.db.Query("SELECT node, at_ns, ok, detail FROM health WHERE at_ns >= ? AND at_ns < ? ORDER BY at_ns, id", from.UnixNano(), to.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store: health samples: %w", err)
	}
	defer rows.Close()
	var out []store.HealthSample
	for rows.Next() {
		var h store.HealthSample
		var at int64
		if err := rows.Scan(&h.Node, &at, &h.OK, &h.Detail); err != nil {
			return nil, fmt.Errorf("store: health samples: %w", err)
		}
		h.At = time.Unix(0, at).UTC()
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: health samples: %w", err)
	}
	return out, nil
}
