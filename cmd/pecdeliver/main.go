// Command pecdeliver is the PEC delivery point (RFC 6109 §2.2.3): an LMTP
// server that Postfix delivers to and that forwards to Dovecot's LMTP,
// issuing a delivery or non-delivery receipt per recipient of every valid
// transport envelope.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/metrics"
	"github.com/pecgo/pec/outbox"
	"github.com/pecgo/pec/store"
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
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	prov, err := cfg.BuildProvider()
	if err != nil {
		return err
	}
	roots, err := cfg.Roots()
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
	var observe func(lmtp.Report)
	if cfg.Deliver.Metrics != "" {
		mx := metrics.New(metrics.Options{Store: st, StorePath: cfg.Store.Path, Index: dir, Log: log})
		mln, err := config.Listen(cfg.Deliver.Metrics)
		if err != nil {
			return fmt.Errorf("[deliver] metrics: %w", err)
		}
		log.Info("serving metrics", "listen", cfg.Deliver.Metrics)
		go func() {
			if err := mx.Serve(ctx, mln); err != nil {
				log.Error("metrics endpoint stopped", "error", err)
			}
		}()
		sender.OnResult = mx.OutboxResult
		observe = mx.ObserveDelivery
	}
	go sender.Run(ctx)
	ln, err := config.Listen(cfg.Deliver.Listen)
	if err != nil {
		return err
	}
	srv := &lmtp.Server{
		Delivery: &lmtp.Delivery{Provider: prov, Config: cfg, Roots: roots, Index: dir.Current},
		Store:    st, Dovecot: cfg.Deliver.Dovecot, Kick: sender.Kick, Log: log,
		Observer: observe,
	}
	log.Info("serving LMTP", "listen", cfg.Deliver.Listen, "dovecot", cfg.Deliver.Dovecot)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		ln.Close()
		return nil
	case err := <-errc:
		return err
	}
}
