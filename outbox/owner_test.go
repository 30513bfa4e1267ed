package outbox

import (
	"context"
	"github.com/pecgo/pec/store/sqlite"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// startVictim starts a process that stands for a sender and returns its
// claim owner and a function that kills it with SIGKILL (a crash).
func startVictim(t *testing.T) (store.ClaimOwner, func()) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a child process: %v", err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			cmd.Process.Kill()
			cmd.Wait()
		}
	}
	t.Cleanup(kill)
	o := ThisProcess()
	o.PID = cmd.Process.Pid
	o.Instance = "pecmilter-previous"
	o.Proc = ""
	if p, ok := procOf(o.PID); ok {
		o.Proc = p.String()
	}
	return o, kill
}

func claimAs(t *testing.T, st *sqlite.Store, o store.ClaimOwner, at time.Time, want int) {
	t.Helper()
	items, err := st.Claim(o, at, claimLease, 10)
	if err != nil || len(items) != want {
		t.Fatalf("Claim as %s = %d items, %v; want %d", o.Instance, len(items), err, want)
	}
}

// A sender killed while it held items: the next sender on the host sends
// them in its first pass, not when the lease ends. While the holder lives,
// its items are left alone.
func TestRestartSendsDeadSendersClaimsAtOnce(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	clk := &clock{t: t0}
	a, b := receipt(1), receipt(2)
	commit(t, st, a, b)
	victim, kill := startVictim(t)
	claimAs(t, st, victim, clk.Now(), 2)

	// the holder is alive: a new sender does not take its items
	snd, logs := newSender(t, st, k.addr, clk)
	if n, err := snd.DrainOnce(context.Background()); n != 0 || err != nil {
		t.Fatalf("DrainOnce with the holder alive = %d, %v; want 0, nil", n, err)
	}
	if !strings.Contains(logs.String(), "may be alive") {
		t.Errorf("the live holder is not logged:\n%s", logs)
	}

	kill()
	clk.Advance(time.Second) // far less than the lease
	snd, logs = newSender(t, st, k.addr, clk)
	if n, err := snd.DrainOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("DrainOnce after the holder died = %d, %v; want 2, nil", n, err)
	}
	checkOnce(t, k, a, b)
	if l := logs.String(); !strings.Contains(l, "released the items claimed by a dead sender") ||
		!strings.Contains(l, `"reason":"no process with that PID"`) || !strings.Contains(l, `"released":2`) {
		t.Errorf("release not logged with its reason:\n%s", l)
	}
	if h, err := st.ClaimHolders(); err != nil || len(h) != 0 {
		t.Errorf("claims in force after the pass: %+v, %v", h, err)
	}
}

// Which holders are dead, as seen by a sender on the same host.
func TestDeadOwner(t *testing.T) {
	self := ThisProcess()
	p, ok := procOf(self.PID)
	if !ok {
		t.Skip("no /proc process table")
	}
	victim, kill := startVictim(t)
	otherBoot, reused, otherNS := p, p, p
	otherBoot.boot = "00000000-0000-0000-0000-000000000000"
	reused.start++
	otherNS.pidns = "pid:[1]"
	prev := self
	prev.Instance = "pecmilter-previous"
	with := func(o store.ClaimOwner, f func(*store.ClaimOwner)) store.ClaimOwner { f(&o); return o }

	cases := []struct {
		name string
		o    store.ClaimOwner
		dead bool
	}{
		{"itself", self, false},
		{"live process", victim, false},
		{"another host", with(victim, func(o *store.ClaimOwner) { o.Host += ".elsewhere"; o.Proc = ""; o.PID = 1 << 30 }), false},
		{"another PID namespace", with(prev, func(o *store.ClaimOwner) { o.Proc = otherNS.String(); o.PID = 1 << 30 }), false},
		{"previous run under our PID (container)", with(prev, func(o *store.ClaimOwner) { o.Proc = reused.String() }), true},
		{"previous run, identity unknown", with(prev, func(o *store.ClaimOwner) { o.Proc = "" }), true},
		{"previous boot", with(prev, func(o *store.ClaimOwner) { o.Proc = otherBoot.String() }), true},
		{"PID not in use", with(prev, func(o *store.ClaimOwner) { o.PID = 1 << 30; o.Proc = "" }), true},
	}
	for _, c := range cases {
		if dead, why := deadOwner(self, c.o); dead != c.dead || dead && why == "" {
			t.Errorf("%s: deadOwner = %v %q, want %v", c.name, dead, why, c.dead)
		}
	}
	kill()
	if dead, _ := deadOwner(self, victim); !dead {
		t.Error("killed process: not seen as dead")
	}
}

// Claims of a sender on another host wait for their lease: nothing tells
// us from here that it is dead.
func TestOtherHostsClaimsWaitForTheLease(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	clk := &clock{t: t0}
	a := receipt(1)
	commit(t, st, a)
	o := store.ClaimOwner{Host: "other." + hostname(t), PID: 1 << 30, Instance: "pecdeliver-elsewhere"}
	claimAs(t, st, o, clk.Now(), 1)

	snd, _ := newSender(t, st, k.addr, clk)
	if n, err := snd.DrainOnce(context.Background()); n != 0 || err != nil {
		t.Fatalf("DrainOnce = %d, %v; want 0 (held by the other host)", n, err)
	}
	clk.Advance(claimLease)
	if n, err := snd.DrainOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("DrainOnce after the lease = %d, %v; want 1", n, err)
	}
	checkOnce(t, k, a)
}

func hostname(t *testing.T) string {
	h, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	return h
}
