// Package config reads the one configuration file shared by pecmilter,
// pecdeliver and pecctl (by default /etc/pec/pec.toml).
package config

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/hsm"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
)

// DefaultPath is where the programs look when -config is not given.
const DefaultPath = "/etc/pec/pec.toml"

// Config is the whole file.
type Config struct {
	Provider Provider `toml:"provider"`
	Signing  Signing  `toml:"signing"`
	Limits   Limits   `toml:"limits"`
	Clamd    Clamd    `toml:"clamd"`
	Milter   Milter   `toml:"milter"`
	Deliver  Deliver  `toml:"deliver"`
	Reinject Reinject `toml:"reinject"`
	Store    Store    `toml:"store"`
	Log      Log      `toml:"log"` // sealing.go
	Index    Index    `toml:"index"`
	Policy   Policy   `toml:"policy"`
	// Mailboxes: the mailbox registry (mailboxes.go)
	Mailboxes Mailboxes `toml:"mailboxes"`
}

// Provider describes us.
type Provider struct {
	Name           string   `toml:"name"`            // gestore-emittente and the certificate's O
	Domain         string   `toml:"domain"`          // mail domain of posta-certificata@
	ManagedDomains []string `toml:"managed_domains"` // the mailbox domains we host
	MailReceipt    string   `toml:"mail_receipt"`    // our service mailbox (index mailReceipt)
	TimeZone       string   `toml:"time_zone"`       // default Europe/Rome
}

// Signing is the provider key and certificate (RFC 6109 §5.5).
type Signing struct {
	Certificate  string   `toml:"certificate"`   // PEM: leaf first, then intermediates
	Key          string   `toml:"key"`           // PEM PKCS#8, PKCS#1 or EC private key
	Digest       string   `toml:"digest"`        // sha256 (default), sha1, sha384, sha512
	TrustedRoots []string `toml:"trusted_roots"` // PEM files: roots of the PEC providers' CA
	// CRL is how the incoming point uses the signer chain's CRLs (RFC
	// 6109 §2.2.2): "off", "soft" (default: a revoked certificate makes an
	// anomaly, an unreachable CRL is logged and the message accepted) or
	// "hard" (an unreachable CRL tempfails the message).
	CRL string `toml:"crl"`
	// SHA1Cutoff: a SHA-1 signature on a certificate of another provider's
	// chain is accepted when the message was signed before this day
	// (YYYY-MM-DD, UTC), refused after it; "off" refuses SHA-1 always.
	// Default 2017-01-01 (PEC-SPEC §6.7: 2014-era chains).
	SHA1Cutoff string `toml:"sha1_cutoff"`
	// ClockMaxError is the clock guard's bound (guard.go): above this
	// maximum error of the kernel clock, or with the clock not
	// synchronised, the points refuse to sign. Default "1s"; "off" only
	// on test machines.
	ClockMaxError string `toml:"clock_max_error"`

	// The key in a PKCS#11 token (HSM, RFC 6109 §5.1) instead of key: set
	// pkcs11_module and leave key empty. The certificate chain still
	// comes from certificate; its public key must be the token key's.
	PKCS11Module   string `toml:"pkcs11_module"`    // the vendor's library, e.g. /usr/lib/softhsm/libsofthsm2.so
	PKCS11Token    string `toml:"pkcs11_token"`     // token label (not slot number)
	PKCS11Pin      string `toml:"pkcs11_pin"`       // user PIN, or:
	PKCS11PinFile  string `toml:"pkcs11_pin_file"`  // a file holding only the PIN (trailing newline ignored), mode 0600
	PKCS11KeyLabel string `toml:"pkcs11_key_label"` // CKA_LABEL of the key pair
	PKCS11KeyID    string `toml:"pkcs11_key_id"`    // optional CKA_ID in hex (e.g. "01"), with or instead of the label
}

// Limits of the access point (RFC 6109 §2.2.1; PROVIDER-REQUIREMENTS).
type Limits struct {
	MaxRecipients     int   `toml:"max_recipients"`       // default 50
	MaxSizeTimesRcpts int64 `toml:"max_size_times_rcpts"` // bytes, default 100 MB
	MessagesPerHour   int   `toml:"messages_per_hour"`    // per sending mailbox, default 1000
	NoticeMaxSize     int64 `toml:"notice_max_size"`      // above this size a failed check gets only the SMTP error (RFC 6109 §3.1.2); default 200 MB
	// Header limits (RFC 6109 §3.1.2 formal checks): what Postfix's
	// cleanup can carry and rewrite intact (point.DefaultMaxHeaderFields).
	MaxHeaderFields    int `toml:"max_header_fields"`     // default 1000, at most 5000
	MaxHeaderFieldSize int `toml:"max_header_field_size"` // octets of one field, default 50000, at most 57000
}

// Upper bounds of the header limits: Postfix's cleanup fails to rewrite
// about 10 000 header fields (REVERSE_JUMP_LIMIT) and, with milters,
// cuts every field at 60 000 octets (KLUDGE_HEADER_LIMIT) in records of
// up to line_length_limit (2 048) octets; a limit above these would let a
// message be certified that Postfix then loses or cuts.
const (
	maxHeaderFieldsCap    = 5000
	maxHeaderFieldSizeCap = 57000
)

// Clamd is the antivirus daemon.
type Clamd struct {
	Network string   `toml:"network"` // tcp or unix
	Address string   `toml:"address"`
	Timeout Duration `toml:"timeout"` // default 60s
}

// Milter is where pecmilter listens: one listener per role. Use unix
// sockets (see Listen): on TCP any local process can ask for a signature.
type Milter struct {
	Access   string `toml:"access"`   // e.g. unix:/run/pec/access.sock
	Incoming string `toml:"incoming"` // the port-25 role, e.g. unix:/run/pec/incoming.sock
	Metrics  string `toml:"metrics"`  // host:port of the Prometheus endpoint; "" disables
	// QueueConfirmation "on" (default): an acceptance becomes effective
	// only when Postfix has queued the transport envelope, confirmed by
	// the recipient pec-queued+<token>@<provider domain> that Postfix
	// delivers to pecdeliver. "off": effective when the milter answers
	// (Postfix may still fail to queue: an acceptance for mail never sent).
	QueueConfirmation string `toml:"queue_confirmation"`
	// RequireTLSFromProviders "on" (default): a message signed by a
	// provider of the index that reached port 25 without TLS is
	// tempfailed, so the sender retries, and logged (Aruba §7.3.3: mail
	// between providers travels encrypted). "off": accepted as before.
	RequireTLSFromProviders string `toml:"require_tls_from_providers"`
}

// Deliver is pecdeliver's LMTP front and the Dovecot LMTP behind it.
type Deliver struct {
	Listen  string `toml:"listen"`  // unix:/run/pec/lmtp.sock (or inet:HOST:PORT, open to every local process)
	Dovecot string `toml:"dovecot"` // unix:/run/dovecot/lmtp (a socket only user pec may use)
	Metrics string `toml:"metrics"`
	// ServiceMaildir is where pecdeliver keeps the mail for the service
	// addresses (posta-certificata@<domain>, mail_receipt) that Dovecot
	// refuses permanently, so that no receipt is lost. Default: the
	// directory service-mail next to [store] path.
	ServiceMaildir string `toml:"service_maildir"`
}

// Reinject is the Postfix listener with no milters that takes generated messages.
type Reinject struct {
	// Address is unix:/path (Postfix's public/pec-reinject, reachable by
	// group postdrop only) or host:port (any local process can reach it).
	Address string `toml:"address"`
	Helo    string `toml:"helo"`
	// Local says how notices for our own mailboxes (the acceptance, the
	// receipts of same-provider mail, notices to the service mailbox)
	// reach them: "lmtp" (default) straight to the delivery point at
	// [deliver] listen, one Postfix transit fewer, falling back to
	// Address when it does not answer or does not take a notice for
	// every recipient; "postfix" through Address like every other notice.
	Local string `toml:"local"`
}

// LocalDomains are the domains whose mailboxes our delivery point keeps:
// the managed domains and the provider's own (its service mailbox).
func (c *Config) LocalDomains() []string {
	out := append([]string{}, c.Provider.ManagedDomains...)
	if d := strings.ToLower(c.Provider.Domain); d != "" && !slices.Contains(out, d) {
		out = append(out, d)
	}
	return out
}

// Store is where the event log, outbox, timers and virus store live: a
// SQLite file (Path, one machine) or a PostgreSQL database shared by the
// nodes of a cluster (URL). Set exactly one.
type Store struct {
	Path string `toml:"path"`
	// URL is postgres://user@host:port/db?sslmode=... (libpq keywords
	// work too); the password is best kept in ~/.pgpass or PGPASSFILE.
	URL string `toml:"url"`
	// Dir is where the index cache and the daily archives go by default:
	// the directory of Path, or /var/lib/pec with a URL.
	Dir       string   `toml:"dir"`
	Retention Duration `toml:"retention"` // default 30 months (RFC 6109 §2.3)
	// RetentionBelowLegalMinimum lets Retention be shorter than 30 months
	// (LegalRetention). The law does not allow it in production; a test
	// installation may set it.
	RetentionBelowLegalMinimum bool `toml:"retention_below_legal_minimum"`
	// TSAURL is the RFC 3161 time-stamping authority for the daily log
	// archives ("" = signed but not time-stamped).
	TSAURL string `toml:"tsa_url"`
}

// Index is the providers' index source (RFC 6109 §4.5).
type Index struct {
	LDIF       string `toml:"ldif"`        // a local LDIF file (plain)
	SignedLDIF string `toml:"signed_ldif"` // a local or https:// CMS-signed LDIF
	LDAPURL    string `toml:"ldap_url"`
	LDAPBase   string `toml:"ldap_base"`
	CacheDir   string `toml:"cache_dir"`
	// TLSPolicyMap is the Postfix smtp_tls_policy_maps source written on
	// each sync ("DOMAIN encrypt" for every domain of the index, Aruba
	// §7.3.3); "" means tls_policy in cache_dir, "off" writes none.
	TLSPolicyMap string `toml:"tls_policy_map"`
}

// Policy holds per-mailbox and provider-wide choices.
type Policy struct {
	// OrdinaryMail is the default for mailboxes that receive non-PEC mail:
	// "accept" (wrap in an anomaly envelope, the default) or "refuse".
	OrdinaryMail string `toml:"ordinary_mail"`
	// Mailboxes overrides per mailbox address.
	Mailboxes map[string]Mailbox `toml:"mailboxes"`
	// FromDomainCheck is "warn" (default) or "enforce" (RFC 6109 §7).
	FromDomainCheck string `toml:"from_domain_check"`
}

// Mailbox is one mailbox's options.
type Mailbox struct {
	OrdinaryMail string `toml:"ordinary_mail"` // accept | refuse
	ForwardTo    string `toml:"forward_to"`    // a copy of ordinary mail goes there too
}

// LegalRetention is the shortest retention the law allows for the event
// log and the virus store: 30 calendar months, which are at most 915 days
// (RFC 6109 §2.3, §2.2.4), so that every row is kept at least that long.
const LegalRetention = 915 * 24 * time.Hour

// Duration reads "30s", "24h", "22800h" in TOML.
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (examples: 30s, 5m, 24h)", b)
	}
	d.Duration = v
	return nil
}

// Load reads and checks the file at path, filling defaults.
func Load(path string) (*Config, error) {
	var c Config
	md, err := toml.DecodeFile(path, &c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, fmt.Errorf("config %s: unknown setting %q (check the spelling against pec.toml.example)", path, und[0].String())
	}
	c.defaults()
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) defaults() {
	if c.Provider.TimeZone == "" {
		c.Provider.TimeZone = "Europe/Rome"
	}
	c.Provider.Domain = strings.ToLower(c.Provider.Domain)
	if c.Provider.MailReceipt == "" {
		c.Provider.MailReceipt = "posta-certificata@" + c.Provider.Domain
	}
	if len(c.Provider.ManagedDomains) == 0 {
		c.Provider.ManagedDomains = []string{c.Provider.Domain}
	}
	for i, d := range c.Provider.ManagedDomains {
		c.Provider.ManagedDomains[i] = strings.ToLower(d)
	}
	if c.Signing.Digest == "" {
		c.Signing.Digest = "sha256"
	}
	if c.Signing.CRL == "" {
		c.Signing.CRL = "soft"
	}
	if c.Signing.ClockMaxError == "" {
		c.Signing.ClockMaxError = DefaultClockMaxError
	}
	if c.Limits.MaxRecipients == 0 {
		c.Limits.MaxRecipients = 50
	}
	if c.Limits.MaxSizeTimesRcpts == 0 {
		c.Limits.MaxSizeTimesRcpts = 100 << 20
	}
	if c.Limits.MessagesPerHour == 0 {
		c.Limits.MessagesPerHour = 1000
	}
	if c.Limits.NoticeMaxSize == 0 {
		c.Limits.NoticeMaxSize = 200 << 20
	}
	if c.Limits.MaxHeaderFields == 0 {
		c.Limits.MaxHeaderFields = 1000
	}
	if c.Limits.MaxHeaderFieldSize == 0 {
		c.Limits.MaxHeaderFieldSize = 50000
	}
	if c.Clamd.Network == "" {
		c.Clamd.Network = "unix"
	}
	if c.Clamd.Timeout.Duration == 0 {
		c.Clamd.Timeout.Duration = 60 * time.Second
	}
	if c.Store.Dir == "" {
		if c.Store.Path != "" {
			c.Store.Dir = filepath.Dir(c.Store.Path)
		} else {
			c.Store.Dir = "/var/lib/pec"
		}
	}
	if c.Store.Retention.Duration == 0 {
		c.Store.Retention.Duration = LegalRetention
	}
	if c.Deliver.ServiceMaildir == "" {
		c.Deliver.ServiceMaildir = filepath.Join(filepath.Dir(c.Store.Path), "service-mail")
	}
	if c.Reinject.Helo == "" {
		c.Reinject.Helo = "localhost"
	}
	if c.Reinject.Local == "" {
		c.Reinject.Local = "lmtp"
	}
	if c.Milter.QueueConfirmation == "" {
		c.Milter.QueueConfirmation = "on"
	}
	if c.Milter.RequireTLSFromProviders == "" {
		c.Milter.RequireTLSFromProviders = "on"
	}
	if c.Policy.OrdinaryMail == "" {
		c.Policy.OrdinaryMail = "accept"
	}
	if c.Policy.FromDomainCheck == "" {
		c.Policy.FromDomainCheck = "warn"
	}
	c.mailboxDefaults()
}

func (c *Config) check() error {
	var errs []string
	if c.Provider.Name == "" {
		errs = append(errs, "[provider] name is required (the gestore-emittente, e.g. \"Example PEC S.p.A.\")")
	}
	if c.Provider.Domain == "" {
		errs = append(errs, "[provider] domain is required (notices come from posta-certificata@<domain>)")
	}
	if _, err := time.LoadLocation(c.Provider.TimeZone); err != nil {
		errs = append(errs, fmt.Sprintf("[provider] time_zone %q: %v", c.Provider.TimeZone, err))
	}
	if _, ok := digests[c.Signing.Digest]; !ok {
		errs = append(errs, fmt.Sprintf("[signing] digest %q: use sha256, sha384, sha512 or sha1", c.Signing.Digest))
	}
	if c.Store.Path != "" && c.Store.URL != "" {
		errs = append(errs, "[store] sets both path (SQLite) and url (PostgreSQL): keep the one this node uses")
	}
	if r := c.Store.Retention.Duration; r < LegalRetention && !c.Store.RetentionBelowLegalMinimum {
		errs = append(errs, fmt.Sprintf("[store] retention %s is shorter than the 30 months the law wants for the log and the virus store (RFC 6109 §2.3, §2.2.4): use at least %q (915 days), or set retention_below_legal_minimum = true on a test installation", r, "21960h"))
	}
	if u := c.Store.URL; u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		errs = append(errs, "[store] url must start with postgres:// (e.g. postgres://pec@db.example.com/pec?sslmode=verify-full)")
	}
	if c.Milter.QueueConfirmation != "on" && c.Milter.QueueConfirmation != "off" {
		errs = append(errs, fmt.Sprintf("[milter] queue_confirmation %q: use on or off", c.Milter.QueueConfirmation))
	}
	if v := c.Reinject.Local; v != "lmtp" && v != "postfix" {
		errs = append(errs, fmt.Sprintf("[reinject] local %q: use lmtp (notices for our mailboxes straight to pecdeliver) or postfix", v))
	}
	if v := c.Milter.RequireTLSFromProviders; v != "on" && v != "off" {
		errs = append(errs, fmt.Sprintf("[milter] require_tls_from_providers %q: use on or off", v))
	}
	if c.Signing.CRL != "off" && c.Signing.CRL != "soft" && c.Signing.CRL != "hard" {
		errs = append(errs, fmt.Sprintf("[signing] crl %q: use off, soft or hard", c.Signing.CRL))
	}
	if _, err := c.Signing.sha1Cutoff(); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := c.Signing.ClockBound(); err != nil {
		errs = append(errs, err.Error())
	}
	errs = append(errs, c.Signing.checkPKCS11()...)
	errs = append(errs, c.Log.check()...)
	for _, v := range []string{c.Policy.OrdinaryMail} {
		if v != "accept" && v != "refuse" {
			errs = append(errs, fmt.Sprintf("[policy] ordinary_mail %q: use accept or refuse", v))
		}
	}
	for addr, m := range c.Policy.Mailboxes {
		if m.OrdinaryMail != "" && m.OrdinaryMail != "accept" && m.OrdinaryMail != "refuse" {
			errs = append(errs, fmt.Sprintf("[policy.mailboxes.%q] ordinary_mail %q: use accept or refuse", addr, m.OrdinaryMail))
		}
	}
	if n := c.Limits.MaxHeaderFields; n < 0 || n > maxHeaderFieldsCap {
		errs = append(errs, fmt.Sprintf("[limits] max_header_fields = %d: use 1 to %d; Postfix cannot rewrite a message with about 10 000 header fields into the transport envelope, and its acceptance would already be signed", n, maxHeaderFieldsCap))
	}
	if n := c.Limits.MaxHeaderFieldSize; n < 0 || n > maxHeaderFieldSizeCap {
		errs = append(errs, fmt.Sprintf("[limits] max_header_field_size = %d: use 1 to %d octets, and less than Postfix's header_size_limit if that is set below 60000; Postfix cuts longer header fields before the milter sees them, and a cut field would be certified", n, maxHeaderFieldSizeCap))
	}
	if c.Policy.FromDomainCheck != "warn" && c.Policy.FromDomainCheck != "enforce" {
		errs = append(errs, fmt.Sprintf("[policy] from_domain_check %q: use warn or enforce", c.Policy.FromDomainCheck))
	}
	errs = append(errs, c.checkMailboxes()...)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

var digests = map[string]crypto.Hash{"sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512, "sha1": crypto.SHA1}

// Location is the provider's time zone.
func (c *Config) Location() *time.Location {
	l, err := time.LoadLocation(c.Provider.TimeZone)
	if err != nil {
		return build.Rome
	}
	return l
}

// RulePolicy is the part of the configuration the PEC rules read (package
// point), built once at start-up.
func (c *Config) RulePolicy() *point.Policy {
	p := &point.Policy{ServiceMailbox: strings.ToLower(c.Provider.MailReceipt), OrdinaryMail: c.Policy.OrdinaryMail,
		EnforceFromDomain: c.Policy.FromDomainCheck == "enforce", Mailboxes: map[string]point.MailboxPolicy{},
		RequireTLSFromProviders: c.Milter.RequireTLSFromProviders == "on"}
	for _, d := range c.Provider.ManagedDomains {
		p.ManagedDomains = append(p.ManagedDomains, strings.ToLower(d))
	}
	for a, m := range c.Policy.Mailboxes {
		p.Mailboxes[strings.ToLower(a)] = point.MailboxPolicy{OrdinaryMail: m.OrdinaryMail, ForwardTo: m.ForwardTo}
	}
	return p
}

// IsManaged reports whether addr's domain is one of ours.
func (c *Config) IsManaged(addr string) bool {
	_, dom, ok := strings.Cut(strings.ToLower(addr), "@")
	if !ok {
		return false
	}
	for _, d := range c.Provider.ManagedDomains {
		if d == dom {
			return true
		}
	}
	return false
}

// checkPKCS11 checks the PKCS#11 settings of [signing].
func (s *Signing) checkPKCS11() []string { return s.checkPKCS11In("[signing]") }

// checkPKCS11In checks the PKCS#11 settings of a key section (sec names
// it in the messages: [signing], or [log] for the sealing key).
func (s *Signing) checkPKCS11In(sec string) []string {
	var errs []string
	if s.PKCS11Module == "" {
		if s.PKCS11Token != "" || s.PKCS11Pin != "" || s.PKCS11PinFile != "" || s.PKCS11KeyLabel != "" || s.PKCS11KeyID != "" {
			errs = append(errs, sec+" pkcs11_* settings given without pkcs11_module (the path of the PKCS#11 library)")
		}
		return errs
	}
	if s.Key != "" {
		errs = append(errs, sec+" key and pkcs11_module are both set: the key is either a file or in the HSM, remove one")
	}
	if s.PKCS11Token == "" {
		errs = append(errs, sec+" pkcs11_token is required with pkcs11_module (the token's label)")
	}
	if s.PKCS11Pin != "" && s.PKCS11PinFile != "" {
		errs = append(errs, sec+" pkcs11_pin and pkcs11_pin_file are both set: keep one (pkcs11_pin_file keeps the PIN out of this file)")
	}
	if s.PKCS11Pin == "" && s.PKCS11PinFile == "" {
		errs = append(errs, sec+" pkcs11_pin or pkcs11_pin_file is required with pkcs11_module")
	}
	if s.PKCS11KeyLabel == "" && s.PKCS11KeyID == "" {
		errs = append(errs, sec+" pkcs11_key_label (or pkcs11_key_id) is required with pkcs11_module")
	}
	if _, err := hsm.ParseID(s.PKCS11KeyID); err != nil {
		errs = append(errs, sec+" pkcs11_key_id: "+err.Error())
	}
	return errs
}

// Signer loads the certificate chain and the key: from the key file, or
// from the PKCS#11 token when pkcs11_module is set. An HSM key stays open
// (a session pool logged into the token) for the life of the process; the
// returned Signer may be used from many goroutines at once.
func (c *Config) Signer() (*smime.Signer, error) {
	certs, err := LoadCerts(c.Signing.Certificate)
	if err != nil {
		return nil, fmt.Errorf("[signing] certificate: %w", err)
	}
	var key crypto.Signer
	if c.Signing.PKCS11Module != "" {
		key, err = c.Signing.openPKCS11(certs[0])
		if err != nil {
			return nil, err
		}
	} else {
		key, err = loadKey(c.Signing.Key)
		if err != nil {
			return nil, fmt.Errorf("[signing] key: %w", err)
		}
	}
	return &smime.Signer{Key: key, Cert: certs[0], Chain: certs[1:], Hash: digests[c.Signing.Digest]}, nil
}

// openPKCS11 opens the token key and checks it against the certificate.
func (s *Signing) openPKCS11(cert *x509.Certificate) (crypto.Signer, error) {
	return s.openPKCS11In("[signing]", cert)
}

// openPKCS11In is openPKCS11 for the key section sec.
func (s *Signing) openPKCS11In(sec string, cert *x509.Certificate) (crypto.Signer, error) {
	if errs := s.checkPKCS11In(sec); len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	pin := s.PKCS11Pin
	if s.PKCS11PinFile != "" {
		b, err := os.ReadFile(s.PKCS11PinFile)
		if err != nil {
			return nil, fmt.Errorf("%s pkcs11_pin_file: %w", sec, err)
		}
		pin = strings.TrimRight(string(b), "\r\n")
		if pin == "" {
			return nil, fmt.Errorf("%s pkcs11_pin_file %s is empty", sec, s.PKCS11PinFile)
		}
	}
	id, _ := hsm.ParseID(s.PKCS11KeyID) // checked above
	k, err := hsm.Open(hsm.Config{Module: s.PKCS11Module, TokenLabel: s.PKCS11Token, Pin: pin, KeyLabel: s.PKCS11KeyLabel, KeyID: id})
	if err != nil {
		return nil, fmt.Errorf("%s pkcs11: %w", sec, err)
	}
	if !k.Matches(cert.PublicKey) {
		k.Close()
		return nil, fmt.Errorf("%s the key in the HSM (%s) is not the key of the certificate %s (subject %q, serial %s): check pkcs11_key_label/pkcs11_key_id and certificate",
			sec, k, s.Certificate, cert.Subject.String(), cert.SerialNumber)
	}
	return k, nil
}

// Provider returns the builder's view of us.
func (c *Config) BuildProvider() (*build.Provider, error) {
	s, err := c.Signer()
	if err != nil {
		return nil, err
	}
	p := &build.Provider{Name: c.Provider.Name, Domain: c.Provider.Domain, Location: c.Location(), Signer: s}
	found := false
	for _, e := range s.Cert.EmailAddresses {
		if strings.EqualFold(e, p.ServiceAddr()) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("[signing] certificate's e-mail addresses %v do not include %s: RFC 6109 §2.1 wants From = the certificate's rfc822Name", s.Cert.EmailAddresses, p.ServiceAddr())
	}
	return p, nil
}

// sha1Cutoff reads sha1_cutoff: zero for "off".
func (s *Signing) sha1Cutoff() (time.Time, error) {
	switch s.SHA1Cutoff {
	case "":
		return smime.DefaultSHA1Cutoff, nil
	case "off":
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01-02", s.SHA1Cutoff)
	if err != nil {
		return time.Time{}, fmt.Errorf("[signing] sha1_cutoff %q: use a day such as 2017-01-01, or off", s.SHA1Cutoff)
	}
	return t, nil
}

// Roots loads the trusted roots, with the SHA-1 cut-off of [signing].
func (c *Config) Roots() (*smime.Roots, error) {
	if len(c.Signing.TrustedRoots) == 0 {
		return nil, errors.New("[signing] trusted_roots is empty: the incoming point cannot check other providers' chains")
	}
	pool := smime.NewRoots()
	pool.SHA1Cutoff, _ = c.Signing.sha1Cutoff() // checked at load
	for _, f := range c.Signing.TrustedRoots {
		certs, err := LoadCerts(f)
		if err != nil {
			return nil, fmt.Errorf("[signing] trusted_roots: %w", err)
		}
		for _, ce := range certs {
			pool.Add(ce)
		}
	}
	return pool, nil
}

// LoadCerts reads every certificate of a PEM file.
func LoadCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return out, nil
}

func loadKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM key", path)
	}
	var k any
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%s: unsupported PEM block %q", path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key type %T cannot sign", path, k)
	}
	return s, nil
}

// Listen opens a listener from "inet:HOST:PORT" or "unix:/path" (the
// Postfix milter notation).
//
// A unix socket is how only Postfix gets to ask for a signature: the
// access milter signs transport envelopes for whoever presents
// {auth_authen} (RFC 6109 §2.2.1), the incoming milter and the delivery
// point sign receipts (§3.2, §3.3). So the socket is made mode 0660 with
// the group of its directory, and the directory must not let others in:
//
//   - the directory (filepath.Dir of the path) is created mode 0750 when
//     it is missing; when it exists and grants group write or anything to
//     others, it is tightened to 0750 (keeping a setgid bit) if we own it
//     and refused otherwise;
//   - a stale socket of an earlier run is removed; any other file there is
//     an error;
//   - the socket gets mode 0660 and the directory's group: the owner (user
//     pec), that group's members and root can connect, nobody else.
//
// The packaged layout is /run/pec owned pec:postfix, mode 2750
// (packaging/tmpfiles/pec.conf): Postfix's user reaches the sockets through
// the group, and the setgid bit gives new sockets that group with no chown.
// Without the setgid bit the group is set with chown, which a non-root
// process can do only for a group it belongs to.
//
// A TCP listener takes connections from every local process: use it only
// when asked to, and say so (daemon.Serve logs a warning).
func Listen(spec string) (net.Listener, error) {
	network, addr, err := SplitAddr(spec)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		return listenUnix(spec, addr)
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec, err)
	}
	return ln, nil
}

// SocketDirMode and SocketMode are the modes Listen gives a unix socket's
// directory (when it creates it) and the socket.
const (
	SocketDirMode os.FileMode = 0o750
	SocketMode    os.FileMode = 0o660
)

func listenUnix(spec, path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	gid, err := socketDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen on %s: %s exists and is not a socket: remove it or choose another path", spec, path)
		}
		os.Remove(path) // a socket left by an earlier run
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", spec, err)
	}
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		return nil, fmt.Errorf("listen on %s: %w", spec, err)
	}
	if err := os.Chmod(path, SocketMode); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Gid != gid {
		if err := os.Lchown(path, -1, int(gid)); err != nil {
			return fail(fmt.Errorf("giving the socket the group %d of %s: %w (make the directory setgid, e.g. install -d -o pec -g postfix -m 2750 %s, so sockets get its group)",
				gid, dir, err, dir))
		}
	}
	return ln, nil
}

// socketDir makes sure dir exists and lets no one but its owner and group
// in, and returns its group.
func socketDir(dir string) (gid uint32, err error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, SocketDirMode); err != nil {
			return 0, fmt.Errorf("creating the socket directory: %w (create it as root: install -d -o pec -g postfix -m 2750 %s)", err, dir)
		}
		if err := os.Chmod(dir, SocketDirMode); err != nil { // the umask may have taken bits away
			return 0, err
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return 0, fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("%s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("socket directory %s: no owner information", dir)
	}
	if fi.Mode().Perm()&0o027 != 0 {
		if int(st.Uid) != os.Geteuid() {
			return 0, fmt.Errorf("socket directory %s is mode %04o and owned by uid %d: other local processes could reach or replace the socket; make it install -d -o pec -g postfix -m 2750 %s",
				dir, fi.Mode().Perm(), st.Uid, dir)
		}
		mode := fi.Mode().Perm()&^0o027 | fi.Mode()&(os.ModeSetgid|os.ModeSticky)
		if err := os.Chmod(dir, mode); err != nil {
			return 0, fmt.Errorf("tightening the socket directory %s to %04o: %w", dir, mode.Perm(), err)
		}
	}
	return st.Gid, nil
}

// SplitAddr splits "inet:HOST:PORT", "unix:/path" or a bare "HOST:PORT".
func SplitAddr(spec string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(spec, "inet:"):
		return "tcp", strings.TrimPrefix(spec, "inet:"), nil
	case strings.HasPrefix(spec, "unix:"):
		return "unix", strings.TrimPrefix(spec, "unix:"), nil
	case strings.HasPrefix(spec, "/"):
		return "unix", spec, nil
	case strings.Contains(spec, ":"):
		return "tcp", spec, nil
	}
	return "", "", fmt.Errorf("address %q: want inet:HOST:PORT or unix:/path", spec)
}
