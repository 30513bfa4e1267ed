package sqlite

import (
	"github.com/pecgo/pec/store"
	"math"

	"database/sql"
	"fmt"
	"strings"
	"time"
)

// The timers of RFC 6109 §2.1.1.1.2 / §3.1.6: for every certified
// recipient of every transport envelope we send, the sender's provider
// waits for the take-charge and the delivery receipt. One row per
// (PEC id, recipient).

const trackingSchema = `
CREATE TABLE IF NOT EXISTS tracking (
	pecid       TEXT NOT NULL,
	rcpt        TEXT NOT NULL COLLATE NOCASE,
	sent_ns     INTEGER NOT NULL,  -- dispatch of the transport envelope (t0)
	tx          BLOB NOT NULL,     -- what the notices need (JSON of build.Tx)
	presa_ns    INTEGER,           -- take-charge received
	outcome_ns  INTEGER,           -- delivery or non-delivery receipt received
	outcome     TEXT NOT NULL DEFAULT '',
	notice12_ns INTEGER,           -- 12 h notice queued
	notice24_ns INTEGER,           -- 24 h notice queued (tracking ends)
	PRIMARY KEY (pecid, rcpt)
) STRICT;
CREATE INDEX IF NOT EXISTS tracking_open ON tracking (sent_ns) WHERE outcome_ns IS NULL AND notice24_ns IS NULL;
`

func (s *Store) initTracking() error {
	if _, err := s.db.Exec(trackingSchema); err != nil {
		return fmt.Errorf("store: creating the timer table in %s: %w", s.path, err)
	}
	return nil
}

func commitTracking(tx *sql.Tx, txn store.Txn) error {
	for _, t := range txn.Track {
		if !store.ValidTime(t.Sent) || t.PECID == "" || t.Rcpt == "" {
			return fmt.Errorf("tracking %s/%s: need PEC id, recipient and time", t.PECID, t.Rcpt)
		}
		if _, err := tx.Exec(`INSERT OR IGNORE INTO tracking (pecid, rcpt, sent_ns, tx) VALUES (?, ?, ?, ?)`,
			t.PECID, strings.ToLower(t.Rcpt), t.Sent.UnixNano(), t.Tx); err != nil {
			return fmt.Errorf("tracking %s/%s: %w", t.PECID, t.Rcpt, err)
		}
	}
	for _, m := range txn.Marks {
		var q string
		switch m.What {
		case store.MarkPresa:
			q = `UPDATE tracking SET presa_ns = ? WHERE pecid = ? AND rcpt = ? AND presa_ns IS NULL`
		case store.MarkConsegna, store.MarkErrore:
			q = `UPDATE tracking SET outcome_ns = ?, outcome = '` + string(m.What) + `' WHERE pecid = ? AND rcpt = ? AND outcome_ns IS NULL`
		case store.MarkNotice12:
			q = `UPDATE tracking SET notice12_ns = ? WHERE pecid = ? AND rcpt = ? AND notice12_ns IS NULL`
		case store.MarkNotice24:
			q = `UPDATE tracking SET notice24_ns = ? WHERE pecid = ? AND rcpt = ? AND notice24_ns IS NULL`
		default:
			return fmt.Errorf("tracking: unknown mark %q", m.What)
		}
		res, err := tx.Exec(q, m.At.UnixNano(), m.PECID, strings.ToLower(m.Rcpt))
		if err != nil {
			return fmt.Errorf("tracking mark %s %s/%s: %w", m.What, m.PECID, m.Rcpt, err)
		}
		if m.Once {
			if n, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("tracking mark %s %s/%s: %w", m.What, m.PECID, m.Rcpt, err)
			} else if n == 0 {
				return fmt.Errorf("tracking mark %s %s/%s: %w", m.What, m.PECID, m.Rcpt, store.ErrMarked)
			}
		}
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
		afterNS = after.Sent.UnixNano()
	}
	rows, err := s.db.Query(`
		SELECT pecid, rcpt, sent_ns, tx, presa_ns IS NOT NULL, notice12_ns IS NOT NULL FROM tracking
		WHERE outcome_ns IS NULL AND notice24_ns IS NULL AND held IS NULL AND sent_ns <= ?
			AND (sent_ns, pecid, rcpt) > (?, ?, ?)
		ORDER BY sent_ns, pecid, rcpt LIMIT ?`, sentBy.UnixNano(), afterNS, after.PECID, after.Rcpt, limit)
	if err != nil {
		return nil, fmt.Errorf("store: open timers: %w", err)
	}
	defer rows.Close()
	var out []store.Timer
	for rows.Next() {
		var t store.Timer
		var sent int64
		if err := rows.Scan(&t.PECID, &t.Rcpt, &sent, &t.Tx, &t.Presa, &t.Notice12); err != nil {
			return nil, fmt.Errorf("store: open timers: %w", err)
		}
		t.Sent = time.Unix(0, sent).UTC()
		out = append(out, t)
	}
	return out, rows.Err()
}

// Tracking returns the tracking rows of a PEC id.
func (s *Store) Tracking(pecid string) ([]store.TrackingState, error) {
	rows, err := s.db.Query(`SELECT pecid, rcpt, outcome, sent_ns, presa_ns, outcome_ns, notice12_ns, notice24_ns FROM tracking WHERE pecid = ? ORDER BY rcpt`, pecid)
	if err != nil {
		return nil, fmt.Errorf("store: tracking: %w", err)
	}
	defer rows.Close()
	var out []store.TrackingState
	for rows.Next() {
		var t store.TrackingState
		var sent int64
		var p, o, n12, n24 sql.NullInt64
		if err := rows.Scan(&t.PECID, &t.Rcpt, &t.Outcome, &sent, &p, &o, &n12, &n24); err != nil {
			return nil, err
		}
		t.Sent = time.Unix(0, sent).UTC()
		conv := func(n sql.NullInt64) time.Time {
			if !n.Valid {
				return time.Time{}
			}
			return time.Unix(0, n.Int64).UTC()
		}
		t.Presa, t.OutcomeAt, t.Notice12, t.Notice24 = conv(p), conv(o), conv(n12), conv(n24)
		out = append(out, t)
	}
	return out, rows.Err()
}
