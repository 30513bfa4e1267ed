package filter_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/point"
)

// lockedRecorder is a recorder safe to read while Postfix's milter
// connection is served.
type lockedRecorder struct {
	mu  sync.Mutex
	env []point.Envelope
}

func (r *lockedRecorder) Check(_ context.Context, env point.Envelope, raw []byte, now time.Time) point.Decision {
	r.mu.Lock()
	r.env = append(r.env, env)
	r.mu.Unlock()
	return point.Tempfail("4.7.0", "PEC: recorded by the test")
}

func (r *lockedRecorder) last(t *testing.T, n int) point.Envelope {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.env) != n {
		t.Fatalf("the role saw %d messages, want %d", len(r.env), n)
	}
	return r.env[n-1]
}

// Postfix gives the milter {tls_version} at MAIL FROM because the milter
// asks for it (SMFIF_SETSYMLIST; Postfix's own default sends it only at
// HELO, which the milter skips): a plain connection gives Envelope.TLS
// false, one after STARTTLS true (require_tls_from_providers, Aruba
// §7.3.3).
func TestMilterTLSFromPostfix(t *testing.T) {
	testenv.NeedRoot(t, "postfix")
	dir := t.TempDir()
	cert, key := testpki.ServerTLS(t, dir, "tls-", "mx.pec.example.test")
	role := &lockedRecorder{}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := (&filter.Milter{Name: "incoming", Role: role}).Server()
	go srv.Serve(mln)
	t.Cleanup(func() { srv.Close() })
	port := testenv.FreePort(t)
	testenv.StartPostfix(t, testenv.PostfixConfig{
		Main: []string{"relay_domains = pec.example.test", "transport_maps = inline:{ pec.example.test=discard: }"},
		Master: []string{"tlsmgr unix - - n 1000? 1 tlsmgr", // smtpd's TLS needs it (the sandbox base has none)
			fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd", port) +
				" -o smtpd_milters=inet:" + mln.Addr().String() +
				" -o smtpd_tls_security_level=may -o smtpd_tls_cert_file=" + cert + " -o smtpd_tls_key_file=" + key +
				" -o smtpd_relay_restrictions=reject_unauth_destination"},
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	send := func(c *smtp.Client) {
		t.Helper()
		defer c.Close()
		if err := c.Hello("mx.other.example.test"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail("posta-certificata@other.example.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("luigi@pec.example.test", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(w, "Subject: tls\r\n\r\nciao\r\n")
		err = w.Close()
		if err == nil || !strings.Contains(err.Error(), "recorded by the test") {
			t.Fatalf("end of data: %v, want the role's tempfail", err)
		}
	}

	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	send(c)
	if env := role.last(t, 1); env.TLS || env.MailFrom != "posta-certificata@other.example.test" {
		t.Errorf("plain connection: envelope %+v, want TLS false", env)
	}

	c, err = smtp.DialStartTLS(addr, &tls.Config{InsecureSkipVerify: true}) // the throwaway self-signed certificate
	if err != nil {
		t.Fatal(err)
	}
	send(c)
	if env := role.last(t, 2); !env.TLS {
		t.Errorf("after STARTTLS: envelope %+v, want TLS true", env)
	}
}
