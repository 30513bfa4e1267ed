// Command pecmilter is the PEC milter for Postfix. On the submission
// service it is the access point (RFC 6109 §2.2.1): formal checks,
// antivirus, acceptance and non-acceptance notices, the signed transport
// envelope. On port 25 it is the incoming point (§2.2.2): signature, CRL and
// providers'-index checks, take-charge notices, anomaly envelopes, virus
// notices. It also runs the 12 h / 24 h timers (§3.1.6). Generated
// notices are queued in the store and sent by the outbox to Postfix's
// re-injection listener. SIGHUP re-reads the providers' index.
package main

import (
	"errors"
	"flag"
	"log/slog"
	"os"
	"time"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/internal/daemon"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/revocation"
	"github.com/pecgo/pec/timer"
)

func main() {
	path := flag.String("config", config.DefaultPath, "configuration file")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(*path, log); err != nil {
		log.Error("pecmilter stopped", "error", err)
		os.Exit(1)
	}
}

func run(path string, log *slog.Logger) error {
	ctx, stop := daemon.SignalContext()
	defer stop()
	d, err := daemon.Start(ctx, path, func(c *config.Config) string { return c.Milter.Metrics }, log)
	if err != nil {
		return err
	}
	defer d.Close()
	cfg, st := d.Cfg, d.Store

	scanner := &clamd.Client{Network: cfg.Clamd.Network, Addr: cfg.Clamd.Address, Timeout: cfg.Clamd.Timeout.Duration}
	// the health checks use their own client: pec_clamd_errors_total
	// counts the calls that tempfailed a message
	probe := *scanner
	var observe func(role string, dec point.Decision, elapsed time.Duration)
	if d.Metrics != nil {
		scanner.OnError = d.Metrics.ClamdError
		observe = d.Metrics.ObserveMilter
		d.Metrics.SetClamd(&probe)
	}
	go checkClamd(ctx, &probe, cfg.Limits.MaxSizeTimesRcpts, log)
	// one timer runner per store: pecmilter runs it, pecdeliver does not
	timers := &timer.Runner{Store: st, Provider: d.Provider, Kick: d.Outbox.Kick, Log: log, ClockProblem: d.Guard.ClockProblem}
	go timers.Run(ctx, time.Minute)

	mailboxes := d.Mailboxes() // the mailbox registry: states and options at run time
	var servers []daemon.Server
	if cfg.Milter.Access != "" {
		access := &point.Access{
			Provider: d.Provider, MaxRecipients: cfg.Limits.MaxRecipients, MaxSizeTimesRcpts: cfg.Limits.MaxSizeTimesRcpts,
			MessagesPerHour: cfg.Limits.MessagesPerHour, NoticeMaxSize: cfg.Limits.NoticeMaxSize,
			MaxHeaderFields: cfg.Limits.MaxHeaderFields, MaxHeaderFieldSize: cfg.Limits.MaxHeaderFieldSize,
			Scanner: scanner, Index: d.Index.Current, Log: log,
			History: st, Gate: d.Guard,
			Mailboxes: mailboxes,
		}
		m := &filter.Milter{Name: "access", Role: access, Store: st, Kick: d.Outbox.Kick, Log: log, RequireAuth: true, Observer: observe}
		if cfg.Milter.QueueConfirmation == "on" {
			// Postfix routes the provider's domain to pecdeliver, which
			// makes held acceptances effective (filter/queued.go)
			m.ConfirmDomain = d.Provider.Domain
		}
		servers = append(servers, daemon.Server{Name: "access milter", Spec: cfg.Milter.Access, Serve: m.Serve,
			Exposure: "provider-signed transport envelopes and acceptance notices for any of our mailboxes (RFC 6109 §2.2.1)"})
	}
	if cfg.Milter.Incoming != "" {
		roots, err := cfg.Roots()
		if err != nil {
			return err
		}
		in := &point.Incoming{Provider: d.Provider, Policy: d.RulePolicy(mailboxes), Roots: roots, Scanner: scanner, Index: d.Index.Current, Log: log, Gate: d.Guard,
			History: st}
		if cfg.Signing.CRL != "off" {
			// the signer chain's CRLs, cached in memory (RFC 6109 §2.2.2)
			crl := &revocation.Checker{}
			in.Revocation, in.RevocationHard = crl.Check, cfg.Signing.CRL == "hard"
		}
		m := &filter.Milter{Name: "incoming", Role: in, Store: st, Kick: d.Outbox.Kick, Log: log, Observer: observe}
		servers = append(servers, daemon.Server{Name: "incoming milter", Spec: cfg.Milter.Incoming, Serve: m.Serve,
			Exposure: "provider-signed take-charge receipts and anomaly envelopes (RFC 6109 §3.2)"})
	}
	if len(servers) == 0 {
		return errors.New("[milter] neither access nor incoming is set: nothing to serve")
	}
	return daemon.Serve(ctx, log, servers...)
}
