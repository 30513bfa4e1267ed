package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pecgo/pec/store/sqlite"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/store"
)

// ---- SMTP sink on loopback ----

type received struct {
	From  string
	Rcpts []string
	Data  []byte
}

type sink struct {
	mu       sync.Mutex
	msgs     []received
	attempts int // DATA transfers seen, accepted or not
	// reply decides the answer to DATA; nil accepts.
	reply func(data []byte) error
	srv   *smtp.Server
	addr  string
}

func startSink(t *testing.T, addr string) *sink {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	k := &sink{addr: ln.Addr().String()}
	k.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{k: k}, nil
	}))
	k.srv.Domain = "sink.test"
	k.srv.ErrorLog = nopLogger{}
	go k.srv.Serve(ln)
	t.Cleanup(func() { k.srv.Close() })
	return k
}

func (k *sink) setReply(f func([]byte) error) {
	k.mu.Lock()
	k.reply = f
	k.mu.Unlock()
}

func (k *sink) got() (msgs []received, attempts int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]received(nil), k.msgs...), k.attempts
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

type session struct {
	k     *sink
	from  string
	rcpts []string
}

func (s *session) Reset()        { s.from, s.rcpts = "", nil }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	s.k.attempts++
	if s.k.reply != nil {
		if err := s.k.reply(b); err != nil {
			return err
		}
	}
	s.k.msgs = append(s.k.msgs, received{From: s.from, Rcpts: s.rcpts, Data: b})
	return nil
}

func smtpErr(code int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 0, 0}, Message: msg}
}

// ---- helpers ----

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "pec.db")
	}
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newSender(t *testing.T, st *sqlite.Store, addr string, clk *clock) (*Sender, *syncBuffer) {
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sender log:\n%s", logs)
		}
	})
	return &Sender{
		Store:  st,
		Addr:   addr,
		Helo:   "pec.example.test",
		Now:    clk.Now,
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

func receipt(n int) store.Outgoing {
	id := fmt.Sprintf("<ack-%d@pec.example.test>", n)
	return store.Outgoing{
		MailFrom:  "posta-certificata@pec.example.test",
		Rcpts:     []string{fmt.Sprintf("user%d@pec.example.test", n)},
		Data:      []byte("Message-ID: " + id + "\r\nSubject: ACCETTAZIONE: test\r\n\r\nLine one\r\n.leading dot\r\n..two dots\r\n"),
		MessageID: id,
		Kind:      "accettazione",
	}
}

func commit(t *testing.T, st *sqlite.Store, out ...store.Outgoing) {
	t.Helper()
	ev := store.Event{Time: t0, Point: "access", Type: "accettazione", PECID: "opec.1@pec.example.test"}
	for _, o := range out {
		ev.Related = append(ev.Related, o.MessageID)
	}
	if err := st.Commit(store.Txn{Events: []store.Event{ev}, Outbox: out}); err != nil {
		t.Fatal(err)
	}
}

func sentEvents(t *testing.T, st *sqlite.Store) map[string]int {
	t.Helper()
	ev, err := st.Events(store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, e := range ev {
		if e.Point == "outbox" && e.Type == "sent" {
			for _, r := range e.Related {
				m[r]++
			}
		}
	}
	return m
}

func depth(t *testing.T, st *sqlite.Store) int {
	t.Helper()
	n, err := st.OutboxDepth()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkOnce asserts the sink got each of want exactly once, intact.
func checkOnce(t *testing.T, k *sink, want ...store.Outgoing) {
	t.Helper()
	msgs, _ := k.got()
	if len(msgs) != len(want) {
		t.Fatalf("sink got %d messages, want %d", len(msgs), len(want))
	}
	for _, w := range want {
		n := 0
		for _, m := range msgs {
			if bytes.Equal(m.Data, w.Data) {
				n++
				if m.From != w.MailFrom || strings.Join(m.Rcpts, ",") != strings.Join(w.Rcpts, ",") {
					t.Errorf("%s: envelope %s -> %v, want %s -> %v", w.MessageID, m.From, m.Rcpts, w.MailFrom, w.Rcpts)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s received %d times, want once", w.MessageID, n)
		}
	}
}

// ---- tests ----

// Due items are delivered once, byte for byte, and marked sent with a log row.
func TestDeliveredOnce(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	clk := &clock{t: t0}
	a, b, c := receipt(1), receipt(2), receipt(3)
	c.Rcpts = []string{"x@pec.example.test", "y@pec.example.test"}
	commit(t, st, a, b)
	commit(t, st, c)
	snd, _ := newSender(t, st, k.addr, clk)

	n, err := snd.DrainOnce(context.Background())
	if n != 3 || err != nil {
		t.Fatalf("DrainOnce = %d, %v; want 3, nil", n, err)
	}
	checkOnce(t, k, a, b, c)
	if d := depth(t, st); d != 0 {
		t.Errorf("outbox depth %d, want 0", d)
	}
	n, err = snd.DrainOnce(context.Background())
	if n != 0 || err != nil {
		t.Errorf("second DrainOnce = %d, %v; want 0, nil", n, err)
	}
	checkOnce(t, k, a, b, c)
	sent := sentEvents(t, st)
	for _, o := range []store.Outgoing{a, b, c} {
		if sent[o.MessageID] != 1 {
			t.Errorf("%s: %d sent events, want 1", o.MessageID, sent[o.MessageID])
		}
	}
	if bad, err := st.VerifyLog(); bad != 0 || err != nil {
		t.Errorf("VerifyLog = %d, %v", bad, err)
	}
}

// A 451 at DATA schedules a retry after the backoff; other items still go.
func TestTempFailureRetried(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	clk := &clock{t: t0}
	a, b := receipt(1), receipt(2)
	commit(t, st, a, b)
	k.setReply(func(d []byte) error {
		if bytes.Contains(d, []byte(a.MessageID)) {
			return smtpErr(451, "try again later")
		}
		return nil
	})
	snd, logs := newSender(t, st, k.addr, clk)

	if n, err := snd.DrainOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("DrainOnce = %d, %v; want 1 (b), nil", n, err)
	}
	checkOnce(t, k, b)
	if !strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), `"smtp_code":451`) {
		t.Errorf("451 not logged as a warning:\n%s", logs)
	}
	k.setReply(nil)

	// Not retried before the backoff (10 seconds) has passed.
	clk.Advance(10*time.Second - time.Millisecond)
	if n, err := snd.DrainOnce(context.Background()); n != 0 || err != nil {
		t.Fatalf("early DrainOnce = %d, %v; want 0", n, err)
	}
	if _, att := k.got(); att != 2 {
		t.Errorf("sink saw %d DATA, want 2 (no early retry)", att)
	}
	clk.Advance(time.Second)
	if n, err := snd.DrainOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("DrainOnce after backoff = %d, %v; want 1", n, err)
	}
	checkOnce(t, k, a, b)
	if n, _ := snd.DrainOnce(context.Background()); n != 0 {
		t.Errorf("resent %d", n)
	}
	if s := sentEvents(t, st); s[a.MessageID] != 1 || s[b.MessageID] != 1 {
		t.Errorf("sent events %v", s)
	}
}

// A 5xx is not a reason to drop a receipt: it is retried with growing
// backoff and logged at error level for the operator.
func TestPermanentFailureKeptAndLogged(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	clk := &clock{t: t0}
	a := receipt(1)
	commit(t, st, a)
	k.setReply(func([]byte) error { return smtpErr(554, "rejected") })
	snd, logs := newSender(t, st, k.addr, clk)
	var reported []string
	snd.OnUndeliverable = func(stage, kind string) { reported = append(reported, stage+"/"+kind) }

	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second} {
		if n, err := snd.DrainOnce(context.Background()); n != 0 || err != nil {
			t.Fatalf("attempt %d: DrainOnce = %d, %v", i+1, n, err)
		}
		due, _ := st.DuePending(clk.Now().Add(wait), 10)
		if len(due) != 1 || due[0].Attempts != i+1 || !due[0].NextTry.Equal(clk.Now().Add(wait)) {
			t.Fatalf("attempt %d: queued %+v, want next try in %v", i+1, due, wait)
		}
		clk.Advance(wait)
	}
	if d := depth(t, st); d != 1 {
		t.Errorf("depth %d, want 1: the receipt must stay queued", d)
	}
	// one log row and one metric for the refusal, not one per retry
	undeliverable := func() []store.Event {
		ev, err := st.Events(store.Query{Type: "undeliverable"})
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	if ev := undeliverable(); len(ev) != 1 || ev[0].Point != "outbox" || len(ev[0].Related) != 1 || ev[0].Related[0] != a.MessageID ||
		!strings.Contains(ev[0].Error, "554") || !strings.HasPrefix(ev[0].Error, "accettazione: ") || ev[0].Recipients[0] != a.Rcpts[0] {
		t.Fatalf("undeliverable rows %+v, want one naming the item and the cause", ev)
	}
	if len(reported) != 1 || reported[0] != StageReinject+"/accettazione" {
		t.Fatalf("metric calls %v", reported)
	}
	// another refusal is another row
	k.setReply(func([]byte) error { return smtpErr(550, "sender not allowed") })
	snd.DrainOnce(context.Background())
	if ev := undeliverable(); len(ev) != 2 || !strings.Contains(ev[1].Error, "sender not allowed") || len(reported) != 2 {
		t.Fatalf("after a different refusal: rows %+v, metric calls %v", ev, reported)
	}
	clk.Advance(time.Hour)
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["level"] == "ERROR" && rec["message_id"] == a.MessageID && rec["smtp_code"] == float64(554) &&
			rec["kind"] == "accettazione" && rec["id"] != nil && rec["rcpts"] != nil && strings.Contains(rec["error"].(string), "rejected") {
			found = true
		}
	}
	if !found {
		t.Errorf("no error-level record with id, message_id, kind, rcpts, error:\n%s", logs)
	}
	k.setReply(nil)
	if n, err := snd.DrainOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("after fix: DrainOnce = %d, %v", n, err)
	}
	checkOnce(t, k, a)
}

// With the listener down nothing is lost; everything goes once it is up.
func TestSinkDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	st := openStore(t, "")
	clk := &clock{t: t0}
	a, b := receipt(1), receipt(2)
	commit(t, st, a, b)
	snd, _ := newSender(t, st, addr, clk)

	n, err := snd.DrainOnce(context.Background())
	if n != 0 || err == nil {
		t.Fatalf("DrainOnce with the listener down = %d, %v; want 0 and an error", n, err)
	}
	if d := depth(t, st); d != 2 {
		t.Fatalf("depth %d, want 2", d)
	}

	k := startSink(t, addr)
	clk.Advance(10 * time.Second)
	if n, err := snd.DrainOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("DrainOnce after the listener is up = %d, %v; want 2", n, err)
	}
	checkOnce(t, k, a, b)
	if d := depth(t, st); d != 0 {
		t.Errorf("depth %d, want 0", d)
	}
}

// A crash after Commit and before sending: the receipts are sent once by the
// next process.
func TestCrashAfterCommit(t *testing.T) {
	k := startSink(t, "")
	path := filepath.Join(t.TempDir(), "pec.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b := receipt(1), receipt(2)
	commit(t, st, a, b)
	st.Close() // "crash": nothing drained

	for restart := 0; restart < 2; restart++ {
		st := openStore(t, path)
		snd, _ := newSender(t, st, k.addr, &clock{t: t0})
		want := 2
		if restart > 0 {
			want = 0
		}
		if n, err := snd.DrainOnce(context.Background()); n != want || err != nil {
			t.Fatalf("restart %d: DrainOnce = %d, %v; want %d", restart, n, err, want)
		}
		st.Close()
	}
	checkOnce(t, k, a, b)
}

// Run sends right away when kicked, and stops with its context.
func TestRunKick(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	snd, _ := newSender(t, st, k.addr, &clock{t: t0})
	snd.Interval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- snd.Run(ctx) }()

	time.Sleep(50 * time.Millisecond) // let the initial pass run on an empty outbox
	a := receipt(1)
	commit(t, st, a)
	snd.Kick()
	snd.Kick() // coalesces, never blocks
	deadline := time.Now().Add(5 * time.Second)
	for depth(t, st) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("not sent within 5s of Kick")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
	checkOnce(t, k, a)
}

func TestCancelledDrain(t *testing.T) {
	k := startSink(t, "")
	st := openStore(t, "")
	commit(t, st, receipt(1))
	snd, _ := newSender(t, st, k.addr, &clock{t: t0})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := snd.DrainOnce(ctx); n != 0 || err == nil {
		t.Errorf("DrainOnce(cancelled) = %d, %v", n, err)
	}
	if d := depth(t, st); d != 1 {
		t.Errorf("depth %d, want 1", d)
	}
}

func TestDefaultBackoff(t *testing.T) {
	for attempts, want := range map[int]time.Duration{
		0: 10 * time.Second, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second,
		8: 1280 * time.Second, 9: 30 * time.Minute, 10: 30 * time.Minute, 1000: 30 * time.Minute,
	} {
		if got := DefaultBackoff(attempts); got != want {
			t.Errorf("DefaultBackoff(%d) = %v, want %v", attempts, got, want)
		}
	}
}
