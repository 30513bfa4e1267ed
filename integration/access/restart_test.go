package access

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/kind"
)

// mute is a TCP listener that accepts connections and never answers: an
// outbox sender talking to it holds its claimed items until it gives up.
func mute(t *testing.T) (addr string, accepted <-chan struct{}) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), ch
}

// The daemon holding the acceptance receipt killed with SIGKILL (both
// outbox senders are stuck on a listener that never answers; pecdeliver
// runs, as it makes the held acceptance effective once Postfix queued the
// envelope): started again, the receipt leaves at once instead of after
// the 10-minute lease.
func TestKilledMilterSendsHeldReceiptOnRestart(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test", "pec-b.example.test")
	sink := pectest.StartSink(t)
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario}, SinkAll: sink})
	w.Add(pectest.Spec{Name: "Provider B S.p.A.", Domain: "pec-b.example.test", IndexOnly: true})
	w.Start()

	muteAddr, accepted := mute(t)
	a.KillDeliver()
	a.StopMilter()
	a.WriteConfig(muteAddr)
	a.StartMilter()
	a.StartDeliver()

	const subj = "held receipt"
	if err := a.Send(mario, []string{luigi}, message(mario, luigi, "", "", subj, "x")); err != nil {
		t.Fatalf("submission refused: %v", err)
	}
	env := sink.Wait(t, 1, 30*time.Second, subjectHas(subj))
	if kindOf(env[0]) != kind.PostaCertificata {
		t.Fatalf("first message relayed is %s, want the transport envelope", kindOf(env[0]))
	}
	select {
	case <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("no outbox sender ever connected to the re-injection address")
	}
	holders, err := a.Store().ClaimHolders()
	if err != nil || len(holders) != 1 || holders[0].Items != 1 ||
		!strings.HasPrefix(holders[0].Instance, "pecmilter-") && !strings.HasPrefix(holders[0].Instance, "pecdeliver-") {
		t.Fatalf("claims in force = %+v, %v; want one daemon holding the acceptance", holders, err)
	}

	a.KillMilter()
	a.KillDeliver()
	a.WriteConfig(a.ReinjectAddr)
	restarted := time.Now()
	a.StartMilter()
	a.StartDeliver()
	got := sink.Wait(t, 2, 30*time.Second, subjectHas(subj))
	var acc int
	for _, m := range got {
		if kindOf(m) == kind.Accettazione {
			acc++
		}
	}
	if acc != 1 || len(got) != 2 {
		t.Fatalf("after the restart: %d messages, %d acceptances; want the envelope and one acceptance", len(got), acc)
	}
	t.Logf("held acceptance relayed %v after the restart (held by %s)", time.Since(restarted).Round(time.Millisecond), holders[0].Instance)
	const released = "released the items claimed by a dead sender"
	if !strings.Contains(a.ProcLog("pecmilter"), released) && !strings.Contains(a.ProcLog("pecdeliver"), released) {
		t.Errorf("the release is in neither daemon's log")
	}
}
