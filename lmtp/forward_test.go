package lmtp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/point"
)

// fakeDovecot answers an LMTP transaction with the given per-recipient
// lines after DATA, then hangs up (a crash or a dropped connection).
func fakeDovecot(t *testing.T, afterData []string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 fake LMTP\r\n"))
		inData := false
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case inData && line == ".\r\n":
				for _, l := range afterData {
					c.Write([]byte(l + "\r\n"))
				}
				return // hang up
			case inData:
			case strings.HasPrefix(line, "LHLO"):
				c.Write([]byte("250-fake\r\n250 PIPELINING\r\n"))
			case strings.HasPrefix(line, "DATA"):
				inData = true
				c.Write([]byte("354 go ahead\r\n"))
			default:
				c.Write([]byte("250 2.1.0 ok\r\n"))
			}
		}
	}()
	return "inet:" + ln.Addr().String()
}

// A recipient Dovecot never confirmed is not delivered, even when another
// recipient got an explicit refusal before the connection dropped.
func TestForwardPartialAnswer(t *testing.T) {
	addr := fakeDovecot(t, []string{"552 5.2.2 <a@x.example.test> Quota exceeded"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := forward(ctx, addr, "pec.example.test", "s@x.example.test", []string{"a@x.example.test", "b@x.example.test"}, []byte("Subject: x\r\n\r\nx\r\n"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var se *smtp.SMTPError
	if !errors.As(res[0].Err, &se) || se.Code != 552 {
		t.Fatalf("a: %v", res[0].Err)
	}
	if res[1].Err == nil || point.PermanentFailure(res[1].Err) {
		t.Fatalf("b has no confirmation and must count as a temporary failure, got %v", res[1].Err)
	}
}

func TestForwardAllConfirmed(t *testing.T) {
	addr := fakeDovecot(t, []string{"250 2.0.0 <a@x.example.test> Saved", "250 2.0.0 <b@x.example.test> Saved"})
	res, err := forward(context.Background(), addr, "pec.example.test", "s@x.example.test", []string{"a@x.example.test", "b@x.example.test"}, []byte("Subject: x\r\n\r\nx\r\n"), "", nil)
	if err != nil || res[0].Err != nil || res[1].Err != nil {
		t.Fatalf("%v %+v", err, res)
	}
}

// A Dovecot that never answers after DATA: forward gives up when its
// context ends instead of waiting for go-smtp's own long timeouts.
func TestForwardHonoursDeadline(t *testing.T) {
	// a server that stalls: accept, greet, then never answer DATA's end
	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	go func() {
		c, err := stall.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		c.Write([]byte("220 slow\r\n"))
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case strings.HasPrefix(line, "LHLO"):
				c.Write([]byte("250 slow\r\n"))
			case strings.HasPrefix(line, "DATA"):
				c.Write([]byte("354 go\r\n"))
			case line == ".\r\n":
				time.Sleep(time.Minute) // never answers in time
			case strings.HasPrefix(line, "MAIL"), strings.HasPrefix(line, "RCPT"):
				c.Write([]byte("250 ok\r\n"))
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := forward(ctx, "inet:"+stall.Addr().String(), "pec.example.test", "s@x.example.test", []string{"a@x.example.test"}, []byte("Subject: x\r\n\r\nx\r\n"), "", nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("forward took %v past a 500 ms deadline", took)
	}
	if err == nil && (len(res) != 1 || res[0].Err == nil || point.PermanentFailure(res[0].Err)) {
		t.Fatalf("no confirmation must not count as delivered: %v %+v", err, res)
	}
}
