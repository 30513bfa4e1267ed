package lmtp

import (
	"bytes"
	"context"
	"errors"
	"github.com/pecgo/pec/store/sqlite"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/store"
)

// Server is the LMTP front of the delivery point.
type Server struct {
	Delivery *Delivery
	Store    *sqlite.Store
	Dovecot  string // Dovecot LMTP: inet:HOST:PORT or unix:/path
	Kick     func()
	Now      func() time.Time
	Log      *slog.Logger
	Timeout  time.Duration // for one Dovecot transaction; default 5 min
	MaxSize  int64         // refuse bigger messages; default 200 MB
	// Observer, when set, is called once per LMTP transaction (message)
	// after the answer is decided, e.g. for metrics. It must not block.
	Observer func(Report)
	// Service, when set, keeps the mail for the provider's service
	// addresses that Dovecot refuses (service.go).
	Service *ServiceMailbox
}

// Per-recipient outcomes in a Report.
const (
	Delivered = "delivered" // stored by Dovecot
	Failed    = "failed"    // refused permanently by Dovecot (5xx)
	Deferred  = "deferred"  // temporary failure: Postfix keeps the message and retries
)

// Report tells Server.Observer what one LMTP transaction came to.
type Report struct {
	Kind kind.Kind // the message's kind; Ordinaria when not a PEC message or not classified
	// Rcpts is the outcome per recipient, in the order of RCPT TO:
	// Delivered, Failed or Deferred (every recipient when the whole
	// transaction was tempfailed).
	Rcpts []RcptReport
	// Outbox holds the generated messages (receipts) committed to the
	// store for this transaction; empty when nothing was committed.
	Outbox  []store.Outgoing
	Elapsed time.Duration // from the end of DATA to the answer
}

// RcptReport is the outcome for one recipient.
type RcptReport struct {
	Rcpt    string
	Outcome string // Delivered, Failed or Deferred
}

// outcome classifies Dovecot's answer for one recipient.
func outcome(err error) string {
	if err == nil {
		return Delivered
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) && se.Code >= 500 {
		return Failed
	}
	return Deferred
}

// report calls the Observer: err is LMTPData's answer, results Dovecot's
// per-recipient answers when it gave them.
func (ss *session) report(start time.Time, k kind.Kind, results []Result, outbox []store.Outgoing, err error) {
	if ss.s.Observer == nil {
		return
	}
	if k == "" {
		k = kind.Ordinaria
	}
	rep := Report{Kind: k, Elapsed: time.Since(start)}
	byRcpt := make(map[string]error, len(results))
	for _, r := range results {
		byRcpt[r.Rcpt] = r.Err
	}
	for _, rcpt := range ss.rcpts {
		o := Deferred
		if err == nil {
			o = outcome(byRcpt[rcpt])
		}
		rep.Rcpts = append(rep.Rcpts, RcptReport{Rcpt: rcpt, Outcome: o})
	}
	if err == nil {
		rep.Outbox = outbox
	}
	ss.s.Observer(rep)
}

// Serve serves LMTP on ln.
func (s *Server) Serve(ln net.Listener) error {
	srv := smtp.NewServer(s)
	srv.LMTP = true
	srv.Domain = s.Delivery.Provider.Domain
	srv.MaxMessageBytes = s.maxSize()
	srv.MaxRecipients = 1000
	srv.ReadTimeout = 10 * time.Minute
	srv.WriteTimeout = 10 * time.Minute
	return srv.Serve(ln)
}

func (s *Server) maxSize() int64 {
	if s.MaxSize > 0 {
		return s.MaxSize
	}
	return 200 << 20
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// NewSession implements smtp.Backend.
func (s *Server) NewSession(c *smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

type session struct {
	s        *Server
	from     string
	rcpts    []string
	confirms []string // confirmation recipients (filter.QueuedAddress), answered at RCPT
}

func (ss *session) Reset()        { ss.from, ss.rcpts, ss.confirms = "", nil, nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.from = from
	return nil
}

// Rcpt accepts every recipient: for PEC mailboxes the outcome is decided
// at delivery, as a receipt (PEC-SPEC §6.6 rule 7).
func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if token, ok := filter.QueuedToken(to, ss.s.Delivery.Provider.Domain); ok {
		return ss.confirmQueued(to, token)
	}
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

// confirmQueued: Postfix delivers the confirmation recipient only from a
// queued message, so the access point's held acceptance becomes effective
// now (store/held.go). Never a permanent failure: Postfix would bounce it
// to the sender; a store failure is temporary and Postfix retries.
func (ss *session) confirmQueued(rcpt, token string) error {
	s := ss.s
	found, err := s.Store.ConfirmQueued(token)
	if err != nil {
		s.log().Error("cannot make a held acceptance effective, tempfailing: Postfix retries", "rcpt", rcpt, "error", err)
		return errTemp
	}
	if !found {
		s.log().Warn("confirmation for no held acceptance (confirmed already, or dropped as never queued)", "rcpt", rcpt)
	} else {
		s.log().Info("acceptance effective: Postfix queued the envelope", "token", token)
		if s.Kick != nil {
			s.Kick()
		}
	}
	ss.confirms = append(ss.confirms, rcpt)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	return errors.New("pecdeliver speaks LMTP only")
}

var errTemp = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "PEC delivery point: temporary failure, try again later"}

// LMTPData delivers the message and answers per recipient.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) (err error) {
	s := ss.s
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, rcpt := range ss.confirms {
		status.SetStatus(rcpt, nil)
	}
	if len(ss.rcpts) == 0 {
		return nil // only confirmation recipients
	}
	start := time.Now()
	var (
		k       kind.Kind
		results []Result
		sent    []store.Outgoing
	)
	defer func() { ss.report(start, k, results, sent, err) }()
	m, err := s.Delivery.Classify(raw)
	if err != nil {
		s.log().Error("cannot classify, tempfailing", "error", err)
		return errTemp
	}
	k = m.Kind
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results, err = s.deliver(ctx, ss.from, ss.rcpts, raw)
	if err != nil {
		s.log().Error("Dovecot LMTP not available, tempfailing: no receipt until it is back", "dovecot", s.Dovecot, "error", err)
		return errTemp
	}
	// the delivery instant: after Dovecot answered (RFC 6109 §3.3.2)
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	out, err := s.Delivery.Decide(now, m, ss.from, results)
	if err == nil && (len(out.Txn.Events) > 0 || len(out.Txn.Outbox) > 0) {
		err = s.Store.Commit(out.Txn)
	}
	if err != nil {
		// the message may sit in Dovecot already; retrying can deliver it
		// twice, which is better than a delivery without its receipt
		s.log().Error("receipts not recorded, tempfailing", "error", err)
		return errTemp
	}
	sent = out.Txn.Outbox
	if len(out.Txn.Outbox) > 0 && s.Kick != nil {
		s.Kick()
	}
	for _, rcpt := range ss.rcpts {
		err := out.Status[rcpt]
		status.SetStatus(rcpt, err)
		s.log().Info("delivery", "kind", m.Kind, "pec", m.PEC, "rcpt", rcpt, "result", errString(err))
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return "delivered"
	}
	return err.Error()
}

// forward hands the message to Dovecot over LMTP and collects its answer
// per recipient. An error means no answer at all (Dovecot down).
func forward(ctx context.Context, addr, helo, from string, rcpts []string, raw []byte) ([]Result, error) {
	network, a, err := config.SplitAddr(addr)
	if err != nil {
		return nil, err
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, network, a)
	if err != nil {
		return nil, err
	}
	// go-smtp sets its own deadlines per command: bound them by ctx, and
	// close the connection when ctx ends (a Dovecot that stops reading)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		c.CommandTimeout, c.SubmissionTimeout = left, left
	}
	if err := c.Hello(helo); err != nil {
		return nil, err
	}
	if err := c.Mail(from, nil); err != nil {
		return nil, err
	}
	results := make([]Result, len(rcpts))
	var accepted []string
	for i, rcpt := range rcpts {
		results[i].Rcpt = rcpt
		if err := c.Rcpt(rcpt, nil); err != nil {
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				return nil, err
			}
			results[i].Err = stripRcpt(se, rcpt)
			continue
		}
		accepted = append(accepted, rcpt)
	}
	if len(accepted) == 0 {
		return results, nil
	}
	w, err := c.Data()
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, bytes.NewReader(raw)); err != nil {
		return nil, err
	}
	resp, err := w.CloseWithLMTPResponse()
	// per-recipient refusals come as an LMTPDataError; anything else (the
	// connection dropped midway) may come joined with it: then only the
	// recipients Dovecot explicitly confirmed count as stored
	lerr, _ := err.(smtp.LMTPDataError)
	if err != nil && lerr == nil {
		errors.As(err, &lerr)
	}
	for i := range results {
		r := &results[i]
		if r.Err != nil {
			continue
		}
		if e, ok := lerr[r.Rcpt]; ok {
			r.Err = stripRcpt(e, r.Rcpt)
		} else if _, ok := resp[r.Rcpt]; !ok {
			r.Err = errTemp // no answer for this recipient: not stored as far as we know
		}
	}
	c.Quit()
	return results, nil
}

// stripRcpt removes the "<rcpt> " prefix Dovecot puts in LMTP replies:
// our own LMTP server adds it again.
func stripRcpt(se *smtp.SMTPError, rcpt string) *smtp.SMTPError {
	msg := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(se.Message), "<"+rcpt+">"))
	return &smtp.SMTPError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: msg}
}
