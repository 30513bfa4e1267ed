package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/smime"
)

const configUsage = `usage: pecctl config check [-config FILE]

Checks what pecmilter and pecdeliver need before they are started:
  - the file loads (no unknown or invalid setting);
  - the signing key and certificate load, and the certificate names
    posta-certificata@<domain> (RFC 6109 §2.1);
  - the trusted roots load;
  - the providers' index source can be read and lists this provider
    with the signing certificate (providerCertificateHash) and our
    domains; else other providers, and our own delivery point, do not
    recognise our messages;
  - clamd answers PING (a warning: pecmilter starts without it, and
    tempfails every message until it answers);
  - Dovecot's LMTP takes mail for the service address (a warning:
    pecdeliver keeps that mail in [deliver] service_maildir otherwise);
  - the kernel clock is synchronised within [signing] clock_max_error (a
    warning: the points refuse to sign until it is);
  - the directory of [mailboxes] passwd_file exists, when it is set.
Run it as root or as user pec (the key is readable by group pec only).

Exit status: 0 no error (warnings may be printed), 1 an error, 2 usage.
Default -config: ` + config.DefaultPath + `
`

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	const cmd = "config"
	fs, cfgPath := newFlags(cmd, configUsage, stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 || pos[0] != "check" {
		return usageErr(stderr, cmd, configUsage, "want: config check")
	}
	errs := 0
	bad := func(format string, a ...any) {
		errs++
		fmt.Fprintf(stdout, "error: "+format+"\n", a...)
	}
	warn := func(format string, a ...any) { fmt.Fprintf(stdout, "warning: "+format+"\n", a...) }
	ok := func(format string, a ...any) { fmt.Fprintf(stdout, "ok: "+format+"\n", a...) }

	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		bad("%v", err)
		return 1
	}
	ok("%s loads", *cfgPath)
	if cfg.Store.RetentionBelowLegalMinimum && cfg.Store.Retention.Duration < config.LegalRetention {
		warn("[store] retention %s is shorter than the 30 months the law wants (retention_below_legal_minimum = true): a test installation only", cfg.Store.Retention.Duration)
	}
	prov, err := cfg.BuildProvider()
	var certHash string
	if err != nil {
		bad("%v", err)
	} else {
		certHash = smime.CertSHA1(prov.Signer.Cert)
		ok("signing certificate %s (SHA-1 %s), valid until %s", prov.Signer.Cert.Subject.String(), certHash,
			prov.Signer.Cert.NotAfter.In(cfg.Location()).Format("2006-01-02"))
		if time.Until(prov.Signer.Cert.NotAfter) < 30*24*time.Hour {
			warn("the signing certificate expires on %s: renew it", prov.Signer.Cert.NotAfter.Format("2006-01-02"))
		}
	}
	if _, err := cfg.Roots(); err != nil {
		bad("%v", err)
	} else {
		ok("trusted roots load (%s)", strings.Join(cfg.Signing.TrustedRoots, ", "))
	}
	// the log's sealing key (Aruba §8.1), opened only when it is its own
	if !cfg.Log.Configured() {
		warn("%v", config.ErrSealingFallback)
	} else if s, _, err := cfg.SealingSigner(); err != nil {
		bad("%v", err)
	} else {
		ok("sealing certificate %s, valid until %s", s.Cert.Subject.String(), s.Cert.NotAfter.In(cfg.Location()).Format("2006-01-02"))
		if time.Until(s.Cert.NotAfter) < 30*24*time.Hour {
			warn("the sealing certificate expires on %s: renew it", s.Cert.NotAfter.Format("2006-01-02"))
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if src, err := service.IndexSource(cfg); err != nil {
		bad("%v", err)
	} else if ix, err := src.Fetch(ctx); err != nil {
		bad("providers' index: %v", err)
	} else if certHash != "" {
		p, found := ix.ByCertHash(certHash)
		switch {
		case !found:
			bad("the providers' index (%d providers) does not list our signing certificate %s: add it to our entry (pecctl index hash --ldif CERT.pem)", ix.Len(), certHash)
		case !strings.EqualFold(p.MailReceipt, cfg.Provider.MailReceipt):
			bad("our entry %q in the providers' index has mailReceipt %s, the configuration %s", p.Label(), p.MailReceipt, cfg.Provider.MailReceipt)
		default:
			ok("providers' index: %d providers, ours is %q", ix.Len(), p.Label())
			for _, d := range cfg.Provider.ManagedDomains {
				if q, found := ix.ByDomain(d); !found || q.Name != p.Name {
					bad("managed domain %s is not in our entry of the providers' index: other providers would treat its mail as ordinary", d)
				}
			}
		}
	}

	c := &clamd.Client{Network: cfg.Clamd.Network, Addr: cfg.Clamd.Address, Timeout: 10 * time.Second}
	if v, err := c.Version(ctx); err != nil {
		warn("clamd: %v", err)
	} else {
		ok("clamd: %s", v)
		if ok2, err := c.StreamLimitAtLeast(ctx, cfg.Limits.MaxSizeTimesRcpts, time.Second); err == nil && !ok2 {
			warn("clamd's StreamMaxLength is below [limits] max_size_times_rcpts (%d bytes): bigger messages will be refused; raise it in /etc/clamav/clamd.conf", cfg.Limits.MaxSizeTimesRcpts)
		}
	}
	addr := "posta-certificata@" + cfg.Provider.Domain
	if answers, err := lmtp.ProbeRcpts(ctx, cfg.Deliver.Dovecot, cfg.Provider.Domain, []string{addr}); err != nil {
		warn("Dovecot LMTP %s: %v", cfg.Deliver.Dovecot, err)
	} else if e := answers[addr]; e != nil {
		warn("Dovecot has no mailbox for %s (%v): its mail (take-charge receipts, bounces of our notices) is kept in %s", addr, e, cfg.Deliver.ServiceMaildir)
	} else {
		ok("Dovecot takes mail for %s", addr)
	}
	checkClock(cfg, ok, warn)
	if f := cfg.Mailboxes.PasswdFile; f != "" {
		if fi, err := os.Stat(filepath.Dir(f)); err != nil || !fi.IsDir() {
			bad("[mailboxes] passwd_file %s: its directory is missing: make it with install -d -o pec -g dovecot -m 2750 %s", f, filepath.Dir(f))
		} else if _, err := os.Stat(f); err != nil {
			warn("[mailboxes] passwd_file %s does not exist yet: pecdeliver writes it at start (or run pecctl mailbox sync); Dovecot logs in nobody until then", f)
		} else {
			ok("Dovecot users file %s", f)
		}
	}
	if errs > 0 {
		fmt.Fprintf(stdout, "%d error(s): fix them before starting pecmilter and pecdeliver\n", errs)
		return 1
	}
	return 0
}
