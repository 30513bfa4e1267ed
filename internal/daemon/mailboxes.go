package daemon

import (
	"github.com/pecgo/pec/mailbox"
	"github.com/pecgo/pec/point"
)

// Mailboxes is the mailbox registry as the points read it: the store's
// rows behind a short cache ([mailboxes] cache), so a change made with
// pecctl mailbox is in force on every node without a restart.
func (d *Daemon) Mailboxes() *mailbox.Cache {
	return &mailbox.Cache{Store: d.Store, TTL: d.Cfg.Mailboxes.Cache.Duration, ReadOnly: d.Cfg.Mailboxes.ReadOnly.Duration}
}

// MailboxRegistry is the registry's library API on the daemon's store.
func (d *Daemon) MailboxRegistry() *mailbox.Registry {
	return &mailbox.Registry{Store: d.Store, ReadOnly: d.Cfg.Mailboxes.ReadOnly.Duration, Provider: d.Provider.Name,
		Domains: d.Cfg.Provider.ManagedDomains, Log: d.Log}
}

// RulePolicy is the configuration's policy with the registry's
// per-mailbox options in front of the static ones.
func (d *Daemon) RulePolicy(reg point.MailboxRegistry) *point.Policy {
	p := d.Cfg.RulePolicy()
	p.Registry = reg
	return p
}
