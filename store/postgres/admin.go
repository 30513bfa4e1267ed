package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/store"
)

var _ store.Records = (*Store)(nil)

// GeneratedByMessageID implements store.Records.
func (s *Store) GeneratedByMessageID(ids []string) ([]store.Generated, error) {
	var out []store.Generated
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT id, created_ns, sent_ns, mail_from, rcpts, message_id, kind, data
			FROM outbox WHERE message_id = ANY($1) ORDER BY id`, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var g store.Generated
			var created int64
			var sent *int64
			var rcpts string
			if err := rows.Scan(&g.ID, &created, &sent, &g.MailFrom, &rcpts, &g.MessageID, &g.Kind, &g.Data); err != nil {
				return err
			}
			g.Created, g.Sent = fromNS(created), fromNullNS(sent)
			if g.Rcpts, err = store.DecodeList(rcpts); err != nil {
				return err
			}
			out = append(out, g)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("generated messages of", err)
	}
	return out, nil
}

const virusCols = "id, time_ns, pecid, sender, recipients, signature, data"

func scanVirus(row pgx.Row) (store.VirusItem, error) {
	var v store.VirusItem
	var t int64
	var p, sender, sig []byte
	var rcpts string
	if err := row.Scan(&v.ID, &t, &p, &sender, &rcpts, &sig, &v.Data); err != nil {
		return v, err
	}
	v.Time, v.PECID, v.Sender, v.Signature = fromNS(t), string(p), string(sender), string(sig)
	var err error
	v.Recipients, err = store.DecodeList(rcpts)
	return v, err
}

// VirusBetween implements store.Records.
func (s *Store) VirusBetween(from, to time.Time, pecid string) ([]store.VirusItem, error) {
	lo, hi := store.NSBounds(from, to)
	var out []store.VirusItem
	err := s.read(func(ctx context.Context) error {
		q := "SELECT " + virusCols + " FROM virus WHERE time_ns >= $1 AND time_ns < $2"
		args := []any{lo, hi}
		if pecid != "" {
			q += " AND pecid = $3"
			args = append(args, b(pecid))
		}
		rows, err := s.pool.Query(ctx, q+" ORDER BY id", args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			v, err := scanVirus(rows)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("virus items of", err)
	}
	return out, nil
}

// VirusItem implements store.Records.
func (s *Store) VirusItem(id int64) (store.VirusItem, bool, error) {
	var v store.VirusItem
	err := s.read(func(ctx context.Context) error {
		var err error
		v, err = scanVirus(s.pool.QueryRow(ctx, "SELECT "+virusCols+" FROM virus WHERE id = $1", id))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return v, false, nil
	}
	if err != nil {
		return v, false, s.explain("virus item of", err)
	}
	return v, true, nil
}

const healthSchema = `
CREATE TABLE health (
	id     BIGSERIAL PRIMARY KEY,
	node   TEXT NOT NULL,
	at_ns  BIGINT NOT NULL,
	ok     BOOLEAN NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX health_at ON health (at_ns);
`

var _ store.Health = (*Store)(nil)

// RecordHealth implements store.Health.
func (s *Store) RecordHealth(h store.HealthSample) error {
	if !store.ValidTime(h.At) {
		return errors.New("store: health sample: time is zero or out of range")
	}
	err := s.read(func(ctx context.Context) error {
		_, err := s.pool.Exec(ctx, "INSERT INTO health (node, at_ns, ok, detail) VALUES ($1, $2, $3, $4)",
			strings.ToValidUTF8(strings.ReplaceAll(h.Node, "\x00", ""), "?"), ns(h.At), h.OK, strings.ToValidUTF8(strings.ReplaceAll(h.Detail, "\x00", ""), "?"))
		return err
	})
	if err != nil {
		return s.explain("health sample in", err)
	}
	return nil
}

// HealthSamples implements store.Health.
func (s *Store) HealthSamples(from, to time.Time) ([]store.HealthSample, error) {
	var out []store.HealthSample
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT node, at_ns, ok, detail FROM health WHERE at_ns >= $1 AND at_ns < $2 ORDER BY at_ns, id", ns(from), ns(to))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var h store.HealthSample
			var at int64
			if err := rows.Scan(&h.Node, &at, &h.OK, &h.Detail); err != nil {
				return err
			}
			h.At = fromNS(at)
			out = append(out, h)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("health samples of", err)
	}
	return out, nil
}
