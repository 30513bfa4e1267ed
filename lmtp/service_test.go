package lmtp_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/deliverytest"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

const serviceB = "posta-certificata@pec-b.example.test"

// dovecotNoService is an LMTP server standing in for a Dovecot that has no
// user for the service address: 550 5.1.1 at RCPT, as Dovecot answers.
type dovecotNoService struct {
	mu     sync.Mutex
	stored map[string]int
}

func (d *dovecotNoService) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &noServiceSession{d: d}, nil
}

type noServiceSession struct {
	d     *dovecotNoService
	rcpts []string
}

func (s *noServiceSession) Reset()                                    { s.rcpts = nil }
func (s *noServiceSession) Logout() error                             { return nil }
func (s *noServiceSession) Mail(string, *smtp.MailOptions) error      { return nil }
func (s *noServiceSession) Data(io.Reader) error                      { return nil }
func (s *noServiceSession) AuthPlain(string, string) error            { return nil }
func (s *noServiceSession) Rcpt(to string, _ *smtp.RcptOptions) error { return s.rcpt(to) }
func (s *noServiceSession) rcpt(to string) error {
	if strings.EqualFold(to, serviceB) {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + "> User doesn't exist: " + to}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *noServiceSession) LMTPData(r io.Reader, st smtp.StatusCollector) error {
	io.Copy(io.Discard, r)
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	for _, rc := range s.rcpts {
		s.d.stored[rc]++
		st.SetStatus(rc, nil)
	}
	return nil
}

func serveLMTP(t *testing.T, be smtp.Backend) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.LMTP = true
	srv.Domain = "lmtp.example.test"
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type serviceRig struct {
	b        *deliverytest.Bench
	st       *sqlite.Store
	box      *lmtp.ServiceMailbox
	dovecot  *dovecotNoService
	addr     string // pecdeliver's LMTP
	logs     *bytes.Buffer
	mu       sync.Mutex
	reported []string // OnUndeliverable calls, "stage/kind"
}

func newServiceRig(t *testing.T, maildir string) *serviceRig {
	b := deliverytest.New(t)
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &serviceRig{b: b, st: st, dovecot: &dovecotNoService{stored: map[string]int{}}, logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(syncWriter{w: r.logs, mu: &r.mu}, nil))
	r.box = &lmtp.ServiceMailbox{Addrs: []string{serviceB}, Maildir: maildir, Store: st, Provider: b.B.Name, Log: log,
		OnUndeliverable: func(stage, k string) {
			r.mu.Lock()
			r.reported = append(r.reported, stage+"/"+k)
			r.mu.Unlock()
		}}
	srv := &lmtp.Server{Delivery: b.D, Store: st, Dovecot: "inet:" + serveLMTP(t, r.dovecot), Log: log, Service: r.box}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	r.addr = ln.Addr().String()
	return r
}

// logText is what the server logged so far (it may still be logging:
// the LMTP answers go out before its log line).
func (r *serviceRig) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// send delivers raw to rcpts over LMTP like Postfix and returns the
// answer per recipient.
func (r *serviceRig) send(t *testing.T, from string, rcpts []string, raw []byte) map[string]error {
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
			t.Fatalf("RCPT %s: %v (pecdeliver takes every recipient at RCPT)", rc, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	out := map[string]error{}
	_, err = w.CloseWithLMTPResponse()
	for _, rc := range rcpts {
		out[rc] = nil
	}
	if le, ok := err.(smtp.LMTPDataError); ok {
		for rc, e := range le {
			out[rc] = e
		}
	} else if se, ok := err.(*smtp.SMTPError); ok && len(rcpts) == 1 {
		out[rcpts[0]] = se
	} else if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	return out
}

func maildirFiles(t *testing.T, dir string) [][]byte {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "new"))
	var out [][]byte
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, "new", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// postfixDSN is a bounce as Postfix writes it, returning the headers of
// one of our notices.
func postfixDSN(to, rcpt, status, diag, returnedHeaders string) []byte {
	return []byte("From: MAILER-DAEMON@mx.pec-b.example.test (Mail Delivery System)\r\n" +
		"To: " + to + "\r\nSubject: Undelivered Mail Returned to Sender\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B1\"\r\n\r\n" +
		"This is a MIME-encapsulated message.\r\n\r\n--B1\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n" +
		"I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients.\r\n\r\n" +
		"--B1\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n" +
		"Reporting-MTA: dns; mx.pec-b.example.test\r\nX-Postfix-Queue-ID: 4ABC\r\nArrival-Date: Mon, 23 Nov 2026 16:04:05 +0100 (CET)\r\n\r\n" +
		"Final-Recipient: rfc822; " + rcpt + "\r\nOriginal-Recipient: rfc822;" + rcpt + "\r\nAction: failed\r\nStatus: " + status + "\r\n" +
		"Diagnostic-Code: smtp; " + diag + "\r\n\r\n" +
		"--B1\r\nContent-Description: Undelivered Message Headers\r\nContent-Type: text/rfc822-headers\r\n\r\n" +
		returnedHeaders + "\r\n--B1--\r\n")
}

// No receipt vanishes: mail for the service address is accepted when
// Dovecot has no such user, kept in the service maildir, and the other
// recipients of the same transaction are handled as before.
func TestServiceMailboxTakesWhatDovecotRefuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "service-mail")
	r := newServiceRig(t, dir)

	// a take-charge receipt from provider A for our service address
	o, _ := build.ParseOriginal([]byte("From: " + luigi + "\r\nTo: " + mario + "\r\nSubject: s\r\n\r\nx\r\n"))
	tx := o.Tx("pec1@pec-b.example.test", luigi, func(string) daticert.DestTipo { return daticert.Certificato })
	pic, err := r.b.A.PresaInCarico(at, tx, serviceB, []string{mario})
	if err != nil {
		t.Fatal(err)
	}
	res := r.send(t, pic.MailFrom, []string{serviceB, "luigi.verdi@pec-b.example.test"}, pic.Bytes())
	if res[serviceB] != nil || res["luigi.verdi@pec-b.example.test"] != nil {
		t.Fatalf("answers %v, want 250 for both", res)
	}
	files := maildirFiles(t, dir)
	if len(files) != 1 || !bytes.Contains(files[0], []byte("X-Ricevuta: presa-in-carico")) {
		t.Fatalf("service maildir holds %d messages, want the take-charge receipt", len(files))
	}
	if r.dovecot.stored["luigi.verdi@pec-b.example.test"] != 1 || r.dovecot.stored[serviceB] != 0 {
		t.Fatalf("Dovecot stored %v", r.dovecot.stored)
	}
	if !strings.Contains(r.logText(), "kept in the service maildir") {
		t.Errorf("no warning logged:\n%s", r.logText())
	}
	// the receipt still counts for the log (it reached our mailbox)
	if ev, _ := r.st.Events(store.Query{Type: "ricevuta-presa-in-carico"}); len(ev) != 1 {
		t.Errorf("ricevuta-presa-in-carico rows: %d, want 1", len(ev))
	}

	// ordinary recipients keep Dovecot's answer
	res = r.send(t, "x@mail.example.org", []string{"nobody@pec-b.example.test"}, []byte("Subject: x\r\n\r\nx\r\n"))
	if res["nobody@pec-b.example.test"] != nil {
		// the fake Dovecot accepts everyone but the service address
		t.Fatalf("ordinary recipient: %v", res)
	}
}

// A bounce of one of our notices that reaches the service mailbox leaves
// a log row naming the cause, a metric and an error log line.
func TestServiceMailboxRecordsBouncedNotice(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "service-mail")
	r := newServiceRig(t, dir)
	hdr := "From: posta-certificata@pec-b.example.test\r\nTo: mario.rossi@pec-c.example.test\r\nSubject: CONSEGNA: prova\r\n" +
		"Message-ID: <n1@pec-b.example.test>\r\nX-Ricevuta: avvenuta-consegna\r\n"
	dsn := postfixDSN(serviceB, "mario.rossi@pec-c.example.test", "5.1.1", "550 5.1.1 <mario.rossi@pec-c.example.test>: Recipient address rejected: User unknown", hdr)
	res := r.send(t, "", []string{serviceB}, dsn)
	if res[serviceB] != nil {
		t.Fatalf("bounce refused: %v", res[serviceB])
	}
	ev, err := r.st.Events(store.Query{Type: store.TypeUndeliverable})
	if err != nil || len(ev) != 1 {
		t.Fatalf("undeliverable rows %v %+v", err, ev)
	}
	e := ev[0]
	if e.Point != "delivery" || len(e.Recipients) != 1 || e.Recipients[0] != "mario.rossi@pec-c.example.test" ||
		len(e.Related) != 1 || e.Related[0] != "<n1@pec-b.example.test>" || !strings.Contains(e.Error, "550 5.1.1") ||
		!strings.HasPrefix(e.Error, "avvenuta-consegna") {
		t.Fatalf("row %+v", e)
	}
	if len(r.reported) != 1 || r.reported[0] != "bounce/avvenuta-consegna" {
		t.Fatalf("metric calls %v", r.reported)
	}
	if logs := r.logText(); !strings.Contains(logs, "could not be delivered") || !strings.Contains(logs, "User unknown") {
		t.Fatalf("log line missing:\n%s", logs)
	}
	if len(maildirFiles(t, dir)) != 1 {
		t.Fatal("the bounce itself is not in the service maildir")
	}

	// a DSN that reports a delay only is stored and not counted
	delayed := bytes.Replace(dsn, []byte("Action: failed"), []byte("Action: delayed"), 1)
	r.send(t, "", []string{serviceB}, delayed)
	if ev, _ := r.st.Events(store.Query{Type: store.TypeUndeliverable}); len(ev) != 1 {
		t.Fatalf("a delayed DSN added a row: %d", len(ev))
	}
}

// A maildir that cannot be written is a temporary failure: Postfix keeps
// the message, nothing is lost and nothing is bounced.
func TestServiceMailboxUnwritableTempfails(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	os.WriteFile(blocker, []byte("x"), 0o644)
	r := newServiceRig(t, filepath.Join(blocker, "service-mail")) // under a regular file: never writable
	res := r.send(t, "", []string{serviceB}, []byte("Subject: x\r\n\r\nx\r\n"))
	se, ok := res[serviceB].(*smtp.SMTPError)
	if !ok || se.Code/100 != 4 {
		t.Fatalf("answer %v, want a 4xx", res[serviceB])
	}
	if err := r.box.Check(context.Background(), "inet:127.0.0.1:1", "pec-b.example.test"); err == nil || !strings.Contains(err.Error(), "service_maildir") {
		t.Fatalf("Check: %v, want an error naming service_maildir", err)
	}
}

// The start-up check warns loudly when Dovecot has no user for the
// service address, and passes when the maildir is writable.
func TestServiceMailboxCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "service-mail")
	r := newServiceRig(t, dir)
	dovecot := "inet:" + serveLMTP(t, r.dovecot)
	if err := r.box.Check(context.Background(), dovecot, "pec-b.example.test"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(r.logText(), "SERVICE MAILBOX NOT IN DOVECOT") {
		t.Fatalf("no warning:\n%s", r.logText())
	}
	for _, d := range []string{"tmp", "new", "cur"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Fatalf("maildir %s: %v", d, err)
		}
	}
	answers, err := lmtp.ProbeRcpts(context.Background(), dovecot, "x", []string{"luigi.verdi@pec-b.example.test", serviceB})
	if err != nil || answers["luigi.verdi@pec-b.example.test"] != nil || answers[serviceB] == nil {
		t.Fatalf("probe %v %v", answers, err)
	}
}

// Bounces come in as Postfix writes them, and, from other MTAs through
// our incoming point, wrapped in an anomaly envelope.
func TestParseBounce(t *testing.T) {
	b := deliverytest.New(t)
	hdr := "From: posta-certificata@pec-b.example.test\r\nMessage-ID: <n2@pec-b.example.test>\r\nX-Ricevuta: presa-in-carico\r\nSubject: PRESA IN CARICO: x\r\n"
	dsn := postfixDSN(serviceB, "posta-certificata@pec-a.example.test", "5.2.2", "552 5.2.2 Mailbox full", hdr)
	for name, raw := range map[string][]byte{"plain": dsn, "anomaly": anomalyOf(t, b, dsn)} {
		bo, ok := lmtp.ParseBounce(raw)
		if !ok || bo.Kind != kind.PresaInCarico || bo.MessageID != "<n2@pec-b.example.test>" || len(bo.Failed) != 1 ||
			bo.Failed[0].Rcpt != "posta-certificata@pec-a.example.test" || bo.Failed[0].Status != "5.2.2" || bo.Failed[0].Cause != "552 5.2.2 Mailbox full" {
			t.Errorf("%s: %v %+v", name, ok, bo)
		}
	}
	if _, ok := lmtp.ParseBounce([]byte("Subject: hello\r\n\r\nnot a bounce\r\n")); ok {
		t.Error("ordinary mail read as a bounce")
	}
}

func anomalyOf(t *testing.T, b *deliverytest.Bench, raw []byte) []byte {
	o, err := build.ParseOriginal(raw)
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.B.Anomalia(at, o, "", []string{serviceB}, "notifica di mancata consegna (DSN) da un server di posta ordinaria")
	if err != nil {
		t.Fatal(err)
	}
	return m.Bytes()
}
