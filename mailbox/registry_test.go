package mailbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/postgres"
	"github.com/pecgo/pec/store/sqlite"
)

// clock is an injectable clock the test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// backends opens an empty store of each real backend.
func backends(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"sqlite": func(t *testing.T) store.Store {
			s, err := sqlite.Open(filepath.Join(t.TempDir(), "pec.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) store.Store {
			pg := testenv.StartPostgres(t)
			s, err := postgres.Open(context.Background(), pg.NewDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
}

func newRegistry(st store.Store, c *clock) *Registry {
	Cost = 4
	return &Registry{Store: st, Clock: c.now, Provider: "Example PEC S.p.A.", Domains: []string{"pec.example.test"}}
}

// TestRegistryLife: add, suspend, reopen, close, refuse the address
// again, disable after the read-only period, each change a log row, on
// both store backends.
func TestRegistryLife(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			c := &clock{t: t0}
			r := newRegistry(st, c)
			const addr = "mario.rossi@pec.example.test"
			m, err := r.Add("Mario.Rossi@PEC.example.test", "pw-one", store.MailboxOptions{OrdinaryMail: "refuse", QuotaBytes: 5 << 20}, "contratto 42")
			if err != nil {
				t.Fatal(err)
			}
			if m.Address != addr || m.State != store.MailboxActive || !CheckPassword(m.PasswordHash, "pw-one") {
				t.Fatalf("added %+v", m)
			}
			if _, err := r.Add("x@other.example.test", "pw", store.MailboxOptions{}, ""); err == nil || !strings.Contains(err.Error(), "managed_domains") {
				t.Fatalf("add outside the managed domains: %v", err)
			}
			if _, err := r.Add(addr, "pw", store.MailboxOptions{}, ""); err == nil || !strings.Contains(err.Error(), "registered already") {
				t.Fatalf("second add of an active mailbox: %v", err)
			}
			c.add(time.Hour)
			if m, err = r.Suspend(addr, "richiesta autorità"); err != nil || m.State != store.MailboxSuspended {
				t.Fatalf("suspend: %+v %v", m, err)
			}
			if m, err = r.Reopen(addr, ""); err != nil || m.State != store.MailboxActive {
				t.Fatalf("reopen: %+v %v", m, err)
			}
			c.add(time.Hour)
			closedAt := c.now()
			if m, err = r.Close(addr, "fine contratto"); err != nil || m.State != store.MailboxClosed || !m.Closed.Equal(closedAt) {
				t.Fatalf("close: %+v %v", m, err)
			}
			_, err = r.Add(addr, "pw-two", store.MailboxOptions{}, "")
			if err == nil || !strings.Contains(err.Error(), "never reassigned") || !strings.Contains(err.Error(), "pecctl mailbox reopen") {
				t.Fatalf("add of a closed address: %v", err)
			}
			if got, _ := r.Get(addr); !CheckPassword(got.PasswordHash, "pw-one") {
				t.Fatal("the refused add changed the password")
			}
			// within the period nothing is swept
			c.add(30*day - time.Second)
			if done, err := r.Sweep(); err != nil || len(done) != 0 {
				t.Fatalf("sweep within the period: %v %v", done, err)
			}
			c.add(time.Second)
			if done, err := r.Sweep(); err != nil || len(done) != 1 || done[0] != addr {
				t.Fatalf("sweep after the period: %v %v", done, err)
			}
			if got, _ := r.Get(addr); got.State != store.MailboxDisabled {
				t.Fatalf("after the sweep: %s", got.State)
			}
			if _, err := r.Reopen(addr, ""); err == nil || !strings.Contains(err.Error(), "disabled") {
				t.Fatalf("reopen of a disabled mailbox: %v", err)
			}
			if _, err = r.Add(addr, "pw-two", store.MailboxOptions{}, ""); err == nil || !strings.Contains(err.Error(), "never reassigned") {
				t.Fatalf("add of a disabled address: %v", err)
			}
			if _, err := r.Suspend("nobody@pec.example.test", ""); !errors.Is(err, ErrNotRegistered) {
				t.Fatalf("suspend of an unknown mailbox: %v", err)
			}

			evs, err := st.Events(store.Query{Point: "mailbox"})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, string(e.Type)+" "+strings.Join(e.Related, ",")+" "+e.Subject)
				if len(e.Recipients) != 1 || e.Recipients[0] != addr || e.Provider != r.Provider {
					t.Errorf("row %+v", e)
				}
			}
			want := []string{
				"mailbox-add -> active contratto 42",
				"mailbox-suspend active -> suspended richiesta autorità",
				"mailbox-reopen suspended -> active ",
				"mailbox-close active -> closed fine contratto",
				"mailbox-disable closed -> disabled periodo di sola lettura terminato",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("log rows:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if bad, err := st.VerifyLog(); bad != 0 || err != nil {
				t.Fatalf("log verify: %d %v", bad, err)
			}
		})
	}
}

// TestCacheFollowsChanges: the points' view sees a change after its TTL,
// judges the read-only period at the instant it is given, and does not
// hide a store error (the points fail closed).
func TestCacheFollowsChanges(t *testing.T) {
	st := backends(t)["sqlite"](t)
	c := &clock{t: t0}
	r := newRegistry(st, c)
	const addr = "anna@pec.example.test"
	if _, err := r.Add(addr, "pw", store.MailboxOptions{ReceiptForm: "breve"}, ""); err != nil {
		t.Fatal(err)
	}
	wall := &clock{t: t0}
	cache := &Cache{Store: st, TTL: 10 * time.Second, Wall: wall.now}
	s, ok, err := cache.MailboxStatus(addr, t0)
	if err != nil || !ok || s.State != store.MailboxActive || s.Options.ReceiptForm != "breve" {
		t.Fatalf("status %+v %v %v", s, ok, err)
	}
	if _, err := r.Close(addr, ""); err != nil {
		t.Fatal(err)
	}
	if s, _, _ := cache.MailboxStatus(addr, t0); s.State != store.MailboxActive {
		t.Fatalf("within the TTL the cache answered %s", s.State)
	}
	wall.add(10 * time.Second)
	if s, _, _ := cache.MailboxStatus(addr, t0); s.State != store.MailboxClosed {
		t.Fatalf("after the TTL the cache answered %s", s.State)
	}
	if s, _, _ := cache.MailboxStatus(addr, t0.Add(30*day)); s.State != store.MailboxDisabled {
		t.Fatalf("after the read-only period the cache answered %s", s.State)
	}
	if _, ok, err := cache.MailboxStatus("other@pec.example.test", t0); ok || err != nil {
		t.Fatalf("unknown mailbox: %v %v", ok, err)
	}
	st.Close()
	wall.add(time.Minute)
	if _, _, err := cache.MailboxStatus(addr, t0); err == nil {
		t.Fatal("a closed store gave no error")
	}
}

// TestRegistryPasswordAndOptions: a new password and new options are
// stored with a log row that never holds the hash; bad options are
// refused before anything is written; a disabled mailbox gets no
// password.
func TestRegistryPasswordAndOptions(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			c := &clock{t: t0}
			r := newRegistry(st, c)
			const addr = "luca@pec.example.test"
			if _, err := r.Add(addr, "old", store.MailboxOptions{}, ""); err != nil {
				t.Fatal(err)
			}
			m, err := r.SetPassword(addr, "new", "richiesta del titolare")
			if err != nil || !CheckPassword(m.PasswordHash, "new") || CheckPassword(m.PasswordHash, "old") {
				t.Fatalf("SetPassword: %v", err)
			}
			opts := store.MailboxOptions{OrdinaryMail: "refuse", ForwardTo: "luca@example.com", ReceiptForm: "sintetica", QuotaBytes: 1 << 30}
			if _, err := r.SetOptions(addr, opts, ""); err != nil {
				t.Fatal(err)
			}
			for _, bad := range []store.MailboxOptions{{OrdinaryMail: "maybe"}, {ReceiptForm: "lunga"}, {QuotaBytes: -1}, {ForwardTo: "not an address"}} {
				if _, err := r.SetOptions(addr, bad, ""); err == nil {
					t.Errorf("SetOptions(%+v) accepted", bad)
				}
			}
			got, err := r.Get(addr)
			if err != nil || got.Options != opts || got.Version != 3 {
				t.Fatalf("read back %+v (%v)", got, err)
			}
			if _, err := r.Close(addr, ""); err != nil {
				t.Fatal(err)
			}
			c.add(31 * day)
			if _, err := r.SetPassword(addr, "again", ""); err == nil {
				t.Fatal("a disabled mailbox got a password")
			}
			evs, err := st.Events(store.Query{Point: "mailbox"})
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, e := range evs {
				types = append(types, string(e.Type))
				if strings.Contains(strings.Join(append(e.Related, e.Subject, e.Error), " "), "$2a$") {
					t.Fatalf("the log holds a password hash: %+v", e)
				}
			}
			if want := "mailbox-add mailbox-password mailbox-options mailbox-close"; strings.Join(types, " ") != want {
				t.Fatalf("log rows %v, want %s", types, want)
			}
		})
	}
}

// TestKeep: the periodic step writes the users file at once, removes a
// login when the read-only period ends without any command, and stops
// with its context.
func TestKeep(t *testing.T) {
	st := backends(t)["sqlite"](t)
	c := &clock{t: t0}
	r := newRegistry(st, c)
	const addr = "sara@pec.example.test"
	if _, err := r.Add(addr, "pw", store.MailboxOptions{}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Close(addr, ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Keep(ctx, path, 20*time.Millisecond); close(done) }()
	has := func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), addr+":")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("the closed mailbox never appeared in the users file", has)
	c.add(30 * day)
	waitFor("the login stayed after the read-only period", func() bool { return !has() })
	if m, _ := r.Get(addr); m.State != store.MailboxDisabled {
		t.Fatalf("state %s after Keep", m.State)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Keep did not stop with its context")
	}
}
