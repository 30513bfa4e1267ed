package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/store"
)

// The mailbox registry (store.Mailboxes). Rows are never deleted: an
// address once registered is never given to anyone else.

const mailboxesSchema = `
CREATE TABLE mailboxes (
	address       TEXT PRIMARY KEY,   -- lower case
	state         TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'closed', 'disabled')),
	created_ns    BIGINT NOT NULL,
	changed_ns    BIGINT NOT NULL,
	closed_ns     BIGINT NOT NULL DEFAULT 0,  -- 0: never closed
	password_hash TEXT NOT NULL DEFAULT '',   -- Dovecot {SCHEME}hash
	ordinary_mail TEXT NOT NULL DEFAULT '',
	forward_to    TEXT NOT NULL DEFAULT '',
	receipt_form  TEXT NOT NULL DEFAULT '',
	quota_bytes   BIGINT NOT NULL DEFAULT 0,
	version       BIGINT NOT NULL
);
`

const mailboxCols = "address, state, created_ns, changed_ns, closed_ns, password_hash, ordinary_mail, forward_to, receipt_form, quota_bytes, version"

func mailboxArgs(m store.Mailbox, version int64) []any {
	var closed int64
	if !m.Closed.IsZero() {
		closed = ns(m.Closed)
	}
	o := m.Options
	return []any{m.Address, string(m.State), ns(m.Created), ns(m.Changed), closed, m.PasswordHash,
		o.OrdinaryMail, o.ForwardTo, o.ReceiptForm, o.QuotaBytes, version}
}

// writeMailbox runs the row's statement and, when it changed one row,
// appends ev under the chain lock, all in one transaction; none is
// returned when no row changed.
func (s *Store) writeMailbox(what string, m store.Mailbox, ev store.Event, none error, sql string, args ...any) error {
	if err := store.CheckMailbox(m, ev); err != nil {
		return err
	}
	n, err := store.NormalizeEvent(ev)
	if err != nil {
		return fmt.Errorf("store: mailbox %s: %w", m.Address, err)
	}
	err = s.write(func(ctx context.Context, tx pgx.Tx) error {
		c, err := lockChain(ctx, tx)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return none
		}
		var p pipe
		appendEvents(&p, c, []store.Event{n})
		return p.run(ctx, tx)
	})
	if errors.Is(err, none) {
		return err
	}
	if err != nil {
		return s.explain(what+" mailbox "+m.Address+" in", err)
	}
	return nil
}

// CreateMailbox implements store.Mailboxes.
func (s *Store) CreateMailbox(m store.Mailbox, ev store.Event) error {
	return s.writeMailbox("register", m, ev, store.ErrMailboxExists,
		"INSERT INTO mailboxes ("+mailboxCols+") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (address) DO NOTHING",
		mailboxArgs(m, 1)...)
}

// UpdateMailbox implements store.Mailboxes.
func (s *Store) UpdateMailbox(m store.Mailbox, ev store.Event) error {
	a := mailboxArgs(m, m.Version+1)
	return s.writeMailbox("update", m, ev, store.ErrMailboxChanged,
		`UPDATE mailboxes SET state = $2, created_ns = $3, changed_ns = $4, closed_ns = $5, password_hash = $6,
			ordinary_mail = $7, forward_to = $8, receipt_form = $9, quota_bytes = $10, version = $11 WHERE address = $1 AND version = $12`,
		append(a, m.Version)...)
}

func scanMailbox(row pgx.Row) (store.Mailbox, error) {
	var m store.Mailbox
	var state string
	var created, changed, closed int64
	o := &m.Options
	err := row.Scan(&m.Address, &state, &created, &changed, &closed, &m.PasswordHash, &o.OrdinaryMail, &o.ForwardTo, &o.ReceiptForm, &o.QuotaBytes, &m.Version)
	if err != nil {
		return m, err
	}
	m.State, m.Created, m.Changed = store.MailboxState(state), fromNS(created), fromNS(changed)
	if closed != 0 {
		m.Closed = fromNS(closed)
	}
	return m, nil
}

// Mailbox implements store.Mailboxes.
func (s *Store) Mailbox(addr string) (m store.Mailbox, ok bool, err error) {
	err = s.read(func(ctx context.Context) error {
		m, err = scanMailbox(s.pool.QueryRow(ctx, "SELECT "+mailboxCols+" FROM mailboxes WHERE address = $1", strings.ToLower(addr)))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Mailbox{}, false, nil
	}
	if err != nil {
		return store.Mailbox{}, false, s.explain("read mailbox "+addr+" from", err)
	}
	return m, true, nil
}

// ListMailboxes implements store.Mailboxes.
func (s *Store) ListMailboxes() (out []store.Mailbox, err error) {
	err = s.read(func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, "SELECT "+mailboxCols+" FROM mailboxes ORDER BY address COLLATE \"C\"")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMailbox(rows)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, s.explain("list the mailboxes of", err)
	}
	return out, nil
}
