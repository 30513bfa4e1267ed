// Package lmtp is the delivery point's adapter (RFC 6109 §2.2.3, §3.3): an
// LMTP server that Postfix delivers to and that forwards to Dovecot's
// LMTP, emitting one delivery or non-delivery receipt per recipient of
// every valid transport envelope, according to Dovecot's per-recipient
// answer. The rules are point.Delivery (Classify, Plan, Decide); this
// package reads the store, records the intent before Dovecot gets the end
// of a message, forwards, and commits what Decide returned before it
// answers Postfix. service.go keeps the provider's service mailbox.
package lmtp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// Server is the LMTP front of the delivery point.
type Server struct {
	Delivery *point.Delivery
	Store    store.DeliveryPoint
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
	// Resync, when set, refreshes the providers' index. The delivery point
	// calls it (at most once a minute) before it wraps a message whose
	// signer its copy does not list: pecmilter and pecdeliver refresh their
	// copies at different times, and a provider just added must not see
	// its envelopes wrapped here after the incoming point took them.
	Resync func(context.Context) error
	// ClockProblem, when set, says why no receipt may be signed now (the
	// clock guard, point.ClockProblem); while it does, every message is
	// tempfailed (guard.go).
	ClockProblem func() string

	once     sync.Once
	mu       sync.Mutex
	instance string              // this process, in the owner of every intent it records
	host     string              // its host name (the owner ids of other hosts name theirs)
	seq      uint64              // LMTP transactions so far
	active   map[string]bool     // owners of the transactions running now
	known    map[string]knownRes // outcomes Dovecot gave that the store did not take
	resynced time.Time           // last Resync
}

// knownRes is an outcome this process saw and could not record.
type knownRes struct {
	r    point.MailboxResult
	seen time.Time
}

// Per-recipient outcomes in a Report.
const (
	Delivered = "delivered" // stored by Dovecot (as it came or wrapped in an anomaly envelope)
	Failed    = "failed"    // refused permanently by Dovecot (5xx), or by the mailbox's ordinary-mail policy
	Deferred  = "deferred"  // temporary failure: Postfix keeps the message and retries
	Duplicate = "duplicate" // handed to Dovecot before for this message: not stored again, no second receipt
)

// Report tells Server.Observer what one LMTP transaction came to.
type Report struct {
	Kind kind.Kind // the message's kind; Ordinaria when not a PEC message or not classified
	// Rcpts is the outcome per recipient, in the order of RCPT TO:
	// Delivered, Failed, Deferred or Duplicate (every recipient Deferred
	// when the whole transaction was tempfailed).
	Rcpts []RcptReport
	// Outbox holds the generated messages (receipts) committed to the
	// store for this transaction; empty when nothing was committed.
	Outbox  []store.Outgoing
	Elapsed time.Duration // from the end of DATA to the answer
}

// RcptReport is the outcome for one recipient.
type RcptReport struct {
	Rcpt    string
	Outcome string // Delivered, Failed, Deferred or Duplicate
}

// outcome classifies Dovecot's answer for one recipient.
func outcome(err error) string {
	if err == nil {
		return Delivered
	}
	if point.PermanentFailure(err) {
		return Failed
	}
	return Deferred
}

// report calls the Observer: err is LMTPData's answer, outcomes the
// per-recipient outcomes when it gave them.
func (ss *session) report(start time.Time, k kind.Kind, outcomes map[string]string, outbox []store.Outgoing, err error) {
	if ss.s.Observer == nil {
		return
	}
	if k == "" {
		k = kind.Ordinaria
	}
	rep := Report{Kind: k, Elapsed: time.Since(start)}
	for _, rcpt := range ss.rcpts {
		o := Deferred
		if err == nil && outcomes[rcpt] != "" {
			o = outcomes[rcpt]
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

var errTemp = point.ErrDeliveryTemporary

// LMTPData delivers the message and answers per recipient.
//
// At most one copy per (message, recipient) reaches Dovecot: the intent
// is committed to the store after Dovecot accepted the recipients and got
// the message, before it gets the message's end; if the store cannot be
// written, Dovecot never gets the end (it drops the message with the
// connection) and Postfix gets a 4xx. The outcome is committed with the
// receipts before Postfix gets its answer; when that commit fails, the
// outcome is kept in memory, Postfix gets a 4xx, and its retry commits it
// without handing the message to Dovecot again.
func (ss *session) LMTPData(r io.Reader, status smtp.StatusCollector) (err error) {
	s := ss.s
	s.setup()
	if len(ss.rcpts) == 0 {
		// only confirmation recipients: the message is not needed (at
		// 1 MB, not keeping the envelope's copy saves its allocation)
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
		for _, rcpt := range ss.confirms {
			status.SetStatus(rcpt, nil)
		}
		return nil
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, rcpt := range ss.confirms {
		status.SetStatus(rcpt, nil)
	}
	start := time.Now()
	var (
		k        kind.Kind
		outcomes map[string]string
		sent     []store.Outgoing
	)
	defer func() { ss.report(start, k, outcomes, sent, err) }()
	if err := s.clockRefusal(); err != nil { // guard.go
		return err
	}
	m, err := s.Delivery.Classify(raw)
	if err == nil && m.UnknownSigner && s.resync() {
		m, err = s.Delivery.Classify(raw)
	}
	if err != nil {
		s.log().Error("cannot classify the message (providers' index or store not available), tempfailing", "error", err)
		return errTemp
	}
	k = m.Kind
	owner := s.begin()
	defer s.end(owner)
	env := point.Envelope{MailFrom: ss.from, Rcpts: ss.rcpts}
	rows, err := s.Store.Deliveries(m.Key, ss.rcpts)
	if err != nil {
		s.log().Error("store not readable, tempfailing: check the store file", "error", err)
		return errTemp
	}
	plan, err := s.Delivery.Plan(s.now(), m, env, s.judge(m.Key, rows))
	if err != nil {
		s.log().Error("cannot plan the delivery, tempfailing", "error", err)
		return errTemp
	}
	timeout := s.Timeout
	if timeout == 0 {
		timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	results := make([][]point.MailboxResult, len(plan.Groups))
	for i, g := range plan.Groups {
		results[i] = append(results[i], g.Done...)
		if len(g.Rcpts) == 0 {
			continue
		}
		claim := func(accepted []string) error { return s.Store.ClaimDeliveries(m.Key, accepted, owner, s.now()) }
		res, err := forward(ctx, s.Dovecot, s.Delivery.Provider.Domain, ss.from, g.Rcpts, g.Data, owner.ID, claim)
		switch {
		case errors.Is(err, store.ErrDeliveryConflict):
			s.log().Warn("another transaction recorded the delivery of this message meanwhile: not handed to Dovecot, tempfailing",
				"key", m.Key, "rcpts", g.Rcpts)
		case errors.Is(err, errNotClaimed):
			s.log().Error("store not writable: message not handed to Dovecot, tempfailing (free space or fix the permissions of the store)",
				"key", m.Key, "rcpts", g.Rcpts, "error", err)
		case err != nil:
			s.log().Error("Dovecot LMTP not available, tempfailing: no receipt until it is back", "dovecot", s.Dovecot, "error", err)
		case s.Service != nil:
			// the service mailbox never refuses (service.go)
			res = s.Service.settle(res, g.Data)
		}
		if err != nil {
			res = make([]point.MailboxResult, len(g.Rcpts))
			for j, r := range g.Rcpts {
				res[j] = point.MailboxResult{Rcpt: r, Err: errTemp}
			}
		}
		at := s.now() // the delivery instant: after Dovecot answered (RFC 6109 §3.3.2)
		for j := range res {
			res[j].At = at
		}
		results[i] = append(results[i], res...)
	}
	out, err := s.Delivery.Decide(s.now(), m, env, plan, results)
	if err == nil {
		err = s.Store.Commit(out.Txn)
	}
	if err != nil {
		n := s.remember(m.Key, results)
		s.log().Error("delivery outcome not recorded, tempfailing: Postfix retries and the retry records it without storing the message again",
			"key", m.Key, "outcomes_kept", n, "error", err)
		return errTemp
	}
	s.forget(m.Key, ss.rcpts)
	sent = out.Txn.Outbox
	if len(out.Txn.Outbox) > 0 && s.Kick != nil {
		s.Kick()
	}
	outcomes = map[string]string{}
	for i := range plan.Groups {
		for _, r := range results[i] {
			outcomes[r.Rcpt] = outcome(r.Err)
		}
	}
	for _, r := range plan.Duplicate {
		outcomes[r] = Duplicate
	}
	for _, o := range plan.Unknown {
		outcomes[o.Rcpt] = Duplicate
	}
	for _, r := range plan.Refused {
		outcomes[r] = Failed
	}
	for _, rcpt := range ss.rcpts {
		err := out.Status[rcpt]
		status.SetStatus(rcpt, err)
		s.log().Info("delivery", "kind", m.Kind, "class", m.Class, "key", m.Key, "rcpt", rcpt, "result", errString(err), "note", note(plan, rcpt))
	}
	for _, o := range plan.Unknown {
		s.log().Error("outcome of an earlier delivery lost (it ended after Dovecot got the whole message, before its answer was recorded): "+
			"closed without a second copy and without a receipt; check whether the mailbox holds the message", "key", m.Key, "rcpt", o.Rcpt)
	}
	return nil
}

// note says, for the log, why a recipient got its answer without Dovecot.
func note(p *point.DeliveryPlan, rcpt string) string {
	for _, r := range p.Duplicate {
		if r == rcpt {
			return "handed to Dovecot before: not stored again, no second receipt"
		}
	}
	for _, o := range p.Unknown {
		if o.Rcpt == rcpt {
			return "outcome of an earlier attempt unknown: not stored again, no receipt"
		}
	}
	for _, g := range p.Groups {
		for _, r := range append(g.Rcpts, doneRcpts(g)...) {
			if r == rcpt && g.Treatment == point.Wrapped {
				return "wrapped in an anomaly envelope: " + g.Reason
			}
		}
	}
	return ""
}

func doneRcpts(g *point.DeliveryGroup) []string {
	var out []string
	for _, r := range g.Done {
		out = append(out, r.Rcpt)
	}
	return out
}

// resync refreshes the providers' index, at most once a minute; it
// reports whether it did.
func (s *Server) resync() bool {
	if s.Resync == nil {
		return false
	}
	s.mu.Lock()
	if time.Since(s.resynced) < time.Minute {
		s.mu.Unlock()
		return false
	}
	s.resynced = time.Now()
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Resync(ctx); err != nil {
		s.log().Warn("providers' index refresh for an unknown signer failed; deciding with the copy in hand", "error", err)
		return false
	}
	return true
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) setup() {
	s.once.Do(func() {
		var b [8]byte
		rand.Read(b[:])
		// the host name in the owner tells other nodes of a cluster (one
		// PostgreSQL store) that its PID is not theirs to check
		s.host, _ = os.Hostname()
		s.instance = s.host + ":" + hex.EncodeToString(b[:])
		s.active = map[string]bool{}
		s.known = map[string]knownRes{}
	})
}

// begin registers a running LMTP transaction; its owner marks the intents
// it records.
func (s *Server) begin() store.DeliveryOwner {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	o := store.DeliveryOwner{ID: fmt.Sprintf("%s/%d", s.instance, s.seq), PID: os.Getpid()}
	s.active[o.ID] = true
	return o
}

func (s *Server) end(o store.DeliveryOwner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.active, o.ID)
}

// lease bounds how long another live process's intent counts as a
// delivery in progress: past one Dovecot transaction it is orphaned.
func (s *Server) lease() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout + time.Minute
	}
	return 6 * time.Minute
}

// judge tells point.Delivery.Plan, for the recorded rows, which pending intents are in
// progress, which ended with an outcome this process kept, and which are
// orphaned: recorded by a transaction of this process that ended, by a
// process that is gone, or longer ago than a Dovecot transaction lasts.
func (s *Server) judge(key string, rows map[string]store.Delivery) map[string]point.Seen {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]point.Seen{}
	for rcpt, d := range rows {
		sn := point.Seen{State: d.State, Owner: d.Owner.ID}
		if d.State == store.DeliveryPending && !s.active[d.Owner.ID] {
			if k, ok := s.known[key+"\x00"+rcpt]; ok && k.r.Owner == d.Owner.ID {
				r := k.r
				sn.Known = &r
			} else if strings.HasPrefix(d.Owner.ID, s.instance+"/") || s.sameHost(d.Owner.ID) && (d.Owner.PID == os.Getpid() || !alive(d.Owner.PID)) || now.Sub(d.At) > s.lease() {
				sn.Orphaned = true
			}
		}
		seen[rcpt] = sn
	}
	return seen
}

// sameHost reports whether an owner id was made on this host (ids without
// a host name come from a single-machine store).
func (s *Server) sameHost(id string) bool {
	h, _, ok := strings.Cut(id, ":")
	return !ok || h == s.host
}

// alive reports whether process pid exists (on this machine: the store is
// a local file).
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// remember keeps the outcomes Dovecot gave for recorded intents when the
// store did not take them; it returns how many.
func (s *Server) remember(key string, results [][]point.MailboxResult) int {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.known) > 10000 {
		for k, v := range s.known {
			if now.Sub(v.seen) > 25*time.Hour { // Postfix gave up (maximal_queue_lifetime)
				delete(s.known, k)
			}
		}
	}
	n := 0
	for _, g := range results {
		for _, r := range g {
			if r.Owner != "" && !r.Unconfirmed {
				s.known[key+"\x00"+strings.ToLower(r.Rcpt)] = knownRes{r: r, seen: now}
				n++
			}
		}
	}
	return n
}

func (s *Server) forget(key string, rcpts []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rcpts {
		delete(s.known, key+"\x00"+strings.ToLower(r))
	}
}

func errString(err error) string {
	if err == nil {
		return "delivered"
	}
	return err.Error()
}

// errNotClaimed: the intent could not be recorded, so Dovecot did not get
// the end of the message.
var errNotClaimed = errors.New("intent not recorded")

// forward hands the message to Dovecot over LMTP and collects its answer
// per recipient. An error means that Dovecot stored nothing: no answer at
// all (Dovecot down), or claim failed.
//
// claim, when not nil, is called with the recipients Dovecot accepted,
// after it got the whole message and before the end of data: only when it
// returns nil does Dovecot get the end of the message; otherwise the
// connection is closed and Dovecot drops what it got. Their results carry
// owner.
func forward(ctx context.Context, addr, helo, from string, rcpts []string, raw []byte, owner string, claim func(accepted []string) error) ([]point.MailboxResult, error) {
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
	results := make([]point.MailboxResult, len(rcpts))
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
	if claim != nil {
		if err := claim(accepted); err != nil {
			return nil, fmt.Errorf("%w: %w", errNotClaimed, err) // the deferred Close drops the message
		}
	} else {
		owner = ""
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
			continue // refused at RCPT
		}
		r.Owner = owner
		if e, ok := lerr[r.Rcpt]; ok {
			r.Err = stripRcpt(e, r.Rcpt)
		} else if _, ok := resp[r.Rcpt]; !ok {
			// no answer for this recipient: Dovecot may have stored it or not
			r.Err, r.Unconfirmed = errTemp, true
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
