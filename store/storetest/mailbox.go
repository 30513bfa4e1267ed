package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

func mailboxEvent(at time.Time, typ store.EventType, addr string) store.Event {
	return store.Event{Time: at, Point: store.AtMailbox, Type: typ, Recipients: []string{addr}, Provider: "Example PEC S.p.A."}
}

// testMailboxes: the registry keeps rows with their log rows, refuses a
// second registration of an address in any state, and writes an update
// only over the version it read.
func testMailboxes(t *testing.T, open func() store.Store) {
	a, b := open(), open()
	m := store.Mailbox{Address: "anna.bianchi@pec.example.test", State: store.MailboxActive, Created: t0, Changed: t0,
		PasswordHash: "{BLF-CRYPT}$2a$04$abc", Options: store.MailboxOptions{OrdinaryMail: "refuse", ForwardTo: "anna@example.com", ReceiptForm: "breve", QuotaBytes: 1 << 20}}
	must(t, a.CreateMailbox(m, mailboxEvent(t0, "mailbox-add", m.Address)))

	got, ok, err := b.Mailbox("Anna.Bianchi@PEC.example.test")
	must(t, err)
	want := m
	want.Version = 1
	want.Created, want.Changed = t0.UTC(), t0.UTC()
	if !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("Mailbox = %+v, %v; want %+v", got, ok, want)
	}
	if _, ok, err := b.Mailbox("nobody@pec.example.test"); err != nil || ok {
		t.Fatalf("unknown mailbox: ok=%v err=%v", ok, err)
	}

	// close it; a second registration is refused and writes nothing
	closed := got
	closed.State, closed.Closed, closed.Changed = store.MailboxClosed, t0.Add(time.Hour), t0.Add(time.Hour)
	must(t, b.UpdateMailbox(closed, mailboxEvent(t0.Add(time.Hour), "mailbox-close", m.Address)))
	head, _, err := a.LogHead()
	must(t, err)
	if err := a.CreateMailbox(m, mailboxEvent(t0.Add(2*time.Hour), "mailbox-add", m.Address)); !errors.Is(err, store.ErrMailboxExists) {
		t.Fatalf("second CreateMailbox: %v, want ErrMailboxExists", err)
	}
	// an update over a stale version is refused and writes nothing
	stale := got
	stale.State = store.MailboxActive
	if err := a.UpdateMailbox(stale, mailboxEvent(t0.Add(2*time.Hour), "mailbox-reopen", m.Address)); !errors.Is(err, store.ErrMailboxChanged) {
		t.Fatalf("stale UpdateMailbox: %v, want ErrMailboxChanged", err)
	}
	if err := a.UpdateMailbox(store.Mailbox{Address: "ghost@pec.example.test", State: store.MailboxActive, Created: t0, Changed: t0, Version: 1},
		mailboxEvent(t0, "mailbox-suspend", "ghost@pec.example.test")); !errors.Is(err, store.ErrMailboxChanged) {
		t.Fatalf("UpdateMailbox of an unknown address: %v, want ErrMailboxChanged", err)
	}
	if h2, _, err := a.LogHead(); err != nil || h2 != head {
		t.Fatalf("refused changes wrote log rows: head %d -> %d (%v)", head, h2, err)
	}
	// a row that breaks the contract is refused before anything is written
	bad := m
	bad.Address = "Upper@pec.example.test"
	if err := a.CreateMailbox(bad, mailboxEvent(t0, "mailbox-add", bad.Address)); err == nil {
		t.Fatal("CreateMailbox took an address that is not lower case")
	}

	m2 := store.Mailbox{Address: "a.verdi@pec.example.test", State: store.MailboxActive, Created: t0, Changed: t0}
	must(t, b.CreateMailbox(m2, mailboxEvent(t0.Add(3*time.Hour), "mailbox-add", m2.Address)))
	list, err := a.ListMailboxes()
	must(t, err)
	if len(list) != 2 || list[0].Address != m2.Address || list[1].Address != m.Address {
		t.Fatalf("ListMailboxes = %+v", list)
	}
	if list[1].State != store.MailboxClosed || !list[1].Closed.Equal(t0.Add(time.Hour)) || list[1].Version != 2 {
		t.Fatalf("closed row read back as %+v", list[1])
	}
	evs, err := a.Events(store.Query{Point: "mailbox"})
	must(t, err)
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	if !reflect.DeepEqual(types, []string{"mailbox-add", "mailbox-close", "mailbox-add"}) {
		t.Fatalf("mailbox log rows = %v", types)
	}
	mustVerify(t, a)
}

// testMailboxRace: nodes registering the same address at once: exactly
// one succeeds, the others get ErrMailboxExists, and the log has one row.
func testMailboxRace(t *testing.T, open func() store.Store) {
	nodes := []store.Store{open(), open()}
	const addr = "conteso@pec.example.test"
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			m := store.Mailbox{Address: addr, State: store.MailboxActive, Created: t0, Changed: t0, PasswordHash: fmt.Sprintf("{BLF-CRYPT}%d", i)}
			errs[i] = nodes[i%2].CreateMailbox(m, mailboxEvent(t0, "mailbox-add", addr))
		}(i)
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrMailboxExists):
			t.Errorf("CreateMailbox: %v", err)
		}
	}
	evs, err := nodes[0].Events(store.Query{Point: "mailbox"})
	must(t, err)
	if ok != 1 || len(evs) != 1 {
		t.Fatalf("%d registrations succeeded, %d log rows; want 1 and 1", ok, len(evs))
	}
	mustVerify(t, nodes[1])
}
