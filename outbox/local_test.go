package outbox

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/store"
)

// lmtpSink stands in for the delivery point's LMTP listener (lmtp.Server
// in production, tested there with Dovecot): it answers each recipient
// after the data, as status says (nil: delivered).
type lmtpSink struct {
	mu     sync.Mutex
	status map[string]*smtp.SMTPError
	got    map[string]int // recipient -> copies delivered
	addr   string
	srv    *smtp.Server
}

func startLMTPSink(t *testing.T) *lmtpSink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &lmtpSink{status: map[string]*smtp.SMTPError{}, got: map[string]int{}, addr: ln.Addr().String()}
	k.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &lmtpSession{k: k}, nil }))
	k.srv.LMTP, k.srv.Domain, k.srv.ErrorLog = true, "pecdeliver.test", nopLogger{}
	go k.srv.Serve(ln)
	t.Cleanup(func() { k.srv.Close() })
	return k
}

type lmtpSession struct {
	k     *lmtpSink
	rcpts []string
}

func (s *lmtpSession) Reset()                               { s.rcpts = nil }
func (s *lmtpSession) Logout() error                        { return nil }
func (s *lmtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *lmtpSession) Data(io.Reader) error { return nil }
func (s *lmtpSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	io.Copy(io.Discard, r)
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	for _, rc := range s.rcpts {
		if e := s.k.status[rc]; e != nil {
			st.SetStatus(rc, e)
			continue
		}
		s.k.got[rc]++
		st.SetStatus(rc, nil)
	}
	return nil
}

func (k *lmtpSink) copies(rcpt string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.got[rcpt]
}

// Notices for our own mailboxes go straight to the delivery point over
// LMTP; anything with another recipient goes through the re-injection
// listener; when the delivery point does not answer, ours go there too.
func TestLocalItemsStraightToTheDeliveryPoint(t *testing.T) {
	k := startSink(t, "")
	l := startLMTPSink(t)
	st := openStore(t, "")
	clk := &clock{t: t0}
	ours, theirs, mixed := receipt(1), receipt(2), receipt(3)
	theirs.Rcpts = []string{"mario@pec.other.test"}
	mixed.Rcpts = []string{"user3@pec.example.test", "mario@pec.other.test"}
	commit(t, st, ours, theirs, mixed)
	snd, _ := newSender(t, st, k.addr, clk)
	snd.Local, snd.LocalDomains = "inet:"+l.addr, []string{"PEC.example.test"}
	if n, err := snd.DrainOnce(context.Background()); n != 3 || err != nil {
		t.Fatalf("DrainOnce = %d, %v; want 3, nil", n, err)
	}
	if l.copies("user1@pec.example.test") != 1 {
		t.Error("the notice for our own mailbox did not reach the delivery point")
	}
	checkOnce(t, k, theirs, mixed)
	if sent := sentEvents(t, st); sent[ours.MessageID] != 1 {
		t.Errorf("%d sent rows for the item delivered over LMTP, want 1", sent[ours.MessageID])
	}

	// the delivery point down: ours goes through Postfix
	l.srv.Close()
	again := receipt(4)
	commit(t, st, again)
	if n, err := snd.DrainOnce(context.Background()); n != 1 || err != nil {
		t.Fatalf("delivery point down: DrainOnce = %d, %v; want 1 through the re-injection listener", n, err)
	}
	checkOnce(t, k, theirs, mixed, again)
}

// The delivery point answers each recipient. An item it does not take for
// every recipient (a temporary or a permanent refusal) goes through the
// re-injection listener in the same pass, as it did before the direct
// path: Postfix queues and retries, or bounces to the service mailbox; the
// recipients the delivery point took already get no second copy there
// (one per message and recipient: lmtp/server_test.go).
func TestLocalRefusalGoesThroughPostfix(t *testing.T) {
	k := startSink(t, "")
	l := startLMTPSink(t)
	st := openStore(t, "")
	clk := &clock{t: t0}
	two := receipt(1)
	two.Rcpts = []string{"user1@pec.example.test", "busy@pec.example.test"}
	gone := receipt(2)
	gone.Rcpts = []string{"nobody@pec.example.test"}
	commit(t, st, two, gone)
	l.status["busy@pec.example.test"] = &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full, try later"}
	l.status["nobody@pec.example.test"] = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	snd, logs := newSender(t, st, k.addr, clk)
	snd.Local, snd.LocalDomains = l.addr, []string{"pec.example.test"}
	if n, err := snd.DrainOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("DrainOnce = %d, %v; want both items sent", n, err)
	}
	checkOnce(t, k, two, gone)
	if l.copies("user1@pec.example.test") != 1 {
		t.Error("the recipient the delivery point took has no copy")
	}
	if d := depth(t, st); d != 0 {
		t.Errorf("outbox depth %d, want 0", d)
	}
	if ev, _ := st.Events(store.Query{Type: store.TypeUndeliverable}); len(ev) != 0 {
		t.Errorf("undeliverable rows %+v: Postfix took the items, its bounce would tell", ev)
	}
	if l := logs.String(); !strings.Contains(l, "5.1.1") || !strings.Contains(l, "no such user") {
		t.Errorf("the delivery point's refusal is not in the log:\n%s", logs)
	}
}
