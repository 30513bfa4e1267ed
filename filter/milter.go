package filter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"runtime/debug"
	"strings"
	"time"

	"github.com/emersion/go-milter"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// Role is one of the two milter roles.
type Role interface {
	Check(ctx context.Context, env point.Envelope, raw []byte, now time.Time) point.Decision
}

// Milter adapts a Role to Postfix's milter protocol. It collects the
// envelope and the message, asks the role, commits the role's
// transaction (log rows, generated messages, virus store) to the store,
// and only then answers Postfix: a message is either accepted with its
// receipts durably queued, or refused/tempfailed.
type Milter struct {
	Name     string // "access" or "incoming", for logs
	Role     Role
	Store    store.Points
	Kick     func() // wakes the outbox sender after a commit
	Clock    point.Clock
	Log      *slog.Logger
	Timeout  time.Duration // per message (antivirus, signing); default 2 min
	Observer func(role string, d point.Decision, elapsed time.Duration)
	// RequireAuth refuses MAIL FROM without SASL authentication (submission).
	RequireAuth bool
	// ConfirmDomain, when set, holds the transaction of every message the
	// role turns into a transport envelope until Postfix has queued it:
	// the milter adds the confirmation recipient QueuedAddress(ConfirmDomain,
	// token), which Postfix must route to the delivery point (queued.go,
	// store.HoldUntilQueued). Empty: committed before Postfix queues.
	ConfirmDomain string
}

// Server returns a go-milter server for m.
//
// It negotiates away what the roles do not read (the milter protocol's
// SMFIP_* flags; Postfix honours them with milter_protocol 6, its
// default): no connect, HELO, DATA, end-of-header or unknown-command
// events, and no reply to RCPT, to each header field and to each body
// chunk, which the roles always accept (each one was a round trip between
// Postfix's cleanup and the milter). MAIL FROM keeps its reply where the
// milter may refuse there (RequireAuth). The answer comes at the end of
// the message, as before.
func (m *Milter) Server() *milter.Server {
	return &milter.Server{
		NewMilter: func() milter.Milter { return &session{m: m} },
		Actions: milter.OptAddHeader | milter.OptChangeHeader | milter.OptChangeBody | milter.OptAddRcpt | milter.OptRemoveRcpt |
			milter.OptSetSymList,
		SymList:  symList(), // tls.go
		Protocol: m.protocol(),
	}
}

// protocol is the SMFIP_* mask the milter asks for.
func (m *Milter) protocol() milter.OptProtocol {
	p := milter.OptHeaderLeadingSpace | milter.OptNoUnknown |
		milter.OptNoConnect | milter.OptNoHelo | milter.OptNoData | milter.OptNoEOH |
		milter.OptNoRcptReply | milter.OptNoHeaderReply | milter.OptNoBodyReply
	if !m.RequireAuth {
		p |= milter.OptNoMailReply
	}
	return p
}

// Serve serves the milter protocol on ln until it is closed.
func (m *Milter) Serve(ln net.Listener) error { return m.Server().Serve(ln) }

// bigMessage is the size from which the milter gives memory back to the
// system between the steps of one message (see session.Body): a 30 MB
// message then peaks at 2.7 times its size in the process instead of
// 4.9 (3.7 with a plain runtime.GC), for two forced collections, a few
// milliseconds next to the seconds such a message takes.
const bigMessage = 4 << 20

type session struct {
	m   *Milter
	env point.Envelope
	// names are the header field names as they came, for replace
	names []string
	// head is the header section as the client sent it (CRLF line ends,
	// without the empty line); chunks are the body as Postfix sent it,
	// kept as they came: go-milter (v0.5.0, readPacket) reads every
	// packet into a buffer of its own, so keeping a chunk copies nothing
	// (TestMilterMessage, several chunks byte for byte, fails if a later
	// go-milter reuses that buffer).
	// The message is put together once, at its end, in a buffer of the
	// exact size (Postfix's milter client announces no size beforehand).
	head   []byte
	chunks [][]byte
	size   int
}

func (s *session) log() *slog.Logger {
	if s.m.Log != nil {
		return s.m.Log
	}
	return slog.Default()
}

// Connect and Helo are not negotiated (SMFIP_NOCONNECT, SMFIP_NOHELO).
func (s *session) Connect(host, family string, port uint16, addr net.IP, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *session) Helo(name string, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *session) MailFrom(from string, m *milter.Modifier) (milter.Response, error) {
	s.reset()
	s.env.MailFrom = from
	s.env.AuthUser = m.Macros["{auth_authen}"]
	s.env.TLS = usedTLS(m.Macros)
	if s.m.RequireAuth && s.env.AuthUser == "" {
		return milter.NewResponseStr('y', "530 5.7.0 PEC: authentication required"), nil
	}
	if !s.m.RequireAuth {
		return nil, nil // SMFIP_NR_MAIL
	}
	return milter.RespContinue, nil
}

// RcptTo, Header and BodyChunk send no reply (SMFIP_NR_RCPT, NR_HDR,
// NR_BODY): go-milter writes none for a nil response.
func (s *session) RcptTo(rcpt string, m *milter.Modifier) (milter.Response, error) {
	s.env.Rcpts = append(s.env.Rcpts, rcpt)
	return nil, nil
}

// Header appends the field as the client sent it: Postfix sends the value
// with its leading space (SMFIP_HDR_LEADSPC) and LF-folded.
func (s *session) Header(name, value string, m *milter.Modifier) (milter.Response, error) {
	s.names = append(s.names, name)
	s.head = append(s.head, name...)
	s.head = append(s.head, ':')
	for i := 0; i < len(value); i++ {
		if value[i] == '\n' && (i == 0 || value[i-1] != '\r') {
			s.head = append(s.head, '\r')
		}
		s.head = append(s.head, value[i])
	}
	s.head = append(s.head, '\r', '\n')
	return nil, nil
}

// Headers is not negotiated (SMFIP_NOEOH).
func (s *session) Headers(h textproto.MIMEHeader, m *milter.Modifier) (milter.Response, error) {
	return milter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, m *milter.Modifier) (milter.Response, error) {
	s.chunks = append(s.chunks, chunk)
	s.size += len(chunk)
	return nil, nil
}

func (s *session) Abort(m *milter.Modifier) error {
	s.reset()
	return nil
}

func (s *session) reset() {
	s.env = point.Envelope{}
	s.names, s.head, s.chunks, s.size = nil, nil, nil, 0
}

// raw puts the message together as the client sent it (CRLF line ends),
// in one buffer of its exact size, and lets the chunks go.
func (s *session) raw() []byte {
	b := make([]byte, 0, len(s.head)+2+s.size)
	b = append(b, s.head...)
	b = append(b, '\r', '\n')
	for _, c := range s.chunks {
		b = append(b, c...)
	}
	s.head, s.chunks = nil, nil
	return b
}

func (s *session) Body(m *milter.Modifier) (milter.Response, error) {
	start := time.Now()
	s.env.QueueID = m.Macros["i"]
	timeout := s.m.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	now := s.m.Clock.Now()
	big := s.size >= bigMessage
	raw := s.raw()
	if big {
		// the chunks go back to the system before the rules build the
		// envelope: their pages, interleaved with small objects, cannot
		// hold the envelope's one large buffer, which takes new pages
		debug.FreeOSMemory()
	}
	d := s.m.Role.Check(ctx, s.env, raw, now)
	// an acceptance is true only once Postfix has queued the envelope:
	// hold it until then (store/held.go)
	token := ""
	if s.m.ConfirmDomain != "" && d.Action == point.Accept && d.Replace != nil {
		token = NewQueuedToken()
		if err := s.m.Store.HoldUntilQueued(token, s.env.QueueID, now, d.Txn); err != nil {
			s.log().Error("store hold failed: tempfailing so the client keeps the message", "role", s.m.Name, "queue_id", s.env.QueueID, "error", err)
			d = point.Tempfail("4.3.0", "PEC: store not available, try again later")
		}
	} else if len(d.Txn.Events) > 0 || len(d.Txn.Outbox) > 0 || len(d.Txn.Virus) > 0 {
		if err := s.m.Store.Commit(d.Txn); err != nil {
			s.log().Error("store commit failed: tempfailing so the client keeps the message", "role", s.m.Name, "queue_id", s.env.QueueID, "error", err)
			d = point.Tempfail("4.3.0", "PEC: store not available, try again later")
		} else if s.m.Kick != nil && len(d.Txn.Outbox) > 0 {
			s.m.Kick()
		}
	}
	elapsed := time.Since(start) // rules and store, before the edits go to Postfix
	if s.m.Observer != nil {
		s.m.Observer(s.m.Name, d, elapsed)
	}
	attrs := []any{"role", s.m.Name, "queue_id", s.env.QueueID, "mail_from", s.env.MailFrom, "rcpts", s.env.Rcpts, "action", d.Action.String(), "reason", d.Reason, "elapsed", elapsed}
	if d.Replace != nil {
		attrs = append(attrs, "pec_id", d.Replace.ID, "kind", d.Replace.Kind)
	}
	if token != "" && d.Action == point.Accept {
		attrs = append(attrs, "held_until_queued", true)
	}
	s.log().Info("message", attrs...)
	// the committed transaction is no longer needed (its virus-store
	// item holds the original); raw is not used below either
	d.Txn = store.Txn{}
	if big && d.Replace != nil {
		// the original too, before the envelope goes to Postfix: the
		// runtime fills the lowest free pages first, those given back
		// above, so the pieces go-milter copies for each ReplaceBody
		// would fault them in again on top of the original's
		debug.FreeOSMemory()
	}
	switch d.Action {
	case point.Reject, point.TempFail:
		return milter.NewResponseStr('y', fmt.Sprintf("%d %s %s", d.Code, d.Status, d.Text)), nil
	case point.Discard:
		return milter.RespDiscard, nil
	}
	for _, r := range d.RemoveRcpts {
		if err := m.DeleteRecipient(r); err != nil {
			return nil, err
		}
	}
	if token != "" {
		if err := m.AddRecipient(QueuedAddress(s.m.ConfirmDomain, token)); err != nil {
			return nil, err // Postfix is gone: it queues nothing, the hold is never confirmed
		}
	}
	if d.Replace != nil {
		if err := s.replace(m, d.Replace); err != nil {
			// tempfail keeps the mail with the client; a held acceptance
			// is never confirmed (without ConfirmDomain the receipt is in
			// the store already and a retry makes a second, visible one)
			s.log().Error("rewriting the message failed", "queue_id", s.env.QueueID, "error", err)
			return milter.NewResponseStr('y', "451 4.3.0 PEC: internal error, try again later"), nil
		}
	}
	return milter.RespAccept, nil
}

// replace turns the message in place into msg: original fields that msg
// does not carry over are deleted, msg's own fields are added, the body is
// replaced. The SMTP envelope is left as it is (RFC 6109 §3.1.5).
func (s *session) replace(m *milter.Modifier, msg *build.Message) error {
	keep := map[string]bool{}
	for _, f := range msg.Header {
		if f.Copied {
			keep[strings.ToLower(f.Name)] = true
		}
	}
	// per-name occurrence counts, deleted from the last occurrence back
	count := map[string]int{}
	for _, name := range s.names {
		count[strings.ToLower(name)]++
	}
	for i := len(s.names) - 1; i >= 0; i-- {
		name := s.names[i]
		ln := strings.ToLower(name)
		idx := count[ln]
		count[ln]--
		if keep[ln] {
			continue
		}
		if err := m.ChangeHeader(idx, name, ""); err != nil {
			return err
		}
	}
	for _, f := range msg.Header {
		if f.Copied {
			continue
		}
		// with SMFIP_HDR_LEADSPC the value carries its leading space
		if err := m.AddHeader(f.Name, " "+strings.ReplaceAll(f.Value, "\r\n", "\n")); err != nil {
			return err
		}
	}
	// each piece ends at a line end; chunks are cut at line ends too, so a
	// CRLF is never split between two packets (go-milter turns CRLF to LF)
	for _, body := range msg.BodyPieces {
		for len(body) > 0 {
			n := len(body)
			if n > 60000 {
				n = bytes.LastIndexByte(body[:60000], '\n') + 1
				if n <= 0 {
					n = 60000
				}
			}
			if err := m.ReplaceBody(body[:n]); err != nil {
				return err
			}
			body = body[n:]
		}
	}
	return nil
}
