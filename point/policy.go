package point

import (
	"cmp"
	"strings"
)

// Policy is the provider's settings the rules read, built once at start-up
// (config.Config.RulePolicy): the rules never see the configuration file.
type Policy struct {
	// ManagedDomains are the mailbox domains we host, lower-case.
	ManagedDomains []string
	// ServiceMailbox is our mailReceipt (RFC 6109 §4.5.4), lower-case.
	ServiceMailbox string
	// OrdinaryMail is the default for mail that is not PEC (RFC 6109
	// §2.2.2): "accept" (wrapped in an anomaly envelope) or "refuse".
	OrdinaryMail string
	// Mailboxes are per-mailbox overrides, by lower-case address.
	Mailboxes map[string]MailboxPolicy
	// EnforceFromDomain turns the RFC 6109 §7 From-domain check from a
	// warning into an anomaly.
	EnforceFromDomain bool
	// RequireTLSFromProviders tempfails a message signed by a provider of
	// the index that arrived without TLS (Envelope.TLS false; Aruba
	// §7.3.3), see tls.go.
	RequireTLSFromProviders bool
	// Registry, when set, gives registered mailboxes' options at run
	// time (mailbox.go); Mailboxes is the fallback.
	Registry MailboxRegistry
}

// MailboxPolicy is one mailbox's options.
type MailboxPolicy struct {
	OrdinaryMail string // "accept" or "refuse"; "" is the default
	ForwardTo    string // a copy of accepted ordinary mail goes there too
}

// IsManaged reports whether addr is in one of our domains.
func (p *Policy) IsManaged(addr string) bool { return InDomains(addr, p.ManagedDomains) }

// Ordinary returns "accept" or "refuse" and the forward address for the
// mailbox addr (RFC 6109 §2.2.2: ordinary mail is wrapped or refused, per
// mailbox).
func (p *Policy) Ordinary(addr string) (policy, forward string) {
	m := p.Mailboxes[strings.ToLower(addr)]
	if o, ok := p.registryOptions(addr); ok { // the registry's options first (mailbox.go)
		m.OrdinaryMail, m.ForwardTo = cmp.Or(o.OrdinaryMail, m.OrdinaryMail), cmp.Or(o.ForwardTo, m.ForwardTo)
	}
	return cmp.Or(m.OrdinaryMail, p.OrdinaryMail), m.ForwardTo
}

// IsServiceMailbox reports whether addr is our mailReceipt.
func (p *Policy) IsServiceMailbox(addr string) bool {
	return p.ServiceMailbox != "" && strings.EqualFold(addr, p.ServiceMailbox)
}

// InDomains reports whether addr's domain is one of domains (case-insensitive):
// the one domain-membership test of the rules.
func InDomains(addr string, domains []string) bool {
	_, dom, ok := strings.Cut(addr, "@")
	if !ok {
		return false
	}
	for _, d := range domains {
		if strings.EqualFold(d, dom) {
			return true
		}
	}
	return false
}
