package filter_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/pecgo/pec/filter"
)

// recorder is a role that keeps what the milter handed it.
type recorder struct {
	env filter.Envelope
	raw []byte
	d   filter.Decision
}

func (r *recorder) Check(ctx context.Context, env filter.Envelope, raw []byte, now time.Time) filter.Decision {
	r.env, r.raw = env, append([]byte(nil), raw...)
	return r.d
}

func serve(t *testing.T, m *filter.Milter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := m.Server()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func session(t *testing.T, addr string) *milter.ClientSession {
	t.Helper()
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ActionMask:   milter.OptAddHeader | milter.OptChangeBody | milter.OptAddRcpt | milter.OptRemoveRcpt | milter.OptChangeHeader,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The milter asks Postfix only for the events a role reads and answers
// only where it may refuse: every header field and body chunk, every
// RCPT, goes one way; MAIL FROM is answered on the submission service
// only (RequireAuth).
func TestMilterNegotiation(t *testing.T) {
	for _, requireAuth := range []bool{true, false} {
		s := session(t, serve(t, &filter.Milter{Role: &recorder{}, RequireAuth: requireAuth}))
		for _, o := range []milter.OptProtocol{milter.OptNoConnect, milter.OptNoHelo, milter.OptNoData, milter.OptNoEOH,
			milter.OptNoUnknown, milter.OptNoRcptReply, milter.OptNoHeaderReply, milter.OptNoBodyReply, milter.OptHeaderLeadingSpace} {
			if !s.ProtocolOption(o) {
				t.Errorf("RequireAuth=%v: protocol option %#x not negotiated", requireAuth, o)
			}
		}
		for _, o := range []milter.OptProtocol{milter.OptNoMailFrom, milter.OptNoRcptTo, milter.OptNoHeaders, milter.OptNoBody} {
			if s.ProtocolOption(o) {
				t.Errorf("RequireAuth=%v: the roles need the event masked by %#x", requireAuth, o)
			}
		}
		if s.ProtocolOption(milter.OptNoMailReply) == requireAuth {
			t.Errorf("RequireAuth=%v: MAIL FROM reply negotiated away: %v", requireAuth, s.ProtocolOption(milter.OptNoMailReply))
		}
	}
}

// Without SASL the submission milter refuses at MAIL FROM, the one event
// it still answers.
func TestMilterRequiresAuth(t *testing.T) {
	s := session(t, serve(t, &filter.Milter{Role: &recorder{}, RequireAuth: true}))
	act, err := s.Mail("<"+mario+">", nil)
	if err != nil || act.Code != milter.ActReplyCode || act.SMTPCode != 530 {
		t.Fatalf("MAIL without login: %+v %v", act, err)
	}
}
