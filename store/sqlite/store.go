// Package store is the durable state of the PEC provider: the event log
// (RFC 6109 §2.3), the outbox of generated messages waiting to be sent and
// the virus store (RFC 6109 §2.2.4). Everything lives in one SQLite file.
//
// The milter records a whole transaction (log rows, receipts to send,
// quarantined message) with one Commit and answers Postfix only after it
// returns; outbox.Sender then drains the outbox. A crash between the two
// loses nothing: the receipts are still pending when the process restarts.
//
// The event log is append-only and hash-chained. Each row stores
//
//	hash = SHA-256(prev_hash || canonical(row))
//
// where prev_hash is the hash of the previous row (for the first row: the
// purge anchor, 32 zero bytes in a new store) and canonical is the encoding
// described at canonical. The chain table records the anchor (the last purged
// row) and the head (the last written row), so removals at either end are
// detected too. The chain proves nothing against someone who rewrites the
// whole file; that is what the periodic signed and timestamped seal of
// LogHead is for.
package sqlite

import (
	"github.com/pecgo/pec/store"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// schemaVersion is the PRAGMA user_version of a store written by this
// code: one per migration.
var schemaVersion = len(migrations)

// migrations[i] upgrades a store from user_version i to i+1. Append new
// ones at the end; never change one that was released.
var migrations = []string{
	// 0 -> 1
	`
CREATE TABLE chain (
	one         INTEGER PRIMARY KEY CHECK (one = 1),
	anchor_id   INTEGER NOT NULL,  -- last purged event row (0: none)
	anchor_hash BLOB    NOT NULL,  -- its hash (zero hash: none)
	head_id     INTEGER NOT NULL,  -- last written event row
	head_hash   BLOB    NOT NULL
) STRICT;
INSERT INTO chain VALUES (1, 0, zeroblob(32), 0, zeroblob(32));

CREATE TABLE events (
	id         INTEGER PRIMARY KEY,  -- contiguous: head_id+1 on insert
	time_ns    INTEGER NOT NULL,     -- unix nanoseconds, UTC
	point      TEXT NOT NULL,
	type       TEXT NOT NULL,
	pecid      TEXT NOT NULL,
	msgid      TEXT NOT NULL,
	sender     TEXT NOT NULL,
	recipients TEXT NOT NULL,        -- JSON array of strings
	subject    TEXT NOT NULL,
	related    TEXT NOT NULL,        -- JSON array of strings
	provider   TEXT NOT NULL,
	error      TEXT NOT NULL,
	queue_id   TEXT NOT NULL,
	prev_hash  BLOB NOT NULL,
	hash       BLOB NOT NULL
) STRICT;
CREATE INDEX events_time   ON events(time_ns);
CREATE INDEX events_pecid  ON events(pecid);
CREATE INDEX events_msgid  ON events(msgid);
CREATE INDEX events_sender ON events(sender COLLATE NOCASE);

-- Defence in depth: the application never updates log rows and deletes
-- them only through Purge, oldest first, after moving the anchor.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN
	SELECT RAISE(ABORT, 'pec event log is append-only: rows cannot be updated');
END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
	WHEN old.id > (SELECT anchor_id FROM chain)
BEGIN
	SELECT RAISE(ABORT, 'pec event log is append-only: only Purge deletes rows, oldest first');
END;

CREATE TABLE outbox (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	created_ns  INTEGER NOT NULL,
	mail_from   TEXT NOT NULL,
	rcpts       TEXT NOT NULL,             -- JSON array of strings
	data        BLOB NOT NULL,
	message_id  TEXT NOT NULL,
	kind        TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_try_ns INTEGER NOT NULL DEFAULT 0, -- 0: as soon as possible
	last_error  TEXT NOT NULL DEFAULT '',
	sent_ns     INTEGER                     -- NULL while pending
) STRICT;
CREATE INDEX outbox_pending ON outbox(next_try_ns) WHERE sent_ns IS NULL;

CREATE TABLE virus (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	time_ns    INTEGER NOT NULL,
	pecid      TEXT NOT NULL,
	sender     TEXT NOT NULL,
	recipients TEXT NOT NULL,  -- JSON array of strings
	signature  TEXT NOT NULL,
	data       BLOB NOT NULL
) STRICT;
CREATE INDEX virus_pecid ON virus(pecid);
CREATE INDEX virus_time  ON virus(time_ns);
`,
	// 1 -> 2: acceptances held until Postfix has queued the envelope (held.go)
	trackingSchema + `
ALTER TABLE tracking ADD COLUMN held TEXT;  -- token of a held transaction; NULL: effective
CREATE TABLE held (
	token      TEXT PRIMARY KEY,
	queue_id   TEXT NOT NULL,
	created_ns INTEGER NOT NULL,
	txn        BLOB NOT NULL     -- JSON of the store.Txn, without its timer rows
) STRICT;
`,
	// 2 -> 3: the delivery point's record of what it handed to Dovecot
	// (delivery.go)
	deliveriesSchema,
	// 3 -> 4: the provider's service state, suspended or active (service.go)
	serviceSchema,
	// 4 -> 5: the daemons' health samples (admin.go), for the
	// availability figures of pecctl report
	healthSchema,
	// 5 -> 6: the outbox's messages apart from the rows that are claimed,
	// retried and marked sent, so that those updates do not rewrite the
	// message (a complete receipt carries the whole original)
	outboxDataSchema,
	// 6 -> 7: the mailbox registry (mailbox.go)
	mailboxesSchema,
}

const outboxDataSchema = `
CREATE TABLE outbox_data (
	id   INTEGER PRIMARY KEY,  -- outbox.id
	data BLOB NOT NULL
) STRICT;
INSERT INTO outbox_data (id, data) SELECT id, data FROM outbox;
ALTER TABLE outbox DROP COLUMN data;
`

// Store is the SQLite-backed provider state. It is safe for concurrent use.
// Writes are serialised (in this process by a mutex, across processes by
// SQLite's write lock with busy_timeout); writes that wait for the mutex
// are committed together (write).
type Store struct {
	db   *sql.DB
	path string
	mu   sync.Mutex // held by the goroutine that runs a batch of writes

	waitingMu sync.Mutex
	waiting   []*writeRequest // writes not yet taken into a batch
}

// writeRequest is one caller's write transaction, waiting for its batch.
type writeRequest struct {
	fn   func(tx *sql.Tx) error
	done chan error // buffered: the batch's outcome for this write
}

// maxBatch bounds the writes committed together.
const maxBatch = 64

// Open opens (creating it if needed) the store at path and brings its
// schema up to date.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path: set the store path in the configuration")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: cannot resolve %q: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if fi, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store: directory %s does not exist: create it, writable by the user running the service, or fix the store path", dir)
		}
		return nil, fmt.Errorf("store: cannot access directory %s (%v): the user running the service needs search (x) permission on it and its parents", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("store: %s is not a directory: fix the store path", dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("store: %s is a directory: the store path must name a file, e.g. %s", abs, filepath.Join(abs, "pec.db"))
	}

	// Per-connection settings applied by the driver to every connection:
	// WAL, synchronous=FULL (a commit is on disk when it returns), foreign
	// keys, a busy timeout, and BEGIN IMMEDIATE for db.Begin so that writers
	// queue on the busy handler instead of failing on lock upgrade.
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(abs)
	dsn := "file:" + esc + "?_journal_mode=WAL&_synchronous=FULL&_foreign_keys=on&_busy_timeout=10000&_txlock=immediate"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s := &Store{db: db, path: abs}
	err = s.init()
	if err == nil {
		err = s.initTracking()
	}
	if err == nil {
		err = s.initClaims()
	}
	if err == nil {
		err = s.initCluster()
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// explain turns an SQLite error at open time into a message for the operator.
func (s *Store) explain(what string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) {
		switch se.Code {
		case sqlite3.ErrCantOpen, sqlite3.ErrPerm, sqlite3.ErrAuth:
			return fmt.Errorf("store: %s %s: %w: check that the user running the service may read and write the file and create files in %s (SQLite adds %s-wal and %s-shm)", what, s.path, err, filepath.Dir(s.path), filepath.Base(s.path), filepath.Base(s.path))
		case sqlite3.ErrReadonly:
			return fmt.Errorf("store: %s %s: %w: the database is read-only; the user running the service needs write permission on the file, on %s-wal and %s-shm if present, and on the directory %s", what, s.path, err, s.path, s.path, filepath.Dir(s.path))
		case sqlite3.ErrNotADB:
			return fmt.Errorf("store: %s %s: %w: the file is not a SQLite database; fix the store path", what, s.path, err)
		case sqlite3.ErrCorrupt:
			return fmt.Errorf("store: %s %s: %w: the database is corrupt; restore it from backup", what, s.path, err)
		case sqlite3.ErrBusy, sqlite3.ErrLocked:
			return fmt.Errorf("store: %s %s: %w: another process holds a lock on the database", what, s.path, err)
		case sqlite3.ErrFull:
			return fmt.Errorf("store: %s %s: %w: the disk is full", what, s.path, err)
		case sqlite3.ErrIoErr:
			return fmt.Errorf("store: %s %s: %w: I/O error; check the disk and that the file is on a local filesystem (WAL needs shared memory)", what, s.path, err)
		}
	}
	return fmt.Errorf("store: %s %s: %w", what, s.path, err)
}

func (s *Store) init() error {
	var mode string
	if err := s.db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return s.explain("cannot open", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: %s: cannot enable WAL journal mode (got %q): put the database on a local filesystem", s.path, mode)
	}
	var syncMode, fk int
	if err := s.db.QueryRow("PRAGMA synchronous").Scan(&syncMode); err != nil {
		return s.explain("cannot read settings of", err)
	}
	if err := s.db.QueryRow("PRAGMA foreign_keys").Scan(&fk); err != nil {
		return s.explain("cannot read settings of", err)
	}
	if syncMode < 2 || fk != 1 {
		return fmt.Errorf("store: %s: the SQLite driver did not apply synchronous=FULL and foreign_keys=on (got %d, %d)", s.path, syncMode, fk)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.db.Begin()
	if err != nil {
		return s.explain("cannot open", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return s.explain("cannot read the schema version of", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("store: %s has schema version %d, newer than this program supports (%d): run a newer version of the program", s.path, v, schemaVersion)
	}
	if v == schemaVersion {
		return nil
	}
	for ; v < schemaVersion; v++ {
		if _, err := tx.Exec(migrations[v]); err != nil {
			return s.explain(fmt.Sprintf("cannot upgrade the schema (version %d to %d) of", v, v+1), err)
		}
	}
	if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
		return s.explain("cannot set the schema version of", err)
	}
	if err := tx.Commit(); err != nil {
		return s.explain("cannot create the schema in", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// write runs fn in a write transaction, committed (synchronous=FULL: on
// disk) when it returns nil.
//
// Group commit: the writes of this process that arrive while another is
// being committed wait for the mutex; the first to get it takes them (up
// to maxBatch, oldest first) and runs them one after the other in one
// transaction, each in its own savepoint, then commits once: one WAL sync
// for the batch instead of one per write, under concurrent load. A write
// whose fn fails is rolled back to its savepoint and gets its error; the
// others go on. When SQLite has rolled back the whole transaction (disk
// full, I/O error: the savepoint is gone then) or the commit fails, every
// write of the batch fails, as each would have alone. A single waiting
// write runs without a savepoint.
func (s *Store) write(fn func(tx *sql.Tx) error) error {
	req := &writeRequest{fn: fn, done: make(chan error, 1)}
	s.waitingMu.Lock()
	s.waiting = append(s.waiting, req)
	s.waitingMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		select {
		case err := <-req.done:
			// answered by a batch that ran before this goroutine got the
			// mutex, or by the one it just ran
			return err
		default:
		}
		// req is still waiting, so there is at least one: the batches are
		// taken oldest first and req comes up within a few of them
		s.waitingMu.Lock()
		n := min(len(s.waiting), maxBatch)
		batch := s.waiting[:n:n]
		s.waiting = s.waiting[n:]
		s.waitingMu.Unlock()
		if n == 0 {
			return errors.New("store: internal error: a write was neither answered nor waiting")
		}
		s.runBatch(batch)
	}
}

// runBatch commits the writes of batch in one transaction and answers
// each exactly once. A fn that panics: the transaction is rolled back,
// the writes not yet answered get an error, and the panic goes on in this
// goroutine (a programming error must not leave the store locked or the
// other writers waiting).
func (s *Store) runBatch(batch []*writeRequest) {
	answered := 0 // batch[:answered] have their answer
	var tx *sql.Tx
	defer func() {
		if r := recover(); r != nil {
			if tx != nil {
				tx.Rollback()
			}
			for _, q := range batch[answered:] {
				q.done <- fmt.Errorf("store: write not committed: another write of its batch panicked: %v", r)
			}
			panic(r)
		}
	}()
	answer := func(errs func(i int) error) {
		for i, q := range batch {
			q.done <- errs(i)
		}
		answered = len(batch)
	}
	all := func(err error) func(int) error { return func(int) error { return err } }
	var err error
	if tx, err = s.db.Begin(); err != nil {
		answer(all(err))
		return
	}
	if len(batch) == 1 {
		if err := batch[0].fn(tx); err != nil {
			tx.Rollback()
			answer(all(err))
			return
		}
		answer(all(tx.Commit()))
		return
	}
	failed := make([]error, len(batch))
	for i, r := range batch {
		if _, err := tx.Exec("SAVEPOINT write"); err != nil {
			tx.Rollback()
			answer(all(err))
			return
		}
		if failed[i] = r.fn(tx); failed[i] != nil {
			if _, err := tx.Exec("ROLLBACK TO write"); err != nil {
				// SQLite rolled back the whole transaction: nothing of the
				// batch stays; this write's own error goes to it alone
				tx.Rollback()
				answer(func(j int) error {
					if j == i {
						return errors.Join(failed[i], err)
					}
					return fmt.Errorf("store: write not committed: the transaction of its batch was rolled back: %w", err)
				})
				return
			}
		}
		if _, err := tx.Exec("RELEASE write"); err != nil {
			tx.Rollback()
			answer(all(err))
			return
		}
	}
	err = tx.Commit()
	answer(func(i int) error {
		if failed[i] != nil {
			return failed[i]
		}
		return err
	})
}

func encodeList(l []string) string { return store.EncodeList(l) }

func decodeList(s string) ([]string, error) { return store.DecodeList(s) }

type chainState struct {
	anchorID   int64
	anchorHash []byte
	headID     int64
	headHash   []byte
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func readChain(q querier) (chainState, error) {
	var c chainState
	err := q.QueryRowContext(context.Background(),
		"SELECT anchor_id, anchor_hash, head_id, head_hash FROM chain WHERE one = 1").
		Scan(&c.anchorID, &c.anchorHash, &c.headID, &c.headHash)
	if err != nil {
		return c, fmt.Errorf("reading the chain state: %w", err)
	}
	return c, nil
}

// eventRow is an event as it will be stored: lists already JSON-encoded and
// the event normalised to what reading it back yields, so that the hash is
// computed over exactly what is stored.
type eventRow struct {
	ev         store.Event
	recipients string
	related    string
}

func prepareEvent(e store.Event) (eventRow, error) {
	e, err := store.NormalizeEvent(e)
	if err != nil {
		return eventRow{}, err
	}
	return eventRow{ev: e, recipients: encodeList(e.Recipients), related: encodeList(e.Related)}, nil
}

// appendEvents writes rows after the head and moves the head.
func appendEvents(tx *sql.Tx, rows []eventRow) error {
	if len(rows) == 0 {
		return nil
	}
	c, err := readChain(tx)
	if err != nil {
		return err
	}
	id, prev := c.headID, c.headHash
	for i := range rows {
		r := &rows[i]
		id++
		h := store.RowHash(prev, &r.ev)
		e := &r.ev
		_, err := tx.Exec(`INSERT INTO events (id, time_ns, point, type, pecid, msgid, sender, recipients, subject, related, provider, error, queue_id, prev_hash, hash)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, e.Time.UnixNano(), e.Point, e.Type, e.PECID, e.MsgID, e.Sender, r.recipients,
			e.Subject, r.related, e.Provider, e.Error, e.QueueID, prev, h)
		if err != nil {
			return fmt.Errorf("inserting event row %d: %w", id, err)
		}
		prev = h
	}
	if _, err := tx.Exec("UPDATE chain SET head_id = ?, head_hash = ? WHERE one = 1", id, prev); err != nil {
		return fmt.Errorf("moving the chain head: %w", err)
	}
	return nil
}

// ---- Commit ----

// Commit writes everything in txn atomically, in one SQLite transaction
// with synchronous=FULL: when it returns nil the transaction is on disk;
// when it returns an error nothing of txn was written.
func (s *Store) Commit(txn store.Txn) error {
	if txn.Empty() {
		return nil
	}
	c, err := prepareTxn(txn)
	if err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	if err := s.write(c.apply); err != nil {
		return fmt.Errorf("store: commit: %w", err)
	}
	return nil
}

// preparedTxn is a store.Txn checked and encoded, ready to be written inside a
// database transaction.
type preparedTxn struct {
	txn store.Txn
	evs []eventRow
}

func prepareTxn(txn store.Txn) (*preparedTxn, error) {
	evs := make([]eventRow, 0, len(txn.Events))
	for _, e := range txn.Events {
		r, err := prepareEvent(e)
		if err != nil {
			return nil, err
		}
		evs = append(evs, r)
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

// apply writes the transaction inside tx.
func (c *preparedTxn) apply(tx *sql.Tx) error {
	txn := c.txn
	now := time.Now().UnixNano()
	if err := appendEvents(tx, c.evs); err != nil {
		return err
	}
	for _, o := range txn.Outbox {
		res, err := tx.Exec(`INSERT INTO outbox (created_ns, mail_from, rcpts, message_id, kind) VALUES (?, ?, ?, ?, ?)`,
			now, o.MailFrom, encodeList(o.Rcpts), o.MessageID, o.Kind)
		if err != nil {
			return fmt.Errorf("inserting outgoing %s: %w", o.MessageID, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("inserting outgoing %s: %w", o.MessageID, err)
		}
		if _, err := tx.Exec(`INSERT INTO outbox_data (id, data) VALUES (?, ?)`, id, o.Data); err != nil {
			return fmt.Errorf("inserting outgoing %s: %w", o.MessageID, err)
		}
	}
	for _, v := range txn.Virus {
		data := v.Data
		if data == nil {
			data = []byte{}
		}
		_, err := tx.Exec(`INSERT INTO virus (time_ns, pecid, sender, recipients, signature, data) VALUES (?, ?, ?, ?, ?, ?)`,
			v.Time.UnixNano(), v.PECID, v.Sender, encodeList(v.Recipients), v.Signature, data)
		if err != nil {
			return fmt.Errorf("inserting virus item for %s: %w", v.PECID, err)
		}
	}
	if err := commitTracking(tx, txn); err != nil {
		return err
	}
	return commitDeliveries(tx, txn.Deliveries)
}

// ---- outbox ----

// DuePending returns up to limit (default 100) unsent items whose NextTry is
// not after now, oldest first.
func (s *Store) DuePending(now time.Time, limit int) ([]store.Queued, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.Query(`SELECT o.id, o.mail_from, o.rcpts, d.data, o.message_id, o.kind, o.attempts, o.next_try_ns
		FROM outbox o JOIN outbox_data d ON d.id = o.id WHERE o.sent_ns IS NULL AND o.next_try_ns <= ? ORDER BY o.id LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: due pending: %w", err)
	}
	defer rows.Close()
	var out []store.Queued
	for rows.Next() {
		var q store.Queued
		var rcpts string
		var next int64
		if err := rows.Scan(&q.ID, &q.MailFrom, &rcpts, &q.Data, &q.MessageID, &q.Kind, &q.Attempts, &next); err != nil {
			return nil, fmt.Errorf("store: due pending: %w", err)
		}
		if q.Rcpts, err = decodeList(rcpts); err != nil {
			return nil, fmt.Errorf("store: due pending: item %d: bad recipients: %w", q.ID, err)
		}
		if next != 0 {
			q.NextTry = time.Unix(0, next).UTC()
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: due pending: %w", err)
	}
	return out, nil
}

// Release makes claimed, unsent items due again at at (a sender that
// stops a pass early gives back what it did not try).
func (s *Store) Release(ids []int64, at time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return s.write(func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec("UPDATE outbox SET next_try_ns = ? WHERE id = ? AND sent_ns IS NULL", at.UnixNano(), id); err != nil {
				return fmt.Errorf("store: release %d: %w", id, err)
			}
		}
		return nil
	})
}

// MarkSent records that item id was accepted by the SMTP server at at, and
// appends store.Event{Point: "outbox", Type: "sent", Related: [MessageID]} to the
// log in the same transaction. It returns store.ErrNotPending if the item is
// unknown or already sent.
func (s *Store) MarkSent(id int64, at time.Time) error {
	if !store.ValidTime(at) {
		return fmt.Errorf("store: mark sent %d: time %v is zero or out of range", id, at)
	}
	err := s.write(func(tx *sql.Tx) error {
		var from, rcpts, msgID, kind string
		var sent sql.NullInt64
		err := tx.QueryRow("SELECT mail_from, rcpts, message_id, kind, sent_ns FROM outbox WHERE id = ?", id).
			Scan(&from, &rcpts, &msgID, &kind, &sent)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && sent.Valid) {
			return store.ErrNotPending
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec("UPDATE outbox SET sent_ns = ?, attempts = attempts + 1, last_error = '' WHERE id = ?", at.UnixNano(), id); err != nil {
			return err
		}
		rl, err := decodeList(rcpts)
		if err != nil {
			return fmt.Errorf("bad recipients: %w", err)
		}
		r, err := prepareEvent(store.Event{Time: at, Point: store.AtOutbox, Type: store.TypeSent, Sender: from, Recipients: rl, Related: []string{msgID}})
		if err != nil {
			return err
		}
		return appendEvents(tx, []eventRow{r})
	})
	if err != nil {
		return fmt.Errorf("store: mark sent %d: %w", id, err)
	}
	return nil
}

// MarkRetry records a failed attempt of item id and schedules the next one.
// It returns store.ErrNotPending if the item is unknown or already sent.
func (s *Store) MarkRetry(id int64, errText string, next time.Time) error {
	err := s.write(func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_try_ns = ?
			WHERE id = ? AND sent_ns IS NULL`, errText, next.UnixNano(), id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return store.ErrNotPending
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: mark retry %d: %w", id, err)
	}
	return nil
}

// OutboxDepth returns the number of items not yet sent.
func (s *Store) OutboxDepth() (int, error) {
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM outbox WHERE sent_ns IS NULL").Scan(&n); err != nil {
		return 0, fmt.Errorf("store: outbox depth: %w", err)
	}
	return n, nil
}

// ---- event log ----

const eventCols = "id, time_ns, point, type, pecid, msgid, sender, recipients, subject, related, provider, error, queue_id"

type scanner interface{ Scan(dest ...any) error }

func scanEvent(sc scanner, extra ...any) (store.Event, error) {
	var e store.Event
	var t int64
	var rcpts, related string
	dest := append([]any{&e.ID, &t, &e.Point, &e.Type, &e.PECID, &e.MsgID, &e.Sender, &rcpts,
		&e.Subject, &related, &e.Provider, &e.Error, &e.QueueID}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return e, err
	}
	e.Time = time.Unix(0, t).UTC()
	var err error
	if e.Recipients, err = decodeList(rcpts); err != nil {
		return e, fmt.Errorf("row %d: bad recipients: %w", e.ID, err)
	}
	if e.Related, err = decodeList(related); err != nil {
		return e, fmt.Errorf("row %d: bad related: %w", e.ID, err)
	}
	return e, nil
}

// Events returns the log rows matching q, oldest first.
func (s *Store) Events(q store.Query) ([]store.Event, error) {
	var where []string
	var args []any
	if q.PECID != "" {
		where, args = append(where, "pecid = ?"), append(args, q.PECID)
	}
	if q.MsgID != "" {
		where, args = append(where, "msgid = ?"), append(args, q.MsgID)
	}
	if q.Sender != "" {
		where, args = append(where, "sender = ? COLLATE NOCASE"), append(args, q.Sender)
	}
	if q.Recipient != "" {
		where, args = append(where, "EXISTS (SELECT 1 FROM json_each(events.recipients) j WHERE j.value = ? COLLATE NOCASE)"), append(args, q.Recipient)
	}
	if q.Type != "" {
		where, args = append(where, "type = ?"), append(args, q.Type)
	}
	if q.Point != "" {
		where, args = append(where, "point = ?"), append(args, q.Point)
	}
	if !q.From.IsZero() {
		where, args = append(where, "time_ns >= ?"), append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		where, args = append(where, "time_ns < ?"), append(args, q.To.UnixNano())
	}
	sqlText := "SELECT " + eventCols + " FROM events"
	if len(where) > 0 {
		sqlText += " WHERE " + strings.Join(where, " AND ")
	}
	sqlText += " ORDER BY id"
	if q.Limit > 0 {
		sqlText += " LIMIT ?"
		args = append(args, q.Limit)
	}
	rows, err := s.db.Query(sqlText, args...)
	if err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, fmt.Errorf("store: events: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: events: %w", err)
	}
	return out, nil
}

// LogHead returns the id and hash of the last event row (0 and the anchor
// hash when the log is empty). Sealing this pair (signature and RFC 3161
// timestamp) at least every 24 h seals every row up to it.
func (s *Store) LogHead() (id int64, hash []byte, err error) {
	c, err := readChain(s.db)
	if err != nil {
		return 0, nil, fmt.Errorf("store: %w", err)
	}
	return c.headID, c.headHash, nil
}

// VerifyLog walks the event log from the purge anchor to the head. It
// returns 0, nil when the chain is intact; otherwise the id of the first row
// whose hash or link is wrong and an error saying what happened: a row
// changed (contents do not match its hash), rows removed (a gap in the ids,
// or a truncated tail — then the id is the first missing one), rows
// reordered (a row's predecessor is elsewhere in the log), or a broken link
// (the previous row rewritten together with its hash).
func (s *Store) VerifyLog() (firstBad int64, err error) {
	ctx := context.Background()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: verify log: %w", err)
	}
	defer conn.Close()
	// A deferred read transaction: one consistent snapshot, writers not blocked.
	if _, err := conn.ExecContext(ctx, "BEGIN DEFERRED"); err != nil {
		return 0, fmt.Errorf("store: verify log: %w", err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK")

	c, err := readChain(conn)
	if err != nil {
		return 0, fmt.Errorf("store: verify log: %w", err)
	}
	rows, err := conn.QueryContext(ctx, "SELECT "+eventCols+", prev_hash, hash FROM events ORDER BY id")
	if err != nil {
		return 0, fmt.Errorf("store: verify log: %w", err)
	}
	defer rows.Close()
	walk := store.NewChainWalk(c.anchorID, c.anchorHash, c.headID, c.headHash)
	lookup := func(h []byte, except int64) (int64, bool, error) {
		rows.Close() // the connection serves one statement at a time
		var j int64
		err := conn.QueryRowContext(ctx, "SELECT id FROM events WHERE hash = ? AND id <> ?", h, except).Scan(&j)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("store: verify log: %w", err)
		}
		return j, true, nil
	}
	for rows.Next() {
		var ph, h []byte
		e, err := scanEvent(rows, &ph, &h)
		if err != nil {
			return 0, fmt.Errorf("store: verify log: %w", err)
		}
		if bad, err := walk.Row(&e, ph, h, lookup); err != nil {
			return bad, err
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("store: verify log: %w", err)
	}
	return walk.End()
}

// ---- virus store ----

// VirusItems returns the quarantined messages of transaction pecid, oldest
// first.
func (s *Store) VirusItems(pecid string) ([]store.Quarantined, error) {
	rows, err := s.db.Query("SELECT time_ns, pecid, sender, recipients, signature, data FROM virus WHERE pecid = ? ORDER BY id", pecid)
	if err != nil {
		return nil, fmt.Errorf("store: virus items: %w", err)
	}
	defer rows.Close()
	var out []store.Quarantined
	for rows.Next() {
		var q store.Quarantined
		var t int64
		var rcpts string
		if err := rows.Scan(&t, &q.PECID, &q.Sender, &rcpts, &q.Signature, &q.Data); err != nil {
			return nil, fmt.Errorf("store: virus items: %w", err)
		}
		q.Time = time.Unix(0, t).UTC()
		if q.Recipients, err = decodeList(rcpts); err != nil {
			return nil, fmt.Errorf("store: virus items: bad recipients: %w", err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: virus items: %w", err)
	}
	return out, nil
}

// ---- retention ----

// Purge deletes event rows and virus items whose time is before the cutoff
// (a row at exactly before is kept), sent outbox items sent before it and
// settled delivery rows last changed before it.
//
// store.Event rows are deleted as a prefix of the log, so that the chain stays
// verifiable: the hash of the last deleted row becomes the new anchor. A row
// older than the cutoff that was written after a newer one (caller clocks
// out of order) is kept until every row before it is purgeable; with
// monotonic times this is exactly "every row older than before". Pending
// outbox items are never purged.
func (s *Store) Purge(before time.Time) (events, virus int, err error) {
	cut := before.UnixNano()
	err = s.write(func(tx *sql.Tx) error {
		c, err := readChain(tx)
		if err != nil {
			return err
		}
		var first sql.NullInt64
		if err := tx.QueryRow("SELECT min(id) FROM events WHERE time_ns >= ?", cut).Scan(&first); err != nil {
			return err
		}
		last := c.headID
		if first.Valid {
			last = first.Int64 - 1
		}
		if last > c.anchorID {
			var h []byte
			err := tx.QueryRow("SELECT hash FROM events WHERE id = ?", last).Scan(&h)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("event row %d is missing: the log is damaged, run VerifyLog", last)
			} else if err != nil {
				return err
			}
			if _, err := tx.Exec("UPDATE chain SET anchor_id = ?, anchor_hash = ? WHERE one = 1", last, h); err != nil {
				return err
			}
			res, err := tx.Exec("DELETE FROM events WHERE id <= ?", last)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			events = int(n)
		}
		res, err := tx.Exec("DELETE FROM virus WHERE time_ns < ?", cut)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		virus = int(n)
		if _, err = tx.Exec("DELETE FROM outbox_data WHERE id IN (SELECT id FROM outbox WHERE sent_ns IS NOT NULL AND sent_ns < ?)", cut); err != nil {
			return err
		}
		if _, err = tx.Exec("DELETE FROM outbox WHERE sent_ns IS NOT NULL AND sent_ns < ?", cut); err != nil {
			return err
		}
		// settled deliveries: a replay older than the log is not checked
		// against them any more (pending rows stay until settled)
		if _, err = tx.Exec("DELETE FROM deliveries WHERE state != ? AND at_ns < ?", store.DeliveryPending, cut); err != nil {
			return err
		}
		// health samples: the availability of periods past the retention
		_, err = tx.Exec("DELETE FROM health WHERE at_ns < ?", cut)
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("store: purge: %w", err)
	}
	return events, virus, nil
}

// ---- chain values for archives and operator tools ----

// EachLinkedEvent calls fn, in id order, for every row whose time is in
// [from, to), with its prev_hash and hash. The rows are read in one
// statement (one consistent snapshot; writers are not blocked meanwhile).
// An error from fn stops the walk and is returned.
func (s *Store) EachLinkedEvent(from, to time.Time, fn func(store.LinkedEvent) error) error {
	rows, err := s.db.Query("SELECT "+eventCols+", prev_hash, hash FROM events WHERE time_ns >= ? AND time_ns < ? ORDER BY id",
		from.UnixNano(), to.UnixNano())
	if err != nil {
		return fmt.Errorf("store: linked events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var le store.LinkedEvent
		e, err := scanEvent(rows, &le.PrevHash, &le.Hash)
		if err != nil {
			return fmt.Errorf("store: linked events: %w", err)
		}
		le.Event = e
		if err := fn(le); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("store: linked events: %w", err)
	}
	return nil
}

// CountEvents returns the number of rows whose time is in [from, to).
func (s *Store) CountEvents(from, to time.Time) (int, error) {
	var n int
	err := s.db.QueryRow("SELECT count(*) FROM events WHERE time_ns >= ? AND time_ns < ?", from.UnixNano(), to.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count events: %w", err)
	}
	return n, nil
}

// EventLink returns the prev_hash and hash stored for row id; ok is false
// when the row is not in the log (purged, or never written).
func (s *Store) EventLink(id int64) (prev, hash []byte, ok bool, err error) {
	err = s.db.QueryRow("SELECT prev_hash, hash FROM events WHERE id = ?", id).Scan(&prev, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("store: event link %d: %w", id, err)
	}
	return prev, hash, true, nil
}

// LogAnchor returns the id and hash of the last purged row (0 and the zero
// hash when nothing was purged). With an intact log, the rows are
// anchor+1 .. head.
func (s *Store) LogAnchor() (id int64, hash []byte, err error) {
	c, err := readChain(s.db)
	if err != nil {
		return 0, nil, fmt.Errorf("store: %w", err)
	}
	return c.anchorID, c.anchorHash, nil
}

// CountVirus returns the number of virus store items whose time is in
// [from, to).
func (s *Store) CountVirus(from, to time.Time) (int, error) {
	var n int
	err := s.db.QueryRow("SELECT count(*) FROM virus WHERE time_ns >= ? AND time_ns < ?", from.UnixNano(), to.UnixNano()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: count virus: %w", err)
	}
	return n, nil
}
