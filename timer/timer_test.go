package timer_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/pecgo/pec/store/sqlite"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/timer"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	paolo = "paolo@mail.example.org"
)

type bench struct {
	t     *testing.T
	path  string
	st    *sqlite.Store
	prov  *build.Provider
	pki   *testpki.PKI
	clock time.Time
	tx    *build.Tx
}

func newBench(t *testing.T) *bench {
	pki := testpki.New("pec-a.example.test")
	id := pki.Issue("Provider A S.p.A.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	b := &bench{t: t, path: filepath.Join(t.TempDir(), "pec.db"), pki: pki, clock: t0,
		prov: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}}
	b.open()
	subj := "contratto"
	b.tx = &build.Tx{ID: "pec1@pec-a.example.test", MsgID: "<m1@client.example.test>", Mittente: mario, Risposte: mario,
		Oggetto: &subj, Subject: subj, Ricevuta: daticert.Completa,
		Destinatari: []daticert.Destinatario{{Addr: luigi, Tipo: daticert.Certificato}, {Addr: paolo, Tipo: daticert.Esterno}}}
	track, err := timer.Track(b.tx, []string{luigi, paolo}, t0)
	if err != nil || len(track) != 1 || track[0].Rcpt != luigi {
		t.Fatalf("Track: %v %+v (only the certified recipient is tracked)", err, track)
	}
	if err := b.st.Commit(store.Txn{Track: track}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *bench) open() {
	st, err := sqlite.Open(b.path)
	if err != nil {
		b.t.Fatal(err)
	}
	b.st = st
	b.t.Cleanup(func() { st.Close() })
}

// at runs the timers with the clock at t0+d and returns the notices queued.
func (b *bench) at(d time.Duration) []*parse.Message {
	b.t.Helper()
	b.clock = t0.Add(d)
	before, _ := b.st.OutboxDepth()
	r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return b.clock }}
	if _, err := r.RunOnce(context.Background()); err != nil {
		b.t.Fatal(err)
	}
	items, err := b.st.DuePending(b.clock.Add(time.Hour), 1000)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []*parse.Message
	for _, it := range items[before:] {
		m, err := parse.Parse(it.Data)
		if err != nil {
			b.t.Fatal(err)
		}
		m.Content = it.Data
		out = append(out, m)
	}
	return out
}

func (b *bench) mark(what store.MarkKind, d time.Duration) {
	b.t.Helper()
	if err := b.st.Commit(store.Txn{Marks: []store.Mark{{PECID: b.tx.ID, Rcpt: luigi, What: what, At: t0.Add(d)}}}); err != nil {
		b.t.Fatal(err)
	}
}

func (b *bench) want(got []*parse.Message, final ...bool) {
	b.t.Helper()
	if len(got) != len(final) {
		b.t.Fatalf("at %v: %d notices, want %d", b.clock.Sub(t0), len(got), len(final))
	}
	for i, m := range got {
		if m.Kind != kind.PreavvisoErroreConsegna || m.Daticert.Consegna != luigi || m.Daticert.Identificativo != b.tx.ID {
			b.t.Fatalf("notice %s consegna %s", m.Kind, m.Daticert.Consegna)
		}
		is24 := strings.Contains(m.Daticert.ErroreEsteso, "24 ore")
		if is24 != final[i] {
			b.t.Fatalf("at %v: notice %q, want final=%v", b.clock.Sub(t0), m.Daticert.ErroreEsteso, final[i])
		}
		if tm, _ := m.Daticert.Time(); !tm.Equal(b.clock) {
			b.t.Fatalf("notice time %v, want the run instant %v", tm, b.clock)
		}
	}
}

func TestTakeChargeButNoDelivery(t *testing.T) {
	b := newBench(t)
	b.mark(store.MarkPresa, time.Hour)
	b.want(b.at(12 * time.Hour))
	b.want(b.at(22*time.Hour + 59*time.Minute))
	got := b.at(23 * time.Hour)
	b.want(got, true)
	conformance.Check(t, "preavviso-24h", got[0].Content, testpki.PEM(b.pki.Root.Cert))
	b.want(b.at(30 * time.Hour))
}

func TestNoTakeChargeDeliveryAfter12h(t *testing.T) {
	b := newBench(t)
	b.want(b.at(11*time.Hour + 59*time.Minute))
	got := b.at(12 * time.Hour)
	b.want(got, false)
	conformance.Check(t, "preavviso-12h", got[0].Content, testpki.PEM(b.pki.Root.Cert))
	b.mark(store.MarkConsegna, 15*time.Hour)
	b.want(b.at(23 * time.Hour))
	b.want(b.at(48 * time.Hour))
}

func TestNeither(t *testing.T) {
	b := newBench(t)
	b.want(b.at(12*time.Hour), false)
	b.want(b.at(13 * time.Hour))
	b.want(b.at(23*time.Hour), true)
	b.want(b.at(25 * time.Hour))
	st, _ := b.st.Tracking(b.tx.ID)
	if len(st) != 1 || st[0].Notice12.IsZero() || st[0].Notice24.IsZero() {
		t.Fatalf("tracking state %+v", st)
	}
}

func TestDeliveredInTime(t *testing.T) {
	b := newBench(t)
	b.mark(store.MarkPresa, time.Minute)
	b.mark(store.MarkConsegna, 2*time.Minute)
	b.want(b.at(12 * time.Hour))
	b.want(b.at(24 * time.Hour))
}

// A non-delivery notice ends tracking (our choice, PEC-SPEC §6.6 rule 4).
func TestNonDeliveryEndsTracking(t *testing.T) {
	b := newBench(t)
	b.mark(store.MarkErrore, time.Hour)
	b.want(b.at(12 * time.Hour))
	b.want(b.at(24 * time.Hour))
}

func TestRestartBetween12And24(t *testing.T) {
	b := newBench(t)
	b.want(b.at(12*time.Hour), false)
	b.st.Close()
	b.open() // a new process: state comes from the database
	b.want(b.at(13 * time.Hour))
	b.want(b.at(23*time.Hour), true)
	b.st.Close()
	b.open()
	b.want(b.at(23*time.Hour + time.Minute))
}

// After an outage longer than the final deadline only the final notice goes.
func TestLateRunSendsOnlyTheFinalNotice(t *testing.T) {
	b := newBench(t)
	b.want(b.at(30*time.Hour), true)
	b.want(b.at(31 * time.Hour))
}

// A mark for an envelope we never sent (another provider's) changes nothing.
func TestUnknownMarkIgnored(t *testing.T) {
	b := newBench(t)
	if err := b.st.Commit(store.Txn{Marks: []store.Mark{{PECID: "other@pec-b.example.test", Rcpt: luigi, What: store.MarkConsegna, At: t0}}}); err != nil {
		t.Fatal(err)
	}
	b.want(b.at(12*time.Hour), false)
}

// A tracking row whose notice cannot be built does not hold back the
// others; it is reported and stays due.
func TestBadRowDoesNotBlock(t *testing.T) {
	b := newBench(t)
	if err := b.st.Commit(store.Txn{Track: []store.Tracked{{PECID: "pec0@pec-a.example.test", Rcpt: luigi, Sent: t0.Add(-time.Minute), Tx: []byte("{not json")}}}); err != nil {
		t.Fatal(err)
	}
	b.clock = t0.Add(12 * time.Hour)
	r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return b.clock }}
	n, err := r.RunOnce(context.Background())
	if n != 1 || err == nil {
		t.Fatalf("RunOnce = %d, %v; want the good notice sent and the bad row reported", n, err)
	}
	if due, _ := dueNow(b.st, b.clock); len(due) != 1 || due[0].PECID != "pec0@pec-a.example.test" {
		t.Fatalf("due after the pass: %+v", due)
	}
}

// More bad rows than one query window still do not starve a good one.
func TestManyBadRowsDoNotStarve(t *testing.T) {
	b := newBench(t)
	var bad []store.Tracked
	for i := 0; i < 150; i++ {
		bad = append(bad, store.Tracked{PECID: fmt.Sprintf("pec%03d@pec-a.example.test", i), Rcpt: luigi, Sent: t0.Add(-time.Hour), Tx: []byte("{")})
	}
	if err := b.st.Commit(store.Txn{Track: bad}); err != nil {
		t.Fatal(err)
	}
	b.clock = t0.Add(23 * time.Hour)
	r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return b.clock }}
	n, err := r.RunOnce(context.Background())
	if n != 1 || err == nil {
		t.Fatalf("RunOnce = %d, %v; want the good row's notice despite 150 bad rows", n, err)
	}
}

// An acceptance held for a message Postfix never queued: no timer notice
// ever, and after the held timeout it is dropped with its timer rows.
func TestHeldNeverQueued(t *testing.T) {
	b := newBench(t)
	subj := "mai accodato"
	tx := &build.Tx{ID: "pec2@pec-a.example.test", MsgID: "<m2@client.example.test>", Mittente: mario, Risposte: mario,
		Oggetto: &subj, Subject: subj, Destinatari: []daticert.Destinatario{{Addr: luigi, Tipo: daticert.Certificato}}}
	track, err := timer.Track(tx, []string{luigi}, t0)
	if err != nil {
		t.Fatal(err)
	}
	ev := store.Event{Time: t0, Point: "access", Type: "accettazione", PECID: tx.ID, Sender: mario, Recipients: []string{luigi}}
	if err := b.st.HoldUntilQueued("0123456789abcdef0123456789abcdef", "QX1", t0, store.Txn{Events: []store.Event{ev}, Track: track}); err != nil {
		t.Fatal(err)
	}
	// the tracked envelope of newBench gets its notices; the held one none
	for _, n := range b.at(25 * time.Hour) {
		if n.Daticert.Identificativo == tx.ID {
			t.Fatalf("a timer notice for an acceptance Postfix never confirmed: %s", n.Kind)
		}
	}
	r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return t0.Add(24 * time.Hour) }}
	if n, err := r.DropUnqueued(); err != nil || n != 0 {
		t.Fatalf("dropped %d before the timeout: %v", n, err)
	}
	r.Now = func() time.Time { return t0.Add(timer.DefaultHeldTimeout + time.Second) }
	if n, err := r.DropUnqueued(); err != nil || n != 1 {
		t.Fatalf("dropped %d after the timeout: %v", n, err)
	}
	if rows, _ := b.st.Tracking(tx.ID); len(rows) != 0 {
		t.Fatalf("timer rows left: %+v", rows)
	}
	if evs, _ := b.st.Events(store.Query{PECID: tx.ID}); len(evs) != 0 {
		t.Fatalf("log rows for mail never queued: %+v", evs)
	}
}

// TestTwoRunnersOneNotice: two runners (two nodes' pecmilter) on one store
// that find the same due timer at the same time queue its notice once: the
// notice's mark is committed with Once, and the runner that comes second
// writes nothing.
func TestTwoRunnersOneNotice(t *testing.T) {
	b := newBench(t)
	b.clock = t0.Add(23 * time.Hour)
	due, err := dueNow(b.st, b.clock)
	if err != nil || len(due) != 1 {
		t.Fatalf("due timers: %v %+v", err, due)
	}
	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &timer.Runner{Store: b.st, Provider: b.prov, Now: func() time.Time { return b.clock }}
			counts[i], errs[i] = r.RunOnce(context.Background())
		}()
	}
	wg.Wait()
	total := 0
	for i := range counts {
		if errs[i] != nil {
			t.Fatalf("runner %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	if total != 1 {
		t.Fatalf("runners queued %v notices in all, want 1", counts)
	}
	if n, _ := b.st.OutboxDepth(); n != 1 {
		t.Fatalf("outbox holds %d notices, want 1", n)
	}
	if ev, _ := b.st.Events(store.Query{Type: "preavviso-errore-consegna"}); len(ev) != 1 {
		t.Fatalf("%d notice rows in the log, want 1", len(ev))
	}
	// a Once mark already recorded fails the whole commit
	err = b.st.Commit(store.Txn{
		Events: []store.Event{{Time: b.clock, Point: "timer", Type: "x"}},
		Marks:  []store.Mark{{PECID: b.tx.ID, Rcpt: luigi, What: store.MarkNotice24, At: b.clock, Once: true}}})
	if !errors.Is(err, store.ErrMarked) {
		t.Fatalf("second Once mark: %v, want ErrMarked", err)
	}
	if ev, _ := b.st.Events(store.Query{Type: "x"}); len(ev) != 0 {
		t.Fatal("a commit refused with ErrMarked wrote its log row")
	}
}

// dueNow lists the open rows whose notice is due at now under the default
// deadlines (timer.EachDue).
func dueNow(st timer.OpenTimers, now time.Time) ([]store.Timer, error) {
	var out []store.Timer
	err := timer.EachDue(st, now, 0, 0, 1000, func(t store.Timer, _ timer.Notice) error {
		out = append(out, t)
		return nil
	})
	return out, err
}

// The rule itself: which notice is due when (RFC 6109 §3.1.6).
func TestDue(t *testing.T) {
	sent := t0
	for _, c := range []struct {
		name            string
		after           time.Duration
		presa, notice12 bool
		want            timer.Notice
	}{
		{"before 12 h", 12*time.Hour - time.Second, false, false, timer.NoNotice},
		{"at 12 h", 12 * time.Hour, false, false, timer.Notice12},
		{"at 12 h, taken in charge", 12 * time.Hour, true, false, timer.NoNotice},
		{"warning already sent", 20 * time.Hour, false, true, timer.NoNotice},
		{"at the final deadline", timer.DefaultFinal, true, true, timer.Notice24},
		{"both due after an outage: only the final", 30 * time.Hour, false, false, timer.Notice24},
	} {
		got := timer.Due(store.Timer{Sent: sent, Presa: c.presa, Notice12: c.notice12}, sent.Add(c.after), timer.DefaultWarn, timer.DefaultFinal)
		if got != c.want {
			t.Errorf("%s: notice %d, want %d", c.name, got, c.want)
		}
	}
}
