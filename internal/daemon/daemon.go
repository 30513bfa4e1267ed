// Package daemon starts what pecmilter and pecdeliver share: the
// configuration, the provider's signer, the store, the providers' index
// (refreshed daily and on SIGHUP), the outbox sender and the metrics
// endpoint.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/guard"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/metrics"
	"github.com/pecgo/pec/outbox"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/open"
	"github.com/pecgo/pec/store/postgres"
)

// Daemon is one running program's shared state.
type Daemon struct {
	Cfg      *config.Config
	Provider *build.Provider
	Store    store.Store
	Index    *service.Index
	Outbox   *outbox.Sender
	Metrics  *metrics.Metrics // nil when the endpoint is off
	Log      *slog.Logger
	Guard    *guard.Guard // the clock guard and the service state the points read (point.Gate)

	stopProfile func()
}

// Start loads the configuration at path and starts the shared parts; they
// stop when ctx is done. metricsAddr picks the program's metrics address
// from the configuration ("" turns the endpoint off).
func Start(ctx context.Context, path string, metricsAddr func(*config.Config) string, log *slog.Logger) (*Daemon, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	prov, err := cfg.BuildProvider()
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Store, log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Cfg: cfg, Provider: prov, Store: st, Log: log}
	if cfg.Store.URL != "" {
		// a cluster: the index is fetched once for all nodes
		d.Index, err = service.OpenClusterIndex(ctx, cfg, st, log)
	} else {
		d.Index, err = service.OpenIndex(ctx, cfg, 0, log)
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	go d.resyncOnHangup(ctx)
	d.Guard = startGuard(ctx, cfg, st, log)
	d.Outbox = &outbox.Sender{Store: st, Addr: cfg.Reinject.Address, Helo: cfg.Reinject.Helo, Logger: log}
	if cfg.Reinject.Local == "lmtp" && cfg.Deliver.Listen != "" {
		// notices for our own mailboxes straight to pecdeliver
		d.Outbox.Local, d.Outbox.LocalDomains = cfg.Deliver.Listen, cfg.LocalDomains()
	}
	if network, _, _ := config.SplitAddr(cfg.Reinject.Address); network != "unix" {
		log.Warn("[reinject] address is TCP: Postfix cannot tell our notices from any local process's mail there; use the unix socket of postfix-examples (unix:/var/spool/postfix/public/pec-reinject)",
			"address", cfg.Reinject.Address)
	}
	if addr := metricsAddr(cfg); addr != "" {
		d.Metrics = metrics.New(metrics.Options{Store: st, StorePath: cfg.Store.Path, Index: d.Index, Log: log})
		// certificates, outbox age, timer backlog, log verify and archive
		d.Metrics.AddStatus(metrics.StatusOptions{Store: st, SigningCert: prov.Signer.Cert, Index: d.Index})
		ln, err := config.Listen(addr)
		if err != nil {
			st.Close()
			return nil, fmt.Errorf("metrics endpoint: %w", err)
		}
		log.Info("serving metrics", "listen", addr)
		go func() {
			if err := d.Metrics.Serve(ctx, ln); err != nil {
				log.Error("metrics endpoint stopped", "error", err)
			}
		}()
		d.Metrics.SetGuard(d.Guard)
		d.Outbox.OnResult = d.Metrics.OutboxResult
		d.Outbox.OnUndeliverable = d.Metrics.NoticeUndeliverable
	}
	go d.Outbox.Run(ctx)
	go d.recordHealth(ctx, HealthEvery)
	d.stopProfile = startProfile(log)
	return d, nil
}

// openStore opens the store; a PostgreSQL server that cannot be reached
// yet (a cluster node booting before its database, a failover) is waited
// for, retrying after 1 s and backing off to 30 s, instead of exiting: mail
// is tempfailed meanwhile (Postfix's milter_default_action = tempfail;
// pecdeliver's LMTP socket is not there yet).
func openStore(ctx context.Context, cfg config.Store, log *slog.Logger) (store.Store, error) {
	for delay := time.Second; ; delay = min(2*delay, 30*time.Second) {
		st, err := open.Open(ctx, cfg)
		if err == nil || cfg.URL == "" || !postgres.Unreachable(err) {
			return st, err
		}
		log.Error("store unreachable at start-up: mail is tempfailed until it answers; retrying", "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
	}
}

// resyncOnHangup refreshes the providers' index on SIGHUP (after `pecctl
// index sync`, or when the operator knows the index changed).
func (d *Daemon) resyncOnHangup(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			diff, err := d.Index.Sync(ctx)
			if err != nil {
				d.Log.Error("providers' index resync on SIGHUP failed; still serving the last good copy", "error", err)
				continue
			}
			d.Log.Info("providers' index resynced on SIGHUP", "changes", len(diff))
		}
	}
}

// Close closes the store (and writes the profiles ProfileEnv asked for).
func (d *Daemon) Close() {
	d.Store.Close()
	if d.stopProfile != nil {
		d.stopProfile()
	}
}

// Server is one listener with what serves it.
type Server struct {
	Name  string
	Spec  string // unix:/path, or inet:HOST:PORT (logged as a warning)
	Serve func(net.Listener) error
	// Exposure says what any local process could obtain from a TCP
	// listener of this server, for the start-up warning.
	Exposure string
}

// Serve listens on every server's address and serves until ctx is done
// (nil) or one of them fails (its error).
func Serve(ctx context.Context, log *slog.Logger, servers ...Server) error {
	errc := make(chan error, len(servers))
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, s := range servers {
		ln, err := config.Listen(s.Spec)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		if network, _, _ := config.SplitAddr(s.Spec); network != "unix" {
			// a TCP listener cannot tell Postfix from any other local
			// process: only a unix socket keeps signing for Postfix alone
			log.Warn("listening on TCP: any local process can connect; use a unix socket (unix:/run/pec/NAME.sock, see postfix-examples/README.md)",
				"what", s.Name, "listen", s.Spec, "exposure", s.Exposure)
		} else {
			log.Info("serving", append([]any{"what", s.Name, "listen", s.Spec}, socketAttrs(ln)...)...)
		}
		go func(s Server, ln net.Listener) {
			if err := s.Serve(ln); err != nil {
				errc <- fmt.Errorf("%s: %w", s.Name, err)
			}
		}(s, ln)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// socketAttrs describes a unix socket's mode and group for the log: the
// group is who besides us may connect (Postfix's, in production).
func socketAttrs(ln net.Listener) []any {
	ua, ok := ln.Addr().(*net.UnixAddr)
	if !ok {
		return nil
	}
	fi, err := os.Stat(ua.Name)
	if err != nil {
		return nil
	}
	attrs := []any{"mode", fmt.Sprintf("%04o", fi.Mode().Perm())}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		g := strconv.FormatUint(uint64(st.Gid), 10)
		if grp, err := user.LookupGroupId(g); err == nil {
			g = grp.Name
		}
		attrs = append(attrs, "group", g)
	}
	return attrs
}

// SignalContext is cancelled on SIGTERM or SIGINT.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}
