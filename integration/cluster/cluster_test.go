// Package cluster runs one provider as two nodes (two Postfix instances,
// each with its pecmilter and pecdeliver) sharing a real PostgreSQL store,
// and breaks things while mail flows: a node's daemons killed with
// SIGKILL, PostgreSQL restarted. Nothing may be lost or doubled.
package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/postgres"
	"github.com/pecgo/pec/timer"
)

const (
	domain = "pec-a.example.test"
	mario  = "mario.rossi@" + domain
	anna   = "anna.blu@" + domain
	luigi  = "luigi.verdi@" + domain
	paola  = "paola.neri@" + domain
)

// messages is the load: a few dozen, split over both nodes.
const messages = 30

type msg struct {
	i      int
	from   string
	rcpts  []string
	id     string // Message-ID
	ok     atomic.Bool
	tries  atomic.Int32
	lastEr atomic.Value
}

func (m *msg) raw() []byte {
	return []byte(fmt.Sprintf("From: %s\r\nTo: %s\r\nSubject: cluster %d\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nmessage %d of the cluster test\r\n",
		m.from, strings.Join(m.rcpts, ", "), m.i, m.id, m.i))
}

// TestClusterFaults: load over both nodes' submission ports; node 1's
// pecmilter and pecdeliver killed with SIGKILL and restarted, PostgreSQL
// restarted, in the middle. Afterwards every accepted message has exactly
// one acceptance and every certified recipient exactly one delivery
// receipt (in the log and in the sender's mailbox), a timer due on both
// nodes at once sent its notice once, and the log verifies. Then, with
// PostgreSQL down, both nodes tempfail.
func TestClusterFaults(t *testing.T) {
	testenv.NeedPostgres(t)
	w := pectest.NewWorld(t, domain)
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)

	// timers of two envelopes dispatched 24 h ago: due as soon as the
	// nodes start, on both at once
	st, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var timerIDs []string
	for i := 0; i < 2; i++ {
		subj := fmt.Sprint("timer ", i)
		tx := &build.Tx{ID: fmt.Sprintf("timer-%d@%s", i, domain), MsgID: fmt.Sprintf("<timer-%d@client.example.test>", i),
			Mittente: mario, Risposte: mario, Oggetto: &subj, Subject: subj, Ricevuta: daticert.Completa,
			Destinatari: []daticert.Destinatario{{Addr: "nobody@pec-z.example.test", Tipo: daticert.Certificato}}}
		track, err := timer.Track(tx, []string{"nobody@pec-z.example.test"}, time.Now().Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Commit(store.Txn{Track: track}); err != nil {
			t.Fatal(err)
		}
		timerIDs = append(timerIDs, tx.ID)
	}

	// Postfix retries deferred mail within seconds (pecdeliver or the
	// database down), not after the default 5 minutes
	fast := []string{"queue_run_delay = 1s", "minimal_backoff_time = 1s", "maximal_backoff_time = 2s"}
	n1 := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: domain, Users: []string{mario, anna, luigi, paola},
		StoreURL: url, PostfixMain: fast})
	n2 := w.AddNode(n1, "node2")
	w.Start()
	nodes := []*pectest.Provider{n1, n2}

	var load []*msg
	for i := 0; i < messages; i++ {
		m := &msg{i: i, from: []string{mario, anna}[i%2], id: fmt.Sprintf("<cluster-%d@client.example.test>", i)}
		m.rcpts = []string{luigi}
		if i%3 == 0 {
			m.rcpts = append(m.rcpts, paola)
		}
		load = append(load, m)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	var next atomic.Int32
	for c := 0; c < 3; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(load) {
					return
				}
				m := load[k]
				deadline := time.Now().Add(90 * time.Second)
				for try := 0; time.Now().Before(deadline); try++ {
					// a client behind a TCP balancer: alternate nodes
					node := nodes[(m.i+try)%2]
					m.tries.Add(1)
					err := node.Send(m.from, m.rcpts, m.raw())
					if err == nil {
						m.ok.Store(true)
						accepted.Add(1)
						break
					}
					m.lastEr.Store(err.Error())
					time.Sleep(300 * time.Millisecond)
				}
				time.Sleep(400 * time.Millisecond) // spread the load over the faults
			}
		}()
	}
	waitFor := func(n int32) {
		for deadline := time.Now().Add(60 * time.Second); accepted.Load() < n && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(messages / 3)
	t.Logf("%d accepted: kill -9 of node 1's pecmilter and pecdeliver", accepted.Load())
	n1.KillMilter()
	n1.KillDeliver()
	time.Sleep(2 * time.Second)
	n1.StartMilter()
	n1.StartDeliver()
	waitFor(2 * messages / 3)
	t.Logf("%d accepted: PostgreSQL restarted", accepted.Load())
	pg.Stop()
	time.Sleep(2 * time.Second)
	pg.Start(t)
	wg.Wait()
	var failed []string
	for _, m := range load {
		if !m.ok.Load() {
			failed = append(failed, fmt.Sprintf("%d (%d tries, last: %v)", m.i, m.tries.Load(), m.lastEr.Load()))
		}
	}
	if len(failed) > 0 {
		t.Fatalf("submissions never accepted: %v\nnode 1 pecmilter:\n%s", failed, tailLines(n1.ProcLog("pecmilter"), 30))
	}
	retried := 0
	for _, m := range load {
		if m.tries.Load() > 1 {
			retried++
		}
	}
	t.Logf("all %d messages accepted; %d needed more than one try", messages, retried)

	// The log is the legal record: per accepted message one acceptance
	// row; per certified recipient exactly one outcome, a delivery row or,
	// when the kill took pecdeliver between Dovecot's copy and its answer,
	// a consegna-non-confermata row and no receipt (lmtp's lost-outcome
	// choice, README); per due timer one notice row. The sender's mailbox
	// holds exactly one receipt (one Message-ID) per such row: the same
	// receipt may sit there twice when Postfix redelivered it after the
	// delivery point tempfailed (the database restarting), which is a
	// second copy, not a second receipt.
	count := func(typ store.EventType, by func(e store.Event) string) map[string]int {
		ev, err := st.Events(store.Query{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		c := map[string]int{}
		for _, e := range ev {
			c[by(e)]++
		}
		return c
	}
	byRcpt := func(e store.Event) string { return e.MsgID + " " + strings.Join(e.Recipients, ",") }
	type key struct {
		k       kind.Kind
		id, who string
	}
	var acc, dlv, unk, pre map[string]int
	var got map[key]int
	copies := 0
	deadline := time.Now().Add(90 * time.Second)
	for {
		acc = count("accettazione", func(e store.Event) string { return e.MsgID })
		dlv = count("avvenuta-consegna", byRcpt)
		unk = count("consegna-non-confermata", byRcpt)
		pre = count("preavviso-errore-consegna", func(e store.Event) string { return e.PECID })
		got = map[key]int{}
		ids := map[key]map[string]bool{}
		copies = 0
		for _, box := range []string{mario, anna} {
			for _, raw := range n1.Dovecot.Messages(t, box) {
				pm, err := parse.Parse(raw)
				if err != nil || pm.Daticert == nil {
					continue
				}
				k := key{pm.Kind, pm.Daticert.Msgid, pm.Daticert.Consegna}
				switch pm.Kind {
				case kind.Accettazione:
					k.who = ""
				case kind.PreavvisoErroreConsegna:
					k = key{pm.Kind, pm.Daticert.Identificativo, ""}
				}
				hm, err := mail.ReadMessage(bytes.NewReader(raw))
				if err != nil {
					t.Fatal(err)
				}
				if ids[k] == nil {
					ids[k] = map[string]bool{}
				}
				if id := hm.Header.Get("Message-ID"); ids[k][id] {
					copies++
				} else {
					ids[k][id] = true
					got[k]++
				}
			}
		}
		complete := true
		for _, m := range load {
			complete = complete && acc[m.id] > 0 && got[key{kind.Accettazione, m.id, ""}] > 0
			for _, r := range m.rcpts {
				o := m.id + " " + r
				complete = complete && dlv[o]+unk[o] > 0 && got[key{kind.AvvenutaConsegna, m.id, r}] >= dlv[o]
			}
		}
		for _, id := range timerIDs {
			complete = complete && got[key{kind.PreavvisoErroreConsegna, id, ""}] > 0
		}
		if complete || time.Now().After(deadline) {
			break
		}
		// what Postfix deferred while a pecdeliver or the database was
		// down goes at its next retry; do not wait for Postfix's schedule
		for _, n := range nodes {
			n.Postfix.Flush()
		}
		time.Sleep(time.Second)
	}
	lost := 0
	for _, m := range load {
		if acc[m.id] != 1 || got[key{kind.Accettazione, m.id, ""}] != 1 {
			t.Errorf("message %d: %d acceptance rows in the log and %d acceptances in the mailbox, want 1 and 1",
				m.i, acc[m.id], got[key{kind.Accettazione, m.id, ""}])
		}
		for _, r := range m.rcpts {
			o := m.id + " " + r
			if dlv[o]+unk[o] != 1 {
				t.Errorf("message %d to %s: %d delivery and %d unconfirmed rows in the log, want one outcome", m.i, r, dlv[o], unk[o])
			}
			if g := got[key{kind.AvvenutaConsegna, m.id, r}]; g != dlv[o] {
				t.Errorf("message %d to %s: %d delivery receipts in the mailbox for %d delivery rows", m.i, r, g, dlv[o])
			}
			lost += unk[o]
		}
	}
	for _, id := range timerIDs {
		if pre[id] != 1 || got[key{kind.PreavvisoErroreConsegna, id, ""}] != 1 {
			t.Errorf("timer %s: %d notice rows and %d notices in the mailbox, want 1 and 1 (both nodes run timers)",
				id, pre[id], got[key{kind.PreavvisoErroreConsegna, id, ""}])
		}
	}
	for k, n := range got {
		switch k.k {
		case kind.Accettazione, kind.AvvenutaConsegna, kind.PreavvisoErroreConsegna, kind.PresaInCarico:
		default:
			t.Errorf("unexpected %s of %s %s (%d) in the sender's mailbox", k.k, k.id, k.who, n)
		}
	}
	t.Logf("outcomes lost to the kill (consegna-non-confermata, no receipt): %d; receipts redelivered by Postfix: %d", lost, copies)
	for _, n := range nodes {
		if out, code := n.Pecctl("log", "verify"); code != 0 || !strings.Contains(out, "log intact") {
			t.Errorf("pecctl log verify on %s: %d %s", n.Dir, code, out)
		}
	}
	if t.Failed() {
		if dir := os.Getenv("PEC_KEEP_LOGS"); dir != "" {
			for i, n := range nodes {
				for _, p := range []string{"pecmilter", "pecdeliver"} {
					os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d-%s.log", i+1, p)), []byte(n.ProcLog(p)), 0o644)
				}
				os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d-postfix.log", i+1)), []byte(n.Postfix.Log()), 0o644)
			}
		}
		return
	}

	// PostgreSQL unreachable: every node tempfails (fail closed)
	pg.Stop()
	for i, n := range nodes {
		m := &msg{i: 1000 + i, from: mario, rcpts: []string{luigi}, id: fmt.Sprintf("<down-%d@client.example.test>", i)}
		err := n.Send(m.from, m.rcpts, m.raw())
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code < 400 || se.Code > 499 {
			t.Errorf("node %d with the database down: %v, want a 4xx tempfail", i+1, err)
		}
	}
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
