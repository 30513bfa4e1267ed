package lmtp

// The provider's service mailbox (posta-certificata@<domain>, and
// [provider] mail_receipt when it differs): where other providers send
// take-charge receipts and virus notices, and where Postfix returns the
// bounces of the notices we send (their MAIL FROM is posta-certificata@).
// No receipt may vanish there (RFC 6109 §2.2.3, §3.2), so its mail is
// always accepted: handed to Dovecot like any mailbox, and kept in a
// maildir that pecdeliver manages when Dovecot refuses it permanently (no
// such user, quota, disabled). A bounce of one of our notices leaves an
// event-log row, a metric and a log line naming the cause.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// ServiceMailbox keeps the mail for the provider's service addresses.
type ServiceMailbox struct {
	// Addrs are the service addresses (compared case-insensitively).
	Addrs []string
	// Maildir is where their mail goes when Dovecot refuses it
	// permanently ([deliver] service_maildir).
	Maildir string
	// Store, when set, gets one event-log row per bounced notice.
	Store    store.Committer
	Provider string // our provider's name, for the log rows
	Log      *slog.Logger
	Now      func() time.Time
	// OnUndeliverable, when set, is called once per recipient of a notice
	// reported undeliverable by a bounce, with the notice's kind (for
	// metrics). It must not block.
	OnUndeliverable func(stage, kind string)
}

// StageBounce is the stage of OnUndeliverable for a bounce received in the
// service mailbox (outbox.StageReinject is the other one).
const StageBounce = "bounce"

func (b *ServiceMailbox) log() *slog.Logger {
	if b.Log != nil {
		return b.Log
	}
	return slog.Default()
}

func (b *ServiceMailbox) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Is reports whether rcpt is one of the service addresses.
func (b *ServiceMailbox) Is(rcpt string) bool {
	for _, a := range b.Addrs {
		if strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(rcpt)) {
			return true
		}
	}
	return false
}

// settle replaces Dovecot's permanent refusal of a service address by a
// delivery into the maildir, and reads the bounces that reached the
// service mailbox. A maildir that cannot be written is a temporary
// failure: Postfix keeps the message and retries, nothing is lost.
func (b *ServiceMailbox) settle(results []point.MailboxResult, raw []byte) []point.MailboxResult {
	stored := false
	for i := range results {
		r := &results[i]
		if !b.Is(r.Rcpt) {
			continue
		}
		if r.Err == nil {
			stored = true
			continue
		}
		if r.Err != nil && !point.PermanentFailure(r.Err) { // temporary: Postfix retries
			continue
		}
		path, err := b.Store1(raw)
		if err != nil {
			b.log().Error("service mailbox: Dovecot refused it and the service maildir cannot be written, tempfailing: Postfix retries",
				"rcpt", r.Rcpt, "dovecot", r.Err.Error(), "maildir", b.Maildir, "error", err)
			r.Err = errTemp
			continue
		}
		b.log().Warn("service mailbox: Dovecot refused it, kept in the service maildir; create the Dovecot user to read it over IMAP",
			"rcpt", r.Rcpt, "dovecot", r.Err.Error(), "file", path)
		r.Err = nil
		stored = true
	}
	if stored {
		b.noteBounce(raw)
	}
	return results
}

var maildirSeq atomic.Int64

// Store1 writes one message into the maildir (tmp/, synced, then renamed
// into new/) and returns its path.
func (b *ServiceMailbox) Store1(raw []byte) (string, error) {
	if err := b.makeDirs(); err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", "\\057", ":", "\\072").Replace(host)
	now := b.now()
	name := fmt.Sprintf("%d.M%dP%dQ%d.%s", now.Unix(), now.Nanosecond()/1000, os.Getpid(), maildirSeq.Add(1), host)
	tmp := filepath.Join(b.Maildir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return "", err
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	dst := filepath.Join(b.Maildir, "new", name)
	if err := os.Rename(tmp, dst); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return dst, nil
}

func (b *ServiceMailbox) makeDirs() error {
	if b.Maildir == "" {
		return errors.New("no service maildir configured ([deliver] service_maildir)")
	}
	for _, d := range []string{b.Maildir, filepath.Join(b.Maildir, "tmp"), filepath.Join(b.Maildir, "new"), filepath.Join(b.Maildir, "cur")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	return nil
}

// Check is pecdeliver's start-up check. The service maildir must be
// writable (an error: pecdeliver must not start). Dovecot is asked, with
// MAIL and RCPT only, whether it has a mailbox for each service address:
// a refusal or no answer is logged as a warning, since the maildir keeps
// that mail anyway, but only on disk.
func (b *ServiceMailbox) Check(ctx context.Context, dovecot, helo string) error {
	if err := b.makeDirs(); err != nil {
		return fmt.Errorf("service maildir %s: %w: pecdeliver keeps there the mail for %s that Dovecot refuses; set [deliver] service_maildir to a directory user pec can write (the default is service-mail next to [store] path)",
			b.Maildir, err, strings.Join(b.Addrs, ", "))
	}
	probe := filepath.Join(b.Maildir, "tmp", fmt.Sprintf(".probe-%d", os.Getpid()))
	if err := os.WriteFile(probe, []byte("x"), 0o600); err != nil {
		return fmt.Errorf("service maildir %s is not writable: %w: fix its owner (user pec) or set [deliver] service_maildir", b.Maildir, err)
	}
	os.Remove(probe)
	answers, err := ProbeRcpts(ctx, dovecot, helo, b.Addrs)
	if err != nil {
		b.log().Warn("service mailbox: cannot ask Dovecot whether it knows the service addresses; their mail goes to the service maildir while Dovecot refuses it",
			"dovecot", dovecot, "addrs", b.Addrs, "maildir", b.Maildir, "error", err)
		return nil
	}
	for _, a := range b.Addrs {
		if e := answers[a]; e != nil {
			b.log().Warn("SERVICE MAILBOX NOT IN DOVECOT: take-charge receipts, virus notices and bounces of our notices for it are kept in the service maildir only; add the user to Dovecot to read them over IMAP",
				"addr", a, "dovecot_answer", e.Error(), "maildir", b.Maildir)
		} else {
			b.log().Info("service mailbox deliverable in Dovecot", "addr", a, "fallback_maildir", b.Maildir)
		}
	}
	return nil
}

// ProbeRcpts asks an LMTP server with LHLO, MAIL FROM:<> and one RCPT per
// address whether it takes mail for each address (nil: yes), and sends no
// message. The error is set when the server cannot be asked at all.
func ProbeRcpts(ctx context.Context, addr, helo string, rcpts []string) (map[string]error, error) {
	network, a, err := config.SplitAddr(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, network, a)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello(helo); err != nil {
		return nil, err
	}
	if err := c.Mail("", nil); err != nil {
		return nil, err
	}
	out := map[string]error{}
	for _, r := range rcpts {
		err := c.Rcpt(r, nil)
		var se *smtp.SMTPError
		if err != nil && !errors.As(err, &se) {
			return nil, err
		}
		if se != nil {
			out[r] = stripRcpt(se, r)
		} else {
			out[r] = nil
		}
	}
	c.Reset()
	c.Quit()
	return out, nil
}

// Bounce is what a delivery status notification (RFC 3464) says about one
// of our messages.
type Bounce struct {
	MessageID string    // the bounced message's Message-ID
	Kind      kind.Kind // its kind (X-Ricevuta / X-Trasporto); Ordinaria for forwarded copies
	Subject   string
	Failed    []FailedRcpt
}

// FailedRcpt is one recipient with Action: failed.
type FailedRcpt struct {
	Rcpt   string
	Status string // e.g. 5.1.1
	Cause  string // Diagnostic-Code without its type, else the Status
}

// ParseBounce reads a DSN (multipart/report; report-type=delivery-status),
// also inside an anomaly envelope (our incoming point wraps the DSNs that
// other MTAs send to port 25). ok is false for anything else, and for DSNs
// with no failed recipient (delayed, relayed).
func ParseBounce(raw []byte) (b Bounce, ok bool) {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return b, false
	}
	if h.Get("X-Trasporto") != "" {
		if p, err := parse.Parse(raw); err == nil && p.Kind == kind.Anomalia && p.Original != nil {
			return ParseBounce(p.Original)
		}
		return b, false
	}
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	if mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") {
		return b, false
	}
	parts, err := rawmime.Parts(body, params["boundary"])
	if err != nil {
		return b, false
	}
	for _, p := range parts {
		ph, pbody, err := rawmime.Split(p)
		if err != nil {
			continue
		}
		switch t, _ := rawmime.MediaType(ph.Get("Content-Type")); t {
		case "message/delivery-status", "message/global-delivery-status":
			b.Failed = append(b.Failed, failedRcpts(pbody)...)
		case "message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers":
			oh, _, err := rawmime.Split(pbody)
			if err != nil && len(oh) == 0 {
				continue
			}
			b.MessageID = oh.Get("Message-ID")
			b.Subject = oh.Get("Subject")
			b.Kind = kind.FromHeaders(strings.ToLower(oh.Get("X-Trasporto")), strings.ToLower(oh.Get("X-Ricevuta")), oh.Has("X-VerificaSicurezza"))
		}
	}
	if b.Kind == "" {
		b.Kind = kind.Ordinaria
	}
	return b, len(b.Failed) > 0
}

// failedRcpts reads the per-recipient groups of a delivery-status body.
func failedRcpts(body []byte) []FailedRcpt {
	var out []FailedRcpt
	for _, group := range bytes.Split(body, []byte("\r\n\r\n")) {
		group = bytes.TrimSpace(group)
		if len(group) == 0 {
			continue
		}
		h, _, err := rawmime.Split(append(group, "\r\n"...))
		if err != nil || !strings.EqualFold(h.Get("Action"), "failed") {
			continue
		}
		rcpt := h.Get("Final-Recipient")
		if o := h.Get("Original-Recipient"); o != "" {
			rcpt = o
		}
		if _, addr, ok := strings.Cut(rcpt, ";"); ok {
			rcpt = strings.TrimSpace(addr)
		}
		cause := h.Get("Diagnostic-Code")
		if _, c, ok := strings.Cut(cause, ";"); ok {
			cause = strings.TrimSpace(c)
		}
		if cause == "" {
			cause = h.Get("Status")
		}
		out = append(out, FailedRcpt{Rcpt: rcpt, Status: h.Get("Status"), Cause: cause})
	}
	return out
}

// noteBounce records a bounce that reached the service mailbox: one
// event-log row per failed recipient, the metric and an error log line.
// Nothing here makes the delivery fail: the bounce is stored already.
func (b *ServiceMailbox) noteBounce(raw []byte) {
	bo, ok := ParseBounce(raw)
	if !ok {
		return
	}
	now := b.now().Truncate(time.Second)
	var txn store.Txn
	for _, f := range bo.Failed {
		b.log().Error("a message we sent could not be delivered: the recipient's server returned it to the service mailbox",
			"kind", bo.Kind, "message_id", bo.MessageID, "rcpt", f.Rcpt, "status", f.Status, "cause", f.Cause)
		if b.OnUndeliverable != nil {
			b.OnUndeliverable(StageBounce, string(bo.Kind))
		}
		var related []string
		if bo.MessageID != "" {
			related = []string{bo.MessageID}
		}
		txn.Events = append(txn.Events, store.Event{Time: now, Point: store.AtDelivery, Type: store.TypeUndeliverable,
			Sender: firstOr(b.Addrs), Recipients: []string{f.Rcpt}, Subject: bo.Subject, Related: related,
			Provider: b.Provider, Error: strings.TrimSpace(string(bo.Kind) + ": " + f.Cause)})
	}
	if b.Store == nil {
		return
	}
	if err := b.Store.Commit(txn); err != nil {
		b.log().Error("cannot record the bounce of our message in the event log; the bounce itself is in the service mailbox",
			"message_id", bo.MessageID, "error", err)
	}
}

func firstOr(a []string) string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}
