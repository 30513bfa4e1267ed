package sqlite

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

// The mailbox registry (store.Mailboxes). Rows are never deleted: an
// address once registered is never given to anyone else.

const mailboxesSchema = `
CREATE TABLE mailboxes (
	address       TEXT PRIMARY KEY,   -- lower case
	state         TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'closed', 'disabled')),
	created_ns    INTEGER NOT NULL,
	changed_ns    INTEGER NOT NULL,
	closed_ns     INTEGER NOT NULL DEFAULT 0,  -- 0: never closed
	password_hash TEXT NOT NULL DEFAULT '',    -- Dovecot {SCHEME}hash
	ordinary_mail TEXT NOT NULL DEFAULT '',
	forward_to    TEXT NOT NULL DEFAULT '',
	receipt_form  TEXT NOT NULL DEFAULT '',
	quota_bytes   INTEGER NOT NULL DEFAULT 0,
	version       INTEGER NOT NULL
) STRICT;
`

const mailboxCols = "address, state, created_ns, changed_ns, closed_ns, password_hash, ordinary_mail, forward_to, receipt_form, quota_bytes, version"

func mailboxArgs(m store.Mailbox, version int64) []any {
	var closed int64
	if !m.Closed.IsZero() {
		closed = m.Closed.UnixNano()
	}
	o := m.Options
	return []any{m.Address, string(m.State), m.Created.UnixNano(), m.Changed.UnixNano(), closed, m.PasswordHash,
		o.OrdinaryMail, o.ForwardTo, o.ReceiptForm, o.QuotaBytes, version}
}

// CreateMailbox implements store.Mailboxes.
func (s *Store) CreateMailbox(m store.Mailbox, ev store.Event) error {
	if err := store.CheckMailbox(m, ev); err != nil {
		return err
	}
	row, err := prepareEvent(ev)
	if err != nil {
		return fmt.Errorf("store: mailbox %s: %w", m.Address, err)
	}
	err = s.write(func(tx *sql.Tx) error {
		res, err := tx.Exec("INSERT INTO mailboxes ("+mailboxCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (address) DO NOTHING",
			mailboxArgs(m, 1)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrMailboxExists
		}
		return appendEvents(tx, []eventRow{row})
	})
	if errors.Is(err, store.ErrMailboxExists) {
		return err
	}
	if err != nil {
		return s.explain("register mailbox "+m.Address+" in", err)
	}
	return nil
}

// UpdateMailbox implements store.Mailboxes.
func (s *Store) UpdateMailbox(m store.Mailbox, ev store.Event) error {
	if err := store.CheckMailbox(m, ev); err != nil {
		return err
	}
	row, err := prepareEvent(ev)
	if err != nil {
		return fmt.Errorf("store: mailbox %s: %w", m.Address, err)
	}
	err = s.write(func(tx *sql.Tx) error {
		a := mailboxArgs(m, m.Version+1)
		res, err := tx.Exec(`UPDATE mailboxes SET state = ?, created_ns = ?, changed_ns = ?, closed_ns = ?, password_hash = ?,
			ordinary_mail = ?, forward_to = ?, receipt_form = ?, quota_bytes = ?, version = ? WHERE address = ? AND version = ?`,
			append(a[1:], m.Address, m.Version)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrMailboxChanged
		}
		return appendEvents(tx, []eventRow{row})
	})
	if errors.Is(err, store.ErrMailboxChanged) {
		return err
	}
	if err != nil {
		return s.explain("update mailbox "+m.Address+" in", err)
	}
	return nil
}

func scanMailbox(sc scanner) (store.Mailbox, error) {
	var m store.Mailbox
	var state string
	var created, changed, closed int64
	o := &m.Options
	err := sc.Scan(&m.Address, &state, &created, &changed, &closed, &m.PasswordHash, &o.OrdinaryMail, &o.ForwardTo, &o.ReceiptForm, &o.QuotaBytes, &m.Version)
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
func (s *Store) Mailbox(addr string) (store.Mailbox, bool, error) {
	m, err := scanMailbox(s.db.QueryRow("SELECT "+mailboxCols+" FROM mailboxes WHERE address = ?", strings.ToLower(addr)))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Mailbox{}, false, nil
	}
	if err != nil {
		return store.Mailbox{}, false, s.explain("read mailbox "+addr+" from", err)
	}
	return m, true, nil
}

// ListMailboxes implements store.Mailboxes.
func (s *Store) ListMailboxes() ([]store.Mailbox, error) {
	rows, err := s.db.Query("SELECT " + mailboxCols + " FROM mailboxes ORDER BY address")
	if err != nil {
		return nil, s.explain("list the mailboxes of", err)
	}
	defer rows.Close()
	var out []store.Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, s.explain("list the mailboxes of", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.explain("list the mailboxes of", err)
	}
	return out, nil
}

func fromNS(n int64) time.Time { return time.Unix(0, n).UTC() }
