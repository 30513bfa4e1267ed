package mailbox

import (
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
)

// TestDovecotLogin: a real Dovecot reading the users file the registry
// writes. An IMAP login works after add, still works after close within
// the read-only period, fails after it (the clock moved past it), and
// the closed address cannot be added again.
func TestDovecotLogin(t *testing.T) {
	d := testenv.StartDovecot(t, nil)
	st := backends(t)["sqlite"](t)
	c := &clock{t: t0}
	r := newRegistry(st, c)
	Cost = 10 // a real cost: what Dovecot checks in production
	sync := func() {
		t.Helper()
		if _, err := r.SyncFile(d.UsersFile); err != nil {
			t.Fatal(err)
		}
		// Dovecot looks at the file again at most once a second
		time.Sleep(1100 * time.Millisecond)
	}
	const addr, pw = "giulia.neri@pec.example.test", "correct horse"
	if err := d.IMAPLogin(addr, pw); err == nil {
		t.Fatal("login before add")
	}
	if _, err := r.Add(addr, pw, store.MailboxOptions{QuotaBytes: 1 << 20}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Add("other@pec.example.test", "other pw", store.MailboxOptions{}, ""); err != nil {
		t.Fatal(err)
	}
	sync()
	if err := d.IMAPLogin(addr, pw); err != nil {
		t.Fatalf("login after add: %v", err)
	}
	if err := d.IMAPLogin(strings.ToUpper(addr), pw); err != nil {
		t.Fatalf("login with the address in upper case: %v", err)
	}
	if err := d.IMAPLogin(addr, "wrong"); err == nil {
		t.Fatal("login with a wrong password")
	}

	c.add(time.Hour)
	if _, err := r.Close(addr, "fine contratto"); err != nil {
		t.Fatal(err)
	}
	sync()
	if err := d.IMAPLogin(addr, pw); err != nil {
		t.Fatalf("login after close, within the read-only period: %v", err)
	}
	if _, err := r.Add(addr, "new holder", store.MailboxOptions{}, ""); err == nil || !strings.Contains(err.Error(), "never reassigned") {
		t.Fatalf("add of a closed address: %v", err)
	}

	c.add(30*day - time.Second)
	sync()
	if err := d.IMAPLogin(addr, pw); err != nil {
		t.Fatalf("login one second before the end of the read-only period: %v", err)
	}
	c.add(time.Second)
	sync()
	if err := d.IMAPLogin(addr, pw); err == nil {
		t.Fatal("login after the read-only period")
	}
	if got, _ := r.Get(addr); got.State != store.MailboxDisabled {
		t.Fatalf("after the period the registry says %s", got.State)
	}
	if err := d.IMAPLogin("other@pec.example.test", "other pw"); err != nil {
		t.Fatalf("the other mailbox lost its login: %v", err)
	}
	if _, err := r.Add(addr, "new holder", store.MailboxOptions{}, ""); err == nil || !strings.Contains(err.Error(), "never reassigned") {
		t.Fatalf("add of a disabled address: %v", err)
	}
}
