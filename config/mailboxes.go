package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// Mailboxes configures the mailbox registry (package mailbox): the
// states and options of the mailboxes live in the store; this is only how
// they are applied.
type Mailboxes struct {
	// ReadOnly is how long a closed mailbox stays readable over IMAP
	// before it is disabled. Default 720h (30 days).
	ReadOnly Duration `toml:"read_only_period"`
	// PasswdFile is the Dovecot passwd-file that pecdeliver (every
	// minute) and pecctl mailbox (after each change) keep in step with
	// the registry; "" leaves Dovecot's users to you.
	PasswdFile string `toml:"passwd_file"`
	// Cache is how long the points keep a mailbox's state and options
	// before reading them again: a change is in force within it, with no
	// restart. Default 10s.
	Cache Duration `toml:"cache"`
}

func (c *Config) mailboxDefaults() {
	if c.Mailboxes.ReadOnly.Duration == 0 {
		c.Mailboxes.ReadOnly.Duration = 30 * 24 * time.Hour
	}
	if c.Mailboxes.Cache.Duration == 0 {
		c.Mailboxes.Cache.Duration = 10 * time.Second
	}
}

func (c *Config) checkMailboxes() []string {
	var errs []string
	m := c.Mailboxes
	if m.ReadOnly.Duration < 0 {
		errs = append(errs, fmt.Sprintf("[mailboxes] read_only_period %v: use a positive duration, e.g. 720h", m.ReadOnly.Duration))
	}
	if m.Cache.Duration < 0 || m.Cache.Duration > 5*time.Minute {
		errs = append(errs, fmt.Sprintf("[mailboxes] cache %v: use a duration up to 5m (a change waits that long to be in force)", m.Cache.Duration))
	}
	if m.PasswdFile != "" && !filepath.IsAbs(m.PasswdFile) {
		errs = append(errs, fmt.Sprintf("[mailboxes] passwd_file %q: use an absolute path (the one Dovecot's passdb reads)", m.PasswdFile))
	}
	return errs
}
