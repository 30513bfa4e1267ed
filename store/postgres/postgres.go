// Package postgres is the PostgreSQL backend of the provider's state
// (package store): one database shared by every node of a cluster, with
// the same semantics as store/sqlite and a byte-identical hash chain.
//
// How several nodes share it:
//
//   - One chain for the cluster. A transaction that appends log rows
//     first locks the chain row (SELECT ... FOR UPDATE on chain): appends
//     are serialised across nodes, each reads the head the previous one
//     committed, and ids stay contiguous. The lock is held only for the
//     inserts of that transaction.
//   - Outbox claims. Claim picks due items with FOR UPDATE SKIP LOCKED
//     and pushes their next try to the end of a lease, writing the owner
//     next to each: two nodes claiming at once get disjoint items, and
//     the items of a node that died become due again when the lease ends
//     (or at once when a sender on the dead process's host releases them).
//   - Timers. Every node may run them; a notice's mark is committed with
//     store.Mark.Once, so the second node's commit writes nothing.
//   - Leader work (the providers' index copy, the daily archive) is
//     elected with store.Leases rows.
//
// Every call has a deadline (Timeout): with the database unreachable it
// fails instead of hanging, and the points tempfail (fail closed).
// Transactions that the server aborted for a serialisation failure or a
// deadlock, or that failed before reaching the server, are retried.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pecgo/pec/store"
)

// Timeout bounds every store call.
const Timeout = 30 * time.Second

// Store is the PostgreSQL-backed provider state. It is safe for
// concurrent use by any number of goroutines, processes and nodes.
type Store struct {
	pool *pgxpool.Pool
	desc string
}

var _ store.Store = (*Store)(nil)

// Open connects to the database at connString (a postgres:// URL or libpq
// keywords), creates or upgrades the schema, and returns the store.
func Open(ctx context.Context, connString string) (*Store, error) {
	return open(ctx, connString, false)
}

// OpenExisting is Open for a database that already holds a store (the
// operator's tool): a wrong URL must not yield an empty log that
// "verifies".
func OpenExisting(ctx context.Context, connString string) (*Store, error) {
	return open(ctx, connString, true)
}

func open(ctx context.Context, connString string, existing bool) (*Store, error) {
	desc := redact(connString)
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("store: [store] url %s: %w: use postgres://USER@HOST:PORT/DB?sslmode=verify-full", desc, err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "pec"
	// a lock wait longer than a call's deadline is a stuck node: give up
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = "20s"
	cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "60s"
	cfg.HealthCheckPeriod = 10 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", desc, err)
	}
	s := &Store{pool: pool, desc: desc}
	if existing {
		var found bool
		if err := pool.QueryRow(ctx, "SELECT to_regclass('pec_schema') IS NOT NULL").Scan(&found); err != nil {
			pool.Close()
			return nil, s.explain("cannot open", err)
		}
		if !found {
			pool.Close()
			return nil, fmt.Errorf("store: %s holds no pec store: check [store] url (pecmilter and pecdeliver create it)", desc)
		}
	}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// redact is connString without its password.
func redact(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.Scheme != "" {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		return u.String()
	}
	var out []string
	for _, f := range strings.Fields(connString) {
		if strings.HasPrefix(f, "password=") {
			f = "password=xxxxx"
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}

// explain turns a connection or server error into advice for the operator.
func (s *Store) explain(what string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && !unreachable(err) {
		switch {
		case pe.Code == "28P01" || pe.Code == "28000":
			return fmt.Errorf("store: %s %s: %w: check the user and its password (~/.pgpass) and pg_hba.conf", what, s.desc, err)
		case pe.Code == "3D000":
			return fmt.Errorf("store: %s %s: %w: create the database (createdb -O pec pec) or fix [store] url", what, s.desc, err)
		case pe.Code == "42501":
			return fmt.Errorf("store: %s %s: %w: the database user needs to own the database (or its schema) to create pec's tables", what, s.desc, err)
		case pe.Code == "25006":
			return fmt.Errorf("store: %s %s: %w: the server is a read-only standby; point [store] url at the primary", what, s.desc, err)
		}
		return fmt.Errorf("store: %s %s: %w", what, s.desc, err)
	}
	if unreachable(err) {
		return fmt.Errorf("store: %s %s: %w: the database is unreachable; check that PostgreSQL runs and [store] url names it (mail is tempfailed meanwhile)", what, s.desc, err)
	}
	return fmt.Errorf("store: %s %s: %w", what, s.desc, err)
}

func (s *Store) migrate(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*Timeout)
	defer cancel()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.explain("cannot open", err)
	}
	defer tx.Rollback(ctx)
	// one node upgrades at a time; the key is "pec" in ASCII
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(7365987)"); err != nil {
		return s.explain("cannot lock the schema of", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS pec_schema (one INTEGER PRIMARY KEY CHECK (one = 1), version INTEGER NOT NULL)`); err != nil {
		return s.explain("cannot create the schema table in", err)
	}
	var v int
	err = tx.QueryRow(ctx, "SELECT version FROM pec_schema WHERE one = 1").Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		v = 0
		if _, err := tx.Exec(ctx, "INSERT INTO pec_schema VALUES (1, 0)"); err != nil {
			return s.explain("cannot create the schema table in", err)
		}
	} else if err != nil {
		return s.explain("cannot read the schema version of", err)
	}
	if v > schemaVersion {
		return fmt.Errorf("store: %s has schema version %d, newer than this program supports (%d): run a newer version of the program", s.desc, v, schemaVersion)
	}
	if v == schemaVersion {
		return nil
	}
	for ; v < schemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return s.explain(fmt.Sprintf("cannot upgrade the schema (version %d to %d) of", v, v+1), err)
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE pec_schema SET version = $1 WHERE one = 1", schemaVersion); err != nil {
		return s.explain("cannot set the schema version of", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.explain("cannot create the schema in", err)
	}
	return nil
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Describe is the URL without its password.
func (s *Store) Describe() string { return s.desc }

// Ping checks that the database answers.
func (s *Store) Ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT 1 FROM chain WHERE one = 1").Scan(&n); err != nil {
		return s.explain("cannot reach", err)
	}
	return nil
}

// retryable reports whether a failed transaction may run again: the
// server rolled it back (serialisation failure, deadlock, lock timeout),
// or it failed before anything reached the server.
func retryable(err error) bool {
	var d *inDoubt
	if errors.As(err, &d) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01", "55P03":
			return true
		}
		// the server went away (shutdown, restart, failover) before the
		// transaction committed: it was rolled back
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08")
	}
	// a connection that broke before COMMIT: the server rolled back
	return unreachable(err)
}

// inDoubt is a failure of COMMIT itself, other than the server's refusal:
// the transaction may have been committed, so it is never retried (the
// caller reports the error; see Commit).
type inDoubt struct{ err error }

func (e *inDoubt) Error() string {
	return "outcome unknown, the connection failed during COMMIT: " + e.err.Error()
}
func (e *inDoubt) Unwrap() error { return e.err }

// unreachable reports whether err says the server cannot be reached or is
// shutting down.
func unreachable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return strings.HasPrefix(pe.Code, "57P") || strings.HasPrefix(pe.Code, "08")
	}
	var ne net.Error
	return errors.As(err, new(*pgconn.ConnectError)) || pgconn.SafeToRetry(err) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "conn closed")
}

// write runs fn in one transaction, retrying it (a few times, within
// Timeout) when retryable. fn must be idempotent up to its writes, which
// a failed attempt rolls back.
func (s *Store) write(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(time.Duration(attempt*attempt) * 20 * time.Millisecond):
			}
		}
		err = s.once(ctx, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return err
}

func (s *Store) once(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback(ctx)
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01") {
			return err // refused: rolled back
		}
		if errors.Is(err, pgx.ErrTxCommitRollback) {
			return err
		}
		return &inDoubt{err}
	}
	return nil
}

// read gives fn a context with the call's deadline.
func (s *Store) read(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	return fn(ctx)
}

func ns(t time.Time) int64 { return t.UnixNano() }

func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }

func fromNullNS(n *int64) time.Time {
	if n == nil {
		return time.Time{}
	}
	return fromNS(*n)
}

// b is a string as BYTEA.
func b(s string) []byte {
	if s == "" {
		return []byte{}
	}
	return []byte(s)
}

// Unreachable reports whether err (from Open or any call) says the
// database could not be reached or was shutting down, as opposed to a
// refusal (authentication, a missing database, a newer schema) that
// waiting does not cure.
func Unreachable(err error) bool { return err != nil && unreachable(err) }
