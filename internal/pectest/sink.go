package pectest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Sink is an SMTP server on loopback that keeps what it receives.
type Sink struct {
	Addr string
	mu   sync.Mutex
	msgs []SinkMessage
}

// SinkMessage is one received message.
type SinkMessage struct {
	From  string
	Rcpts []string
	Data  []byte
}

// StartSink listens on a free loopback port until the test ends.
func StartSink(t testing.TB) *Sink {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Sink{Addr: ln.Addr().String()}
	srv := smtp.NewServer(s)
	srv.Domain = "sink.example.org"
	srv.AllowInsecureAuth = true
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

// NewSession implements smtp.Backend.
func (s *Sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s   *Sink
	msg SinkMessage
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error { ss.msg.From = from; return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.msg.Rcpts = append(ss.msg.Rcpts, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.msg.Data = b
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, ss.msg)
	ss.s.mu.Unlock()
	ss.msg = SinkMessage{}
	return nil
}
func (ss *sinkSession) Reset()        { ss.msg = SinkMessage{} }
func (ss *sinkSession) Logout() error { return nil }

// Messages returns a copy of what arrived so far.
func (s *Sink) Messages() []SinkMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkMessage(nil), s.msgs...)
}

// Wait polls until match has matched n messages or timeout passes.
func (s *Sink) Wait(t testing.TB, n int, timeout time.Duration, match func(SinkMessage) bool) []SinkMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var got []SinkMessage
		for _, m := range s.Messages() {
			if match == nil || match(m) {
				got = append(got, m)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n {
				var sum []string
				for _, m := range s.Messages() {
					sum = append(sum, fmt.Sprintf("%s -> %v: %s", m.From, m.Rcpts, subject(m.Data)))
				}
				t.Fatalf("sink: %d matching messages after %v, want %d; all:\n%s", len(got), timeout, n, strings.Join(sum, "\n"))
			}
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func subject(b []byte) string {
	for _, l := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(bytes.ToLower(l), []byte("subject:")) {
			return strings.TrimSpace(string(l[8:]))
		}
	}
	return ""
}

// waitDial waits until network/addr accepts a connection.
func waitDial(network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
