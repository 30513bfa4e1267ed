// Package point is the rule core of the PEC points (RFC 6109 §2.2): the
// access point on the submission service (§2.2.1, §3.1), the incoming
// point on port 25 (§2.2.2, §3.2) and the delivery point (§2.2.3, §3.3).
// Each rule is a pure function of the SMTP envelope, the raw message, the
// instant and the provider's state as narrow interfaces (providers'
// index, antivirus, log counts): it returns a Decision — the SMTP answer,
// the message to put in place, the log rows, receipts and timers to record
// (a store.Txn, the store's driver-free contract) — and does no I/O itself.
// The adapters (package filter for the milter, package lmtp for LMTP)
// commit the Decision before they answer the MTA. This package imports no
// database driver, no cgo, no milter library and no configuration reader
// (TestCoreDependencies).
package point

import (
	"context"
	"crypto/x509"
	"io"
	"strings"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/store"
)

// Envelope is the SMTP envelope of one transaction.
type Envelope struct {
	MailFrom string   // reverse-path, without angle brackets
	Rcpts    []string // forward-paths
	AuthUser string   // SASL login ({auth_authen}); "" when not authenticated
	QueueID  string   // Postfix queue id, for the log
	TLS      bool     // the client's connection used TLS ({tls_version})
}

// Action is what the MTA is told.
type Action int

// The actions.
const (
	Accept   Action = iota // queue the message (as Replace when set)
	Reject                 // permanent refusal with Reply
	TempFail               // temporary refusal: the client keeps the message and retries
	Discard                // take responsibility (250) and drop: the notices tell the sender
)

func (a Action) String() string {
	return [...]string{"accept", "reject", "tempfail", "discard"}[a]
}

// Decision is a role's answer for one message.
type Decision struct {
	Action  Action
	Code    int    // SMTP reply code for Reject/TempFail
	Status  string // enhanced status code, e.g. "5.7.1"
	Text    string // reply text (ASCII)
	Replace *build.Message
	// RemoveRcpts are recipients to drop from the transaction (mailboxes
	// that refuse ordinary mail when others accept it).
	RemoveRcpts []string
	// Txn holds the log rows, the generated messages and virus-store
	// items; it must be committed before the MTA gets the answer.
	Txn store.Txn
	// Reason says why, for the operator's log.
	Reason string
	// Kind is the kind of PEC message the point recognised and judged
	// valid ("" for ordinary mail and for what the access point receives):
	// the metrics' label, beside Replace's kind.
	Kind kind.Kind
}

// Scanner is the antivirus (clamd).
type Scanner interface {
	Scan(ctx context.Context, r io.Reader) (clamd.Result, error)
}

// Directory is the providers' index as the roles use it (RFC 6109 §4.5).
type Directory interface {
	// IsCertified reports whether addr's domain is managed by a PEC provider.
	IsCertified(addr string) bool
	// Provider returns the provider owning the signing certificate: its
	// name, service mailbox (mailReceipt) and managed domains.
	ProviderFor(cert *x509.Certificate) (name, mailReceipt string, domains []string, err error)
}

// Reply is a decision with an SMTP answer; the text is kept 7-bit.
func Reply(action Action, code int, status, text string) Decision {
	return Decision{Action: action, Code: code, Status: status, Text: ascii(text), Reason: text}
}

// Tempfail is a 451 with the enhanced status: the client keeps the
// message and retries (fail closed).
func Tempfail(status, text string) Decision { return Reply(TempFail, 451, status, text) }

func reply(action Action, code int, status, text string) Decision {
	return Reply(action, code, status, text)
}

func tempfail(status, text string) Decision { return Tempfail(status, text) }

// ascii keeps SMTP replies 7-bit: accented letters lose the accent.
func ascii(s string) string {
	r := strings.NewReplacer("à", "a'", "è", "e'", "é", "e'", "ì", "i'", "ò", "o'", "ù", "u'")
	s = r.Replace(s)
	return strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e {
			return '?'
		}
		return c
	}, s)
}

func lower(a []string) []string {
	out := make([]string, len(a))
	for i, x := range a {
		out[i] = strings.ToLower(x)
	}
	return out
}

// SubjectOf is the decoded Subject of o, "" for none.
func SubjectOf(o *build.Original) string {
	if o == nil {
		return ""
	}
	return build.DecodeSubject(o.Subject)
}

// Clock gives the transaction instant, whole seconds (RFC 6109 §4.1: one
// instant for Date, daticert, signature and log).
type Clock func() time.Time

// Now is the instant, whole seconds.
func (c Clock) Now() time.Time {
	if c == nil {
		return time.Now().Truncate(time.Second)
	}
	return c().Truncate(time.Second)
}
