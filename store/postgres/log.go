package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pecgo/pec/store"
)

type chainState struct {
	anchorID   int64
	anchorHash []byte
	headID     int64
	headHash   []byte
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readChain(ctx context.Context, q queryRower, lock bool) (chainState, error) {
	var c chainState
	sql := "SELECT anchor_id, anchor_hash, head_id, head_hash FROM chain WHERE one = 1"
	if lock {
		sql += " FOR UPDATE"
	}
	if err := q.QueryRow(ctx, sql).Scan(&c.anchorID, &c.anchorHash, &c.headID, &c.headHash); err != nil {
		return c, fmt.Errorf("reading the chain state: %w", err)
	}
	return c, nil
}

// lockChain takes the cluster-wide append lock: the chain row, held until
// the transaction ends. Every transaction that appends log rows calls it
// before touching any other row, so that lock order is the same everywhere.
func lockChain(ctx context.Context, tx pgx.Tx) (chainState, error) {
	return readChain(ctx, tx, true)
}

// pipe queues the statements of a transaction after its chain lock and
// sends them in one round trip (a pgx batch), checking each result in
// order: a commit costs the lock, one batch and COMMIT.
type pipe struct {
	b      pgx.Batch
	checks []func(pgconn.CommandTag) error
	what   []string
}

// exec queues sql; check (if not nil) judges its result.
func (p *pipe) exec(what string, check func(pgconn.CommandTag) error, sql string, args ...any) {
	p.b.Queue(sql, args...)
	p.checks = append(p.checks, check)
	p.what = append(p.what, what)
}

// run sends the queued statements and checks their results.
func (p *pipe) run(ctx context.Context, tx pgx.Tx) error {
	if p.b.Len() == 0 {
		return nil
	}
	br := tx.SendBatch(ctx, &p.b)
	for i, check := range p.checks {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return fmt.Errorf("%s: %w", p.what[i], err)
		}
		if check != nil {
			if err := check(tag); err != nil {
				br.Close()
				return err
			}
		}
	}
	return br.Close()
}

// appendEvents queues evs (normalised) after the head of c and the move
// of the head. The caller holds the chain lock.
func appendEvents(p *pipe, c chainState, evs []store.Event) {
	if len(evs) == 0 {
		return
	}
	id, prev := c.headID, c.headHash
	for i := range evs {
		e := &evs[i]
		id++
		h := store.RowHash(prev, e)
		p.exec(fmt.Sprintf("inserting event row %d", id), nil, `INSERT INTO events (id, time_ns, point, type, pecid, msgid, sender, recipients, subject, related, provider, error, queue_id, prev_hash, hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
			id, ns(e.Time), b(string(e.Point)), b(string(e.Type)), b(e.PECID), b(e.MsgID), b(e.Sender), store.EncodeList(e.Recipients),
			b(e.Subject), store.EncodeList(e.Related), b(e.Provider), b(e.Error), b(e.QueueID), prev, h)
		prev = h
	}
	p.exec("moving the chain head", nil, "UPDATE chain SET head_id = $1, head_hash = $2 WHERE one = 1", id, prev)
}

// preparedTxn is a store.Txn checked, with its events normalised.
type preparedTxn struct {
	txn store.Txn
	evs []store.Event
}

func prepareTxn(txn store.Txn) (*preparedTxn, error) {
	evs := make([]store.Event, 0, len(txn.Events))
	for _, e := range txn.Events {
		n, err := store.NormalizeEvent(e)
		if err != nil {
			return nil, err
		}
		evs = append(evs, n)
	}
	for i, o := range txn.Outbox {
		if len(o.Rcpts) == 0 {
			return nil, fmt.Errorf("outgoing %d (%s): no recipients", i, o.MessageID)
		}
		if len(o.Data) == 0 {
			return nil, fmt.Errorf("outgoing %d (%s): empty data", i, o.MessageID)
		}
	}
	for i, v := range txn.Virus {
		if !store.ValidTime(v.Time) {
			return nil, fmt.Errorf("virus item %d (%s): Time %v is zero or out of range", i, v.PECID, v.Time)
		}
	}
	return &preparedTxn{txn: txn, evs: evs}, nil
}

// apply queues the writes of the transaction; c is the locked chain when
// the transaction has events.
func (pt *preparedTxn) apply(p *pipe, c chainState) error {
	txn := pt.txn
	now := time.Now().UnixNano()
	appendEvents(p, c, pt.evs)
	for _, o := range txn.Outbox {
		p.exec("inserting outgoing "+o.MessageID, nil, `INSERT INTO outbox (created_ns, mail_from, rcpts, data, message_id, kind) VALUES ($1, $2, $3, $4, $5, $6)`,
			now, o.MailFrom, store.EncodeList(o.Rcpts), o.Data, o.MessageID, o.Kind)
	}
	for _, v := range txn.Virus {
		data := v.Data
		if data == nil {
			data = []byte{}
		}
		p.exec("inserting virus item for "+v.PECID, nil, `INSERT INTO virus (time_ns, pecid, sender, recipients, signature, data) VALUES ($1, $2, $3, $4, $5, $6)`,
			ns(v.Time), b(v.PECID), b(v.Sender), store.EncodeList(v.Recipients), b(v.Signature), data)
	}
	if err := commitTracking(p, txn); err != nil {
		return err
	}
	return commitDeliveries(p, txn.Deliveries)
}

// Commit writes everything in txn atomically: when it returns nil the
// transaction is committed (durable as the server's synchronous_commit
// setting makes it: keep it on); on an error nothing of txn was written,
// except when the connection broke during COMMIT itself, when the server
// may have committed it (the caller tempfails; see README, cluster).
func (s *Store) Commit(txn store.Txn) error {
	if txn.Empty() {
		return nil
	}
	p, err := prepareTxn(txn)
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		var c chainState
		if len(p.evs) > 0 {
			var err error
			if c, err = lockChain(ctx, tx); err != nil {
				return err
			}
		}
		var q pipe
		if err := p.apply(&q, c); err != nil {
			return err
		}
		return q.run(ctx, tx)
	})
	if err != nil {
		return s.explain("commit to", err)
	}
	return nil
}

// ---- reading the log ----

const eventCols = "id, time_ns, point, type, pecid, msgid, sender, recipients, subject, related, provider, error, queue_id"

func scanEvent(row pgx.Row, extra ...any) (store.Event, error) {
	var e store.Event
	var t int64
	var point, typ, pecid, msgid, sender, subject, provider, errText, queueID []byte
	var rcpts, related string
	dest := append([]any{&e.ID, &t, &point, &typ, &pecid, &msgid, &sender, &rcpts,
		&subject, &related, &provider, &errText, &queueID}, extra...)
	if err := row.Scan(dest...); err != nil {
		return e, err
	}
	e.Time = fromNS(t)
	e.Point, e.Type, e.PECID, e.MsgID, e.Sender = store.EventPoint(point), store.EventType(typ), string(pecid), string(msgid), string(sender)
	e.Subject, e.Provider, e.Error, e.QueueID = string(subject), string(provider), string(errText), string(queueID)
	var err error
	if e.Recipients, err = store.DecodeList(rcpts); err != nil {
		return e, fmt.Errorf("row %d: bad recipients: %w", e.ID, err)
	}
	if e.Related, err = store.DecodeList(related); err != nil {
		return e, fmt.Errorf("row %d: bad related: %w", e.ID, err)
	}
	return e, nil
}

// foldASCII is the SQL of an ASCII case folding of a TEXT expression.
func foldASCII(x string) string {
	return "translate(" + x + ", 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
}

// Events returns the log rows matching q, oldest first.
func (s *Store) Events(q store.Query) ([]store.Event, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.PECID != "" {
		where = append(where, "pecid = "+arg(b(q.PECID)))
	}
	if q.MsgID != "" {
		where = append(where, "msgid = "+arg(b(q.MsgID)))
	}
	if q.Sender != "" {
		where = append(where, "lower(encode(sender, 'escape')) = lower(encode("+arg(b(q.Sender))+"::bytea, 'escape'))")
	}
	if q.Recipient != "" {
		where = append(where, "EXISTS (SELECT 1 FROM json_array_elements_text(events.recipients::json) j WHERE "+
			foldASCII("j")+" = "+foldASCII(arg(q.Recipient)+"::text")+")")
	}
	if q.Type != "" {
		where = append(where, "type = "+arg(b(string(q.Type))))
	}
	if q.Point != "" {
		where = append(where, "point = "+arg(b(string(q.Point))))
	}
	if !q.From.IsZero() {
		where = append(where, "time_ns >= "+arg(ns(q.From)))
	}
	if !q.To.IsZero() {
		where = append(where, "time_ns < "+arg(ns(q.To)))
	}
	sql := "SELECT " + eventCols + " FROM events"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY id"
	if q.Limit > 0 {
		sql += " LIMIT " + arg(q.Limit)
	}
	var out []store.Event
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			e, err := scanEvent(rows)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("events from", err)
	}
	return out, nil
}

// LogHead returns the id and hash of the last event row.
func (s *Store) LogHead() (id int64, hash []byte, err error) {
	var c chainState
	err = s.read(func(ctx context.Context) (err error) {
		c, err = readChain(ctx, s.pool, false)
		return err
	})
	if err != nil {
		return 0, nil, s.explain("log head of", err)
	}
	return c.headID, c.headHash, nil
}

// LogAnchor returns the id and hash of the last purged row.
func (s *Store) LogAnchor() (id int64, hash []byte, err error) {
	var c chainState
	err = s.read(func(ctx context.Context) (err error) {
		c, err = readChain(ctx, s.pool, false)
		return err
	})
	if err != nil {
		return 0, nil, s.explain("log anchor of", err)
	}
	return c.anchorID, c.anchorHash, nil
}

// VerifyLog walks the log from the anchor to the head in one REPEATABLE
// READ snapshot: nodes keep appending meanwhile, and the walk sees the
// chain row and the events as of one instant. See store.Log.
func (s *Store) VerifyLog() (firstBad int64, err error) {
	ctx := context.Background() // a long walk: no call deadline
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, s.explain("verify log of", err)
	}
	defer tx.Rollback(ctx)
	c, err := readChain(ctx, tx, false)
	if err != nil {
		return 0, s.explain("verify log of", err)
	}
	rows, err := tx.Query(ctx, "SELECT "+eventCols+", prev_hash, hash FROM events ORDER BY id")
	if err != nil {
		return 0, s.explain("verify log of", err)
	}
	defer rows.Close()
	walk := store.NewChainWalk(c.anchorID, c.anchorHash, c.headID, c.headHash)
	lookup := func(h []byte, except int64) (int64, bool, error) {
		rows.Close() // the connection serves one statement at a time
		var j int64
		err := tx.QueryRow(ctx, "SELECT id FROM events WHERE hash = $1 AND id <> $2", h, except).Scan(&j)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, s.explain("verify log of", err)
		}
		return j, true, nil
	}
	for rows.Next() {
		var ph, h []byte
		e, err := scanEvent(rows, &ph, &h)
		if err != nil {
			return 0, s.explain("verify log of", err)
		}
		if bad, err := walk.Row(&e, ph, h, lookup); err != nil {
			return bad, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, s.explain("verify log of", err)
	}
	return walk.End()
}

// EachLinkedEvent calls fn, in id order, for every row whose time is in
// [from, to), with its chain values, from one snapshot.
func (s *Store) EachLinkedEvent(from, to time.Time, fn func(store.LinkedEvent) error) error {
	ctx := context.Background()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return s.explain("linked events of", err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, "SELECT "+eventCols+", prev_hash, hash FROM events WHERE time_ns >= $1 AND time_ns < $2 ORDER BY id", ns(from), ns(to))
	if err != nil {
		return s.explain("linked events of", err)
	}
	defer rows.Close()
	for rows.Next() {
		var le store.LinkedEvent
		e, err := scanEvent(rows, &le.PrevHash, &le.Hash)
		if err != nil {
			return s.explain("linked events of", err)
		}
		le.Event = e
		if err := fn(le); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.explain("linked events of", err)
	}
	return nil
}

func (s *Store) count(what, sql string, args ...any) (int, error) {
	var n int
	err := s.read(func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, sql, args...).Scan(&n)
	})
	if err != nil {
		return 0, s.explain(what, err)
	}
	return n, nil
}

// CountEvents returns the number of rows whose time is in [from, to).
func (s *Store) CountEvents(from, to time.Time) (int, error) {
	return s.count("count events of", "SELECT count(*) FROM events WHERE time_ns >= $1 AND time_ns < $2", ns(from), ns(to))
}

// CountVirus returns the number of virus items whose time is in [from, to).
func (s *Store) CountVirus(from, to time.Time) (int, error) {
	return s.count("count virus items of", "SELECT count(*) FROM virus WHERE time_ns >= $1 AND time_ns < $2", ns(from), ns(to))
}

// EventLink returns the chain values stored for row id.
func (s *Store) EventLink(id int64) (prev, hash []byte, ok bool, err error) {
	err = s.read(func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, "SELECT prev_hash, hash FROM events WHERE id = $1", id).Scan(&prev, &hash)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, s.explain(fmt.Sprintf("event link %d of", id), err)
	}
	return prev, hash, true, nil
}

// Purge deletes event rows (a prefix of the chain, moving the anchor) and
// virus items older than before, outbox items sent before it and settled
// delivery rows last changed before it. See
// store/sqlite's Purge for the rule on out-of-order times.
func (s *Store) Purge(before time.Time) (events, virus int, err error) {
	cut := ns(before)
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		events, virus = 0, 0
		c, err := lockChain(ctx, tx)
		if err != nil {
			return err
		}
		var first *int64
		if err := tx.QueryRow(ctx, "SELECT min(id) FROM events WHERE time_ns >= $1", cut).Scan(&first); err != nil {
			return err
		}
		last := c.headID
		if first != nil {
			last = *first - 1
		}
		if last > c.anchorID {
			var h []byte
			err := tx.QueryRow(ctx, "SELECT hash FROM events WHERE id = $1", last).Scan(&h)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("event row %d is missing: the log is damaged, run pecctl log verify", last)
			} else if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "UPDATE chain SET anchor_id = $1, anchor_hash = $2 WHERE one = 1", last, h); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, "DELETE FROM events WHERE id <= $1", last)
			if err != nil {
				return err
			}
			events = int(tag.RowsAffected())
		}
		tag, err := tx.Exec(ctx, "DELETE FROM virus WHERE time_ns < $1", cut)
		if err != nil {
			return err
		}
		virus = int(tag.RowsAffected())
		if _, err = tx.Exec(ctx, "DELETE FROM outbox WHERE sent_ns IS NOT NULL AND sent_ns < $1", cut); err != nil {
			return err
		}
		// settled deliveries: a replay older than the log is not checked
		// against them any more (pending rows stay until settled)
		if _, err = tx.Exec(ctx, "DELETE FROM deliveries WHERE state <> $1 AND at_ns < $2", store.DeliveryPending, cut); err != nil {
			return err
		}
		// health samples: the availability of periods past the retention
		_, err = tx.Exec(ctx, "DELETE FROM health WHERE at_ns < $1", cut)
		return err
	})
	if err != nil {
		return 0, 0, s.explain("purge", err)
	}
	return events, virus, nil
}

// VirusItems returns the quarantined messages of transaction pecid.
func (s *Store) VirusItems(pecid string) ([]store.Quarantined, error) {
	var out []store.Quarantined
	err := s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT time_ns, pecid, sender, recipients, signature, data FROM virus WHERE pecid = $1 ORDER BY id", b(pecid))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var q store.Quarantined
			var t int64
			var p, sender, sig []byte
			var rcpts string
			if err := rows.Scan(&t, &p, &sender, &rcpts, &sig, &q.Data); err != nil {
				return err
			}
			q.Time, q.PECID, q.Sender, q.Signature = fromNS(t), string(p), string(sender), string(sig)
			if q.Recipients, err = store.DecodeList(rcpts); err != nil {
				return fmt.Errorf("bad recipients: %w", err)
			}
			out = append(out, q)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("virus items of", err)
	}
	return out, nil
}

// CountSenderEvents returns how many log rows of type typ the mailbox
// sender (ASCII case-insensitive) has since since, without reading them:
// the access point's per-mailbox rate limit, counted over every node's
// rows (the events_sender index).
func (s *Store) CountSenderEvents(sender string, typ store.EventType, since time.Time) (int, error) {
	return s.count("count events of", `SELECT count(*) FROM events
		WHERE lower(encode(sender, 'escape')) = lower(encode($1::bytea, 'escape')) AND type = $2 AND time_ns >= $3`,
		b(sender), b(string(typ)), ns(since))
}
