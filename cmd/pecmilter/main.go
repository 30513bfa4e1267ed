// Command pecmilter is the PEC milter for Postfix. On the submission
// service it is the access point (RFC 6109 §2.2.1): formal checks,
// antivirus, acceptance and non-acceptance notices, the signed transport
// envelope. On port 25 it is the incoming point (§2.2.2): signature and
// providers'-index checks, take-charge notices, anomaly envelopes, virus
// notices. Generated notices are queued in the store and sent by the
// outbox to Postfix's re-injection listener.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/metrics"
	"github.com/pecgo/pec/outbox"
	"github.com/pecgo/pec/store"
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
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	prov, err := cfg.BuildProvider()
	if err != nil {
		return err
	}
	st, err := store.Open(cfg.Store.Path)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	dir, err := service.OpenIndex(ctx, cfg, 0, log)
	if err != nil {
		return err
	}
	sender := &outbox.Sender{Store: st, Addr: cfg.Reinject.Address, Helo: cfg.Reinject.Helo, Logger: log}
	scanner := &clamd.Client{Network: cfg.Clamd.Network, Addr: cfg.Clamd.Address, Timeout: cfg.Clamd.Timeout.Duration}
	var observe func(role string, d filter.Decision, elapsed time.Duration)
	if cfg.Milter.Metrics != "" {
		mx := metrics.New(metrics.Options{Store: st, StorePath: cfg.Store.Path, Index: dir, Log: log})
		if err := serveMetrics(ctx, mx, cfg.Milter.Metrics, log); err != nil {
			return err
		}
		sender.OnResult = mx.OutboxResult
		scanner.OnError = mx.ClamdError
		observe = mx.ObserveMilter
	}
	go sender.Run(ctx)

	timers := &timer.Runner{Store: st, Provider: prov, Kick: sender.Kick, Log: log}
	go timers.Run(ctx, time.Minute)

	var servers []*filter.Milter
	if cfg.Milter.Access != "" {
		access := &filter.Access{
			Provider: prov, MaxRecipients: cfg.Limits.MaxRecipients, MaxSizeTimesRcpts: cfg.Limits.MaxSizeTimesRcpts,
			MessagesPerHour: cfg.Limits.MessagesPerHour, NoticeMaxSize: cfg.Limits.NoticeMaxSize,
			Scanner: scanner, Index: dir.Current, Log: log,
			Sent: func(sender string, since time.Time) (int, error) {
				ev, err := st.Events(store.Query{Sender: sender, Type: "accettazione", From: since})
				return len(ev), err
			},
		}
		servers = append(servers, &filter.Milter{Name: "access", Role: access, Store: st, Kick: sender.Kick, Log: log, RequireAuth: true, Observer: observe})
	}
	if cfg.Milter.Incoming != "" {
		roots, err := cfg.Roots()
		if err != nil {
			return err
		}
		in := &filter.Incoming{Provider: prov, Config: cfg, Roots: roots, Scanner: scanner, Index: dir.Current, Log: log}
		servers = append(servers, &filter.Milter{Name: "incoming", Role: in, Store: st, Kick: sender.Kick, Log: log, Observer: observe})
	}
	if len(servers) == 0 {
		return errors.New("[milter] neither access nor incoming is set: nothing to serve")
	}
	errc := make(chan error, len(servers))
	var lns []net.Listener
	for _, m := range servers {
		spec := cfg.Milter.Access
		if m.Name == "incoming" {
			spec = cfg.Milter.Incoming
		}
		ln, err := config.Listen(spec)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		log.Info("serving", "role", m.Name, "listen", spec)
		go func(m *filter.Milter, ln net.Listener) { errc <- m.Serve(ln) }(m, ln)
	}
	select {
	case <-ctx.Done():
		for _, ln := range lns {
			ln.Close()
		}
		return nil
	case err := <-errc:
		return fmt.Errorf("milter server: %w", err)
	}
}

// serveMetrics serves the Prometheus endpoint (/metrics, /healthz) on addr
// until ctx is done. A listen error stops the start: the operator asked
// for the endpoint.
func serveMetrics(ctx context.Context, mx *metrics.Metrics, addr string, log *slog.Logger) error {
	ln, err := config.Listen(addr)
	if err != nil {
		return fmt.Errorf("[milter] metrics: %w", err)
	}
	log.Info("serving metrics", "listen", addr)
	go func() {
		if err := mx.Serve(ctx, ln); err != nil {
			log.Error("metrics endpoint stopped", "error", err)
		}
	}()
	return nil
}
