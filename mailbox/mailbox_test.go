package mailbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// TestTransition: the state machine of a mailbox's legal life, as a pure
// rule.
func TestTransition(t *testing.T) {
	active := store.Mailbox{Address: "a@pec.example.test", State: store.MailboxActive, Created: t0, Changed: t0}
	suspended, closed := active, active
	suspended.State = store.MailboxSuspended
	closed.State, closed.Closed = store.MailboxClosed, t0
	disabled := closed
	disabled.State = store.MailboxDisabled
	tests := []struct {
		name string
		m    store.Mailbox
		op   Op
		at   time.Time
		want store.MailboxState
		err  string
	}{
		{"suspend active", active, OpSuspend, t0, store.MailboxSuspended, ""},
		{"reopen suspended", suspended, OpReopen, t0, store.MailboxActive, ""},
		{"close active", active, OpClose, t0, store.MailboxClosed, ""},
		{"close suspended", suspended, OpClose, t0, store.MailboxClosed, ""},
		{"reopen closed within the period", closed, OpReopen, t0.Add(29 * day), store.MailboxActive, ""},
		{"reopen closed after the period", closed, OpReopen, t0.Add(30 * day), "", "is disabled"},
		{"disable closed after the period", closed, OpDisable, t0.Add(30 * day), store.MailboxDisabled, ""},
		{"disable closed within the period", closed, OpDisable, t0.Add(29 * day), "", "cannot disable"},
		{"reopen disabled", disabled, OpReopen, t0, "", "never given again"},
		{"suspend closed", closed, OpSuspend, t0.Add(day), "", "cannot suspend"},
		{"close closed", closed, OpClose, t0.Add(day), "", "closed already"},
		{"reopen active", active, OpReopen, t0, "", "active already"},
		{"suspend suspended", suspended, OpSuspend, t0, "", "cannot suspend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Transition(tc.m, tc.op, tc.at, 0)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.State != tc.want || !got.Changed.Equal(tc.at) {
				t.Fatalf("got %s changed %v, want %s at %v", got.State, got.Changed, tc.want, tc.at)
			}
			if tc.want == store.MailboxClosed && !got.Closed.Equal(tc.at) {
				t.Fatalf("closed at %v, want %v", got.Closed, tc.at)
			}
			if tc.want == store.MailboxActive && !got.Closed.IsZero() {
				t.Fatalf("a reopened mailbox keeps its closing time %v", got.Closed)
			}
		})
	}
}

// TestEffective: a closed mailbox is disabled from the end of its
// read-only period on, with the default and a configured period.
func TestEffective(t *testing.T) {
	m := store.Mailbox{State: store.MailboxClosed, Closed: t0}
	for _, c := range []struct {
		at     time.Time
		period time.Duration
		want   store.MailboxState
	}{
		{t0.Add(30*day - time.Second), 0, store.MailboxClosed},
		{t0.Add(30 * day), 0, store.MailboxDisabled},
		{t0.Add(2*day - time.Second), 2 * day, store.MailboxClosed},
		{t0.Add(2 * day), 2 * day, store.MailboxDisabled},
	} {
		if got := Effective(m, c.at, c.period); got != c.want {
			t.Errorf("Effective at %v (period %v) = %s, want %s", c.at, c.period, got, c.want)
		}
	}
}

// TestPasswdFile: the users file lists who may log in, with Dovecot's
// scheme prefix and the quota, and leaves out the disabled mailboxes and
// those whose read-only period is over.
func TestPasswdFile(t *testing.T) {
	h := "{BLF-CRYPT}$2a$04$0123456789012345678901uXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
	list := []store.Mailbox{
		{Address: "active@pec.example.test", State: store.MailboxActive, PasswordHash: h, Options: store.MailboxOptions{QuotaBytes: 1000}},
		{Address: "closed-late@pec.example.test", State: store.MailboxClosed, Closed: t0.Add(-31 * day), PasswordHash: h},
		{Address: "closed@pec.example.test", State: store.MailboxClosed, Closed: t0.Add(-29 * day), PasswordHash: h},
		{Address: "disabled@pec.example.test", State: store.MailboxDisabled, PasswordHash: h},
		{Address: "nopass@pec.example.test", State: store.MailboxActive},
		{Address: "suspended@pec.example.test", State: store.MailboxSuspended, PasswordHash: h},
	}
	got := string(PasswdFile(list, t0, 0))
	want := "# written by pecctl mailbox / pecdeliver from the mailbox registry: do not edit\n" +
		"active@pec.example.test:" + h + "::::::userdb_quota_rule=*:bytes=1000\n" +
		"closed@pec.example.test:" + h + "::::::\n" +
		"suspended@pec.example.test:" + h + "::::::\n"
	if got != want {
		t.Fatalf("PasswdFile =\n%s\nwant\n%s", got, want)
	}
}

// TestHashPassword: the hash is Dovecot's {BLF-CRYPT} form of bcrypt and
// checks only the right password.
func TestHashPassword(t *testing.T) {
	Cost = 4
	h, err := HashPassword("s3cret pass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "{BLF-CRYPT}$2a$04$") || !CheckPassword(h, "s3cret pass") || CheckPassword(h, "s3cret") {
		t.Fatalf("hash %q", h)
	}
	for _, bad := range []string{"", strings.Repeat("x", 73), "a\nb"} {
		if _, err := HashPassword(bad); err == nil {
			t.Errorf("HashPassword(%q) accepted", bad)
		}
	}
}

// TestWriteFileAtomic: the file is replaced whole, keeps its mode, is not
// rewritten when unchanged, and two writes of the same size within one
// second still move its time (Dovecot watches time and size).
func TestWriteFileAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte("a:x\n"), 0o604); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if changed, err := WriteFileAtomic(path, []byte("b:y\n")); err != nil || !changed {
		t.Fatalf("write: %v %v", changed, err)
	}
	after, _ := os.Stat(path)
	if b, _ := os.ReadFile(path); string(b) != "b:y\n" || after.Mode().Perm() != 0o604 {
		t.Fatalf("file %q mode %v", b, after.Mode())
	}
	if after.ModTime().Unix() == before.ModTime().Unix() {
		t.Fatalf("same size, same second: time not moved (%v)", after.ModTime())
	}
	if changed, err := WriteFileAtomic(path, []byte("b:y\n")); err != nil || changed {
		t.Fatalf("unchanged content rewritten: %v %v", changed, err)
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

// TestSyncFileKeepsForeignFile: a users file the registry did not write
// (hand-written, with mailboxes not yet registered) is never replaced; an
// empty one is taken over.
func TestSyncFileKeepsForeignFile(t *testing.T) {
	st := backends(t)["sqlite"](t)
	r := newRegistry(st, &clock{t: t0})
	if _, err := r.Add("a@pec.example.test", "pw", store.MailboxOptions{}, ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	foreign := "old@pec.example.test:{SHA512-CRYPT}$6$x::::::\n"
	os.WriteFile(path, []byte(foreign), 0o640)
	if _, err := r.SyncFile(path); err == nil || !strings.Contains(err.Error(), "pecctl mailbox add") {
		t.Fatalf("SyncFile over a hand-written file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != foreign {
		t.Fatalf("the hand-written file changed: %q", b)
	}
	os.WriteFile(path, nil, 0o640)
	if changed, err := r.SyncFile(path); err != nil || !changed {
		t.Fatalf("SyncFile over an empty file: %v %v", changed, err)
	}
	if changed, err := r.SyncFile(path); err != nil || changed {
		t.Fatalf("SyncFile over its own file: %v %v", changed, err)
	}
}
