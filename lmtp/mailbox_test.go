package lmtp_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/deliverytest"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/mailbox"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

// TestServerClosedMailbox: the delivery point in front of a real Dovecot,
// with the registry in a real store: the envelope reaches the active
// mailbox and not the closed one, whose sender gets a non-delivery notice
// from the outbox.
func TestServerClosedMailbox(t *testing.T) {
	b := deliverytest.New(t)
	luigi, carla, mario := deliverytest.Luigi, deliverytest.Carla, deliverytest.Mario
	dc := testenv.StartDovecot(t, []testenv.DovecotUser{{Addr: luigi, Password: "pw"}, {Addr: carla, Password: "pw"}})
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mailbox.Cost = 4
	reg := &mailbox.Registry{Store: st, Provider: b.B.Name, Clock: func() time.Time { return at.Add(-time.Hour) }}
	for _, a := range []string{luigi, carla} {
		if _, err := reg.Add(a, "pw", store.MailboxOptions{}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Close(luigi, "fine contratto"); err != nil {
		t.Fatal(err)
	}
	b.D.Mailboxes = &mailbox.Cache{Store: st}
	srv := &lmtp.Server{Delivery: b.D, Store: st, Dovecot: "inet:" + dc.LMTPAddr, Timeout: 10 * time.Second, Now: func() time.Time { return at }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	r := &rig{b: b, st: st, addr: ln.Addr().String()}

	codes := r.send(t, mario, []string{luigi, carla}, b.Envelope(t, b.A, "", luigi, carla))
	if codes[luigi] != 250 || codes[carla] != 250 {
		t.Fatalf("LMTP answers %v", codes)
	}
	dc.WaitMessages(t, carla, 1, 5*time.Second)
	if n := dc.Count(luigi); n != 0 {
		t.Fatalf("the closed mailbox got %d message(s)", n)
	}
	items, err := st.DuePending(at.Add(time.Hour), 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range items {
		p, err := parse.Parse(it.Data)
		if err != nil {
			t.Fatal(err)
		}
		got[p.Daticert.Consegna] = string(p.Kind)
		if p.Kind == kind.ErroreConsegna && (it.Rcpts[0] != mario || !strings.Contains(p.Daticert.ErroreEsteso, "disabilitata")) {
			t.Errorf("non-delivery notice to %v: %q", it.Rcpts, p.Daticert.ErroreEsteso)
		}
	}
	if got[luigi] != string(kind.ErroreConsegna) || got[carla] != string(kind.AvvenutaConsegna) {
		t.Fatalf("notices in the outbox: %v", got)
	}
	evs, err := st.Events(store.Query{Point: "delivery", Type: "errore-consegna"})
	if err != nil || len(evs) != 1 || evs[0].Recipients[0] != luigi {
		t.Fatalf("log rows %+v %v", evs, err)
	}
}
