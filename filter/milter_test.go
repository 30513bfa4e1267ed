package filter_test

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-milter"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store/sqlite"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
)

// recorder is a role that keeps what the milter handed it.
type recorder struct {
	env point.Envelope
	raw []byte
	d   point.Decision
}

func (r *recorder) Check(ctx context.Context, env point.Envelope, raw []byte, now time.Time) point.Decision {
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

// The role gets the message as the client sent it: header fields in
// order with CRLF folding (Postfix sends LF and the leading space), the
// empty line, the body chunks joined; and the envelope; the envelope it
// returns replaces the original through the milter's edits.
func TestMilterMessage(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	replace := &build.Message{Kind: kind.PostaCertificata, ID: "opec.1@pec-a.example.test",
		Header:     []build.Field{{Name: "To", Value: luigi, Copied: true}, {Name: "Subject", Value: "POSTA CERTIFICATA: prova"}},
		BodyPieces: [][]byte{[]byte("signed\r\n"), bytes.Repeat([]byte("0123456789\r\n"), 20000)}}
	role := &recorder{d: point.Decision{Action: point.Accept, Replace: replace}}
	s := session(t, serve(t, &filter.Milter{Name: "access", Role: role, Store: st, RequireAuth: true}))
	if err := s.Macros(milter.CodeMail, "{auth_authen}", mario); err != nil {
		t.Fatal(err)
	}
	if act, err := s.Mail("<"+mario+">", nil); err != nil || act.Code != milter.ActContinue {
		t.Fatalf("MAIL: %+v %v", act, err)
	}
	for _, r := range []string{luigi, carla} {
		if _, err := s.Rcpt("<"+r+">", nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range [][2]string{{"From", " " + mario}, {"To", " " + luigi + ",\n\t" + carla}, {"Subject", " prova"}, {"X-Empty", ""}} {
		if _, err := s.HeaderField(h[0], h[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("una riga del corpo\r\n"), 10000) // several chunks
	if err := s.Macros(milter.CodeEOB, "i", "4XyZ1"); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.BodyReadFrom(bytes.NewReader(body))
	if err != nil || act.Code != milter.ActAccept {
		t.Fatalf("end of message: %+v %v", act, err)
	}
	want := "From: " + mario + "\r\nTo: " + luigi + ",\r\n\t" + carla + "\r\nSubject: prova\r\nX-Empty:\r\n\r\n" + string(body)
	if string(role.raw) != want {
		t.Errorf("the role got %d octets, want %d; first 200:\n%q", len(role.raw), len(want), role.raw[:min(200, len(role.raw))])
	}
	if role.env.MailFrom != mario || role.env.AuthUser != mario || strings.Join(role.env.Rcpts, ",") != luigi+","+carla || role.env.QueueID != "4XyZ1" {
		t.Errorf("envelope %+v", role.env)
	}
	var deleted []string
	var added []string
	var newBody []byte
	for _, m := range mods {
		switch m.Code {
		case milter.ActChangeHeader:
			if m.HeaderValue == "" {
				deleted = append(deleted, m.HeaderName)
			}
		case milter.ActAddHeader:
			added = append(added, m.HeaderName)
		case milter.ActReplBody:
			newBody = append(newBody, m.Body...)
		}
	}
	if strings.Join(deleted, ",") != "X-Empty,Subject,From" || strings.Join(added, ",") != "Subject" {
		t.Errorf("header edits: deleted %v, added %v", deleted, added)
	}
	if want := strings.ReplaceAll(string(replace.Body()), "\r\n", "\n"); string(newBody) != want {
		t.Errorf("replaced body: %d octets, want %d", len(newBody), len(want))
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
