// Command pecdeliver is the PEC delivery point (RFC 6109 §2.2.3): an LMTP
// server that Postfix delivers to and that forwards to Dovecot's LMTP,
// issuing a delivery or non-delivery receipt per recipient of every valid
// transport envelope. SIGHUP re-reads the providers' index.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/daemon"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/point"
)

func main() {
	path := flag.String("config", config.DefaultPath, "configuration file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*path, log); err != nil {
		log.Error("pecdeliver stopped", "error", err)
		os.Exit(1)
	}
}

func run(path string, log *slog.Logger) error {
	ctx, stop := daemon.SignalContext()
	defer stop()
	d, err := daemon.Start(ctx, path, func(c *config.Config) string { return c.Deliver.Metrics }, log)
	if err != nil {
		return err
	}
	defer d.Close()
	roots, err := d.Cfg.Roots()
	if err != nil {
		return err
	}
	// the service mailbox: never refused (lmtp/service.go); checked now
	service := &lmtp.ServiceMailbox{Addrs: serviceAddrs(d.Cfg), Maildir: d.Cfg.Deliver.ServiceMaildir,
		Store: d.Store, Provider: d.Provider.Name, Log: log}
	if err := service.Check(ctx, d.Cfg.Deliver.Dovecot, d.Provider.Domain); err != nil {
		return err
	}
	// the mailbox registry: states and options at run time; this node's
	// Dovecot users file kept in step with it (mailbox/passwd.go)
	mailboxes := d.Mailboxes()
	if f := d.Cfg.Mailboxes.PasswdFile; f != "" {
		go d.MailboxRegistry().Keep(ctx, f, time.Minute)
	}
	srv := &lmtp.Server{
		Delivery: &point.Delivery{Provider: d.Provider, Policy: d.RulePolicy(mailboxes), Roots: roots, Index: d.Index.Current, History: d.Store, Mailboxes: mailboxes},
		Store:    d.Store, Dovecot: d.Cfg.Deliver.Dovecot, Kick: d.Outbox.Kick, Log: log, Service: service,
		Resync:       func(ctx context.Context) error { _, err := d.Index.Sync(ctx); return err },
		ClockProblem: d.Guard.ClockProblem,
	}
	if d.Metrics != nil {
		srv.Observer = d.Metrics.ObserveDelivery
		service.OnUndeliverable = d.Metrics.NoticeUndeliverable
	}
	log.Info("delivery point", "dovecot", d.Cfg.Deliver.Dovecot)
	return daemon.Serve(ctx, log, daemon.Server{Name: "LMTP", Spec: d.Cfg.Deliver.Listen, Serve: srv.Serve,
		Exposure: "deliveries into our mailboxes and provider-signed delivery receipts (RFC 6109 §3.3)"})
}

// serviceAddrs are posta-certificata@<domain> (where the bounces of our
// notices come back) and [provider] mail_receipt (the index's mailReceipt,
// where other providers send take-charge receipts), once each.
func serviceAddrs(c *config.Config) []string {
	addrs := []string{"posta-certificata@" + c.Provider.Domain}
	if !strings.EqualFold(c.Provider.MailReceipt, addrs[0]) && c.IsManaged(c.Provider.MailReceipt) {
		addrs = append(addrs, strings.ToLower(c.Provider.MailReceipt))
	}
	return addrs
}
