package lmtp_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/deliverytest"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

// dovecot stands in for Dovecot's LMTP: it stores every message whose end
// it gets (after delay) and answers 250 for each recipient.
type dovecot struct {
	addr  string
	delay time.Duration
	mu    sync.Mutex
	data  int      // DATA commands begun
	msgs  [][]byte // messages stored (their end arrived)
}

func startDovecot(t *testing.T, delay time.Duration) *dovecot {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dovecot{addr: "inet:" + ln.Addr().String(), delay: delay}
	srv := smtp.NewServer(d)
	srv.LMTP = true
	srv.Domain = "dovecot.example.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return d
}

func (d *dovecot) NewSession(*smtp.Conn) (smtp.Session, error) { return &dovecotSession{d: d}, nil }

// countsAfter is counts once data DATA commands reached the handler, or
// after 5 s.
func (d *dovecot) countsAfter(data int) (int, int) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if n, _ := d.counts(); n >= data {
			break
		}
	}
	return d.counts()
}

func (d *dovecot) counts() (data, stored int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.data, len(d.msgs)
}

type dovecotSession struct {
	d     *dovecot
	rcpts []string
}

func (s *dovecotSession) Reset()                               { s.rcpts = nil }
func (s *dovecotSession) Logout() error                        { return nil }
func (s *dovecotSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *dovecotSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *dovecotSession) Data(io.Reader) error { return errors.New("LMTP only") }
func (s *dovecotSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	s.d.mu.Lock()
	s.d.data++
	s.d.mu.Unlock()
	b, err := io.ReadAll(r) // fails when the client hangs up before the end
	if err != nil {
		return err
	}
	time.Sleep(s.d.delay)
	s.d.mu.Lock()
	s.d.msgs = append(s.d.msgs, b)
	s.d.mu.Unlock()
	for _, rc := range s.rcpts {
		st.SetStatus(rc, nil)
	}
	return nil
}

type rig struct {
	b         *deliverytest.Bench
	fullIndex func() (point.Directory, error)
	st        *sqlite.Store
	path      string
	dc        *dovecot
	addr      string
}

func newRig(t *testing.T, delay time.Duration, opts ...func(*lmtp.Server)) *rig {
	r := &rig{b: deliverytest.New(t), path: filepath.Join(t.TempDir(), "pec.db"), dc: startDovecot(t, delay)}
	st, err := sqlite.Open(r.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.st = st
	srv := &lmtp.Server{Delivery: r.b.D, Store: st, Dovecot: r.dc.addr, Timeout: 10 * time.Second}
	for _, o := range opts {
		o(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	r.addr = ln.Addr().String()
	return r
}

// send delivers raw over LMTP as Postfix does and returns the reply code
// per recipient.
func (r *rig) send(t *testing.T, from string, rcpts []string, raw []byte) map[string]int {
	t.Helper()
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("postfix.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, rc := range rcpts {
		if err := c.Rcpt(rc, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	_, err = w.CloseWithLMTPResponse()
	codes := map[string]int{}
	for _, rc := range rcpts {
		codes[rc] = 250
	}
	var lerr smtp.LMTPDataError
	if errors.As(err, &lerr) {
		for rc, e := range lerr {
			codes[rc] = e.Code
		}
	} else if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	return codes
}

// sql runs statements on the store file from outside, as another process.
func (r *rig) sql(t *testing.T, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", r.path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// receipts are the delivery receipts waiting in the outbox, by recipient.
func (r *rig) receipts(t *testing.T) map[string]int {
	t.Helper()
	items, err := r.st.DuePending(time.Now().Add(time.Hour), 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, it := range items {
		p, err := parse.Parse(it.Data)
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == kind.AvvenutaConsegna {
			out[p.Daticert.Consegna]++
		}
	}
	return out
}

// The store cannot be written (a full disk, here a trigger that fails like
// one): Dovecot gets the message but never its end, so it stores nothing,
// however many times Postfix retries; once the store is writable the next
// retry delivers exactly one copy with one receipt, and later retries are
// answered without a copy.
func TestServerStoreNotWritable(t *testing.T) {
	r := newRig(t, 0)
	raw := r.b.Envelope(t, r.b.A, "", luigi)
	r.sql(t, `CREATE TRIGGER full BEFORE INSERT ON deliveries BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`)
	for i := 0; i < 3; i++ {
		if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 451 {
			t.Fatalf("attempt %d with the store full: %d, want 451", i, c[luigi])
		}
	}
	// the fake Dovecot counts a DATA in its handler, which go-smtp starts
	// after its 354: it may run after pecdeliver has answered Postfix
	if data, stored := r.dc.countsAfter(3); data != 3 || stored != 0 {
		t.Fatalf("Dovecot began %d DATA and stored %d messages, want 3 and none", data, stored)
	}
	r.sql(t, "DROP TRIGGER full")
	for i := 0; i < 3; i++ {
		if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 250 {
			t.Fatalf("attempt %d with the store back: %d", i, c[luigi])
		}
	}
	if _, stored := r.dc.counts(); stored != 1 {
		t.Fatalf("Dovecot stored %d copies, want 1", stored)
	}
	if got := r.receipts(t); got[luigi] != 1 {
		t.Fatalf("delivery receipts %v, want one for %s", got, luigi)
	}
}

// The store fails after Dovecot stored the message (the intent went in,
// the receipts cannot): Postfix gets a 4xx, and its retries record the
// outcome without handing the message to Dovecot again.
func TestServerOutcomeNotRecorded(t *testing.T) {
	r := newRig(t, 0)
	raw := r.b.Envelope(t, r.b.A, "", luigi)
	r.sql(t, `CREATE TRIGGER full BEFORE INSERT ON events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`)
	for i := 0; i < 2; i++ {
		if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 451 {
			t.Fatalf("attempt %d: %d, want 451", i, c[luigi])
		}
	}
	if data, stored := r.dc.counts(); data != 1 || stored != 1 {
		t.Fatalf("Dovecot began %d DATA and stored %d, want the first attempt only", data, stored)
	}
	r.sql(t, "DROP TRIGGER full")
	if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 250 {
		t.Fatalf("retry: %d", c[luigi])
	}
	if _, stored := r.dc.counts(); stored != 1 {
		t.Fatalf("Dovecot stored %d copies", stored)
	}
	if got := r.receipts(t); got[luigi] != 1 {
		t.Fatalf("receipts %v", got)
	}
}

// pecdeliver was killed after Dovecot got the message (the intent is
// recorded, its owner is gone): the retry stores no second copy and
// issues no receipt (the outcome is unknown), and says so in the log.
func TestServerOrphanedIntent(t *testing.T) {
	r := newRig(t, 0)
	raw := r.b.Envelope(t, r.b.B, "", luigi) // ours: the take-charge is due once anyway
	m, err := r.b.D.Classify(raw)
	if err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	if err := r.st.ClaimDeliveries(m.Key, []string{luigi}, store.DeliveryOwner{ID: "dead/1", PID: gone.Process.Pid}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 250 {
			t.Fatalf("attempt %d: %d", i, c[luigi])
		}
	}
	if data, _ := r.dc.counts(); data != 0 {
		t.Fatalf("Dovecot got the message again (%d)", data)
	}
	items, _ := r.st.DuePending(time.Now().Add(time.Hour), 100)
	if len(items) != 1 || items[0].Kind != "presa-in-carico" {
		t.Fatalf("outbox %+v, want only the take-charge", items)
	}
	ev, _ := r.st.Events(store.Query{PECID: m.Key, Type: "consegna-non-confermata"})
	if len(ev) != 1 {
		t.Fatalf("log: %+v", ev)
	}
	rows, _ := r.st.Deliveries(m.Key, []string{luigi})
	if rows[luigi].State != store.DeliveryUnknown {
		t.Fatalf("row %+v", rows)
	}
}

// The same envelope twice at once (a replay racing the original): one
// copy, one receipt.
func TestServerConcurrentReplay(t *testing.T) {
	r := newRig(t, 300*time.Millisecond)
	raw := r.b.Envelope(t, r.b.A, "", luigi)
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = r.send(t, mario, []string{luigi}, raw)[luigi]
		}()
	}
	wg.Wait()
	for _, c := range codes {
		if c != 250 && c != 451 {
			t.Fatalf("codes %v", codes)
		}
	}
	if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 250 {
		t.Fatalf("after the race: %d", c[luigi])
	}
	if _, stored := r.dc.counts(); stored != 1 {
		t.Fatalf("Dovecot stored %d copies (codes %v)", stored, codes)
	}
	if got := r.receipts(t); got[luigi] != 1 {
		t.Fatalf("receipts %v", got)
	}
}

// The delivery point's copy of the index lacks a provider the incoming
// point already knows: it refreshes its copy (once a minute at most)
// before it would wrap that provider's envelope.
func TestServerResyncsForUnknownSigner(t *testing.T) {
	var mu sync.Mutex
	var resyncs int
	var r *rig
	r = newRig(t, 0, func(s *lmtp.Server) {
		s.Resync = func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			resyncs++
			r.b.D.Index = r.fullIndex // the refreshed copy lists provider A
			return nil
		}
	})
	r.fullIndex = r.b.D.Index
	r.b.D.Index = func() (point.Directory, error) { return service.Directory{Ix: &index.Index{}}, nil }
	if c := r.send(t, mario, []string{luigi}, r.b.Envelope(t, r.b.A, "", luigi)); c[luigi] != 250 {
		t.Fatalf("%v", c)
	}
	if got := r.receipts(t); got[luigi] != 1 || resyncs != 1 {
		t.Fatalf("receipts %v after %d index refreshes, want one of each", got, resyncs)
	}
	// an unknown signer right after: no second refresh, wrapped
	if c := r.send(t, mario, []string{luigi}, r.b.Receipt(t, r.b.X)); c[luigi] != 250 || resyncs != 1 {
		t.Fatalf("%v after %d refreshes", c, resyncs)
	}
	r.dc.mu.Lock()
	last := r.dc.msgs[len(r.dc.msgs)-1]
	r.dc.mu.Unlock()
	if p, _ := parse.Parse(last); p.Kind != kind.Anomalia {
		t.Fatalf("unknown signer's receipt stored as %s", p.Kind)
	}
}

// An intent recorded by another node of a cluster (its host in the owner)
// whose PID means nothing here is in progress until its lease ends, not
// orphaned: this node answers 451 and stores no copy.
func TestServerIntentOfAnotherNode(t *testing.T) {
	r := newRig(t, 0)
	raw := r.b.Envelope(t, r.b.B, "", luigi)
	m, err := r.b.D.Classify(raw)
	if err != nil {
		t.Fatal(err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	owner := store.DeliveryOwner{ID: "mx2.other-node.example:0123/1", PID: gone.Process.Pid}
	if err := r.st.ClaimDeliveries(m.Key, []string{luigi}, owner, time.Now()); err != nil {
		t.Fatal(err)
	}
	if c := r.send(t, mario, []string{luigi}, raw); c[luigi] != 451 {
		t.Fatalf("with another node delivering: %d, want 451", c[luigi])
	}
	if data, _ := r.dc.counts(); data != 0 {
		t.Fatalf("Dovecot got the message (%d)", data)
	}
	rows, _ := r.st.Deliveries(m.Key, []string{luigi})
	if rows[luigi].State != store.DeliveryPending || rows[luigi].Owner != owner {
		t.Fatalf("row %+v: the other node's intent was taken", rows)
	}
}
