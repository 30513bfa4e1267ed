// Package service wires what pecmilter and pecdeliver share: the
// providers' index kept fresh in the background, the store, the outbox.
package service

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/point"
)

// Index serves the last good snapshot of the providers' index and
// refreshes it daily (RFC 6109 §4.5: a local copy, refreshed every day).
type Index struct {
	mu     sync.RWMutex
	ix     *index.Index
	at     time.Time // when ix was fetched from the source
	syncer *index.Syncer
	log    *slog.Logger
	// tlsPolicy is the Postfix smtp_tls_policy_maps source rewritten
	// with each snapshot set (TLSPolicyPath; "" writes none)
	tlsPolicy string
}

// ErrNoIndex is returned by Current before any snapshot could be loaded.
var ErrNoIndex = errors.New("no providers' index loaded yet: check the [index] source and the log")

// OpenIndex loads the cached snapshot, tries a sync now, and keeps
// syncing every interval (24 h when zero) until ctx is done. It returns
// without error even when neither works: mail is then tempfailed (fail
// closed) until a snapshot arrives, and the source is retried after 5 s,
// backing off to once a minute (index.Syncer.Run).
func OpenIndex(ctx context.Context, cfg *config.Config, interval time.Duration, log *slog.Logger) (*Index, error) {
	src, err := IndexSource(cfg)
	if err != nil {
		return nil, err
	}
	return openIndexFrom(ctx, cfg, src, interval, log)
}

func openIndexFrom(ctx context.Context, cfg *config.Config, src index.Source, interval time.Duration, log *slog.Logger) (*Index, error) {
	l := &Index{syncer: &index.Syncer{Source: src, CacheDir: IndexCacheDir(cfg), Logger: log}, log: log, tlsPolicy: TLSPolicyPath(cfg)}
	if ix, at, err := l.syncer.Load(); err == nil {
		l.setAt(ix, at)
	}
	if ix, _, err := l.syncer.Sync(ctx); err == nil {
		l.set(ix)
	} else {
		log.Error("providers' index sync failed; serving the cached copy if any", "error", err)
	}
	if interval == 0 {
		interval = 24 * time.Hour
	}
	go l.syncer.Run(ctx, interval, l.set)
	return l, nil
}

// Sync refreshes now (pecctl index sync, SIGHUP).
func (l *Index) Sync(ctx context.Context) ([]string, error) {
	ix, diff, err := l.syncer.Sync(ctx)
	if err == nil {
		l.set(ix)
	}
	return diff, err
}

func (l *Index) set(ix *index.Index) { l.setAt(ix, time.Now()) }

func (l *Index) setAt(ix *index.Index, at time.Time) {
	l.mu.Lock()
	l.ix, l.at = ix, at
	l.mu.Unlock()
	WriteTLSPolicy(ix, l.tlsPolicy, l.log) // tlspolicy.go; logs its failure
}

// SyncedAt returns when the snapshot served was fetched from the source:
// the last successful sync, or for a copy loaded from the cache, the time
// the cache records. It is zero while no snapshot is loaded.
func (l *Index) SyncedAt() time.Time {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.at
}

// Snapshot returns the current index or ErrNoIndex.
func (l *Index) Snapshot() (*index.Index, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.ix == nil {
		return nil, ErrNoIndex
	}
	return l.ix, nil
}

// Current returns the snapshot as the milter roles use it.
func (l *Index) Current() (point.Directory, error) {
	ix, err := l.Snapshot()
	if err != nil {
		return nil, err
	}
	return Directory{ix}, nil
}

// Directory adapts an index snapshot to point.Directory.
type Directory struct{ Ix *index.Index }

// IsCertified implements point.Directory.
func (d Directory) IsCertified(addr string) bool { return d.Ix.IsCertified(addr) }

// ProviderFor implements point.Directory.
func (d Directory) ProviderFor(c *x509.Certificate) (string, string, []string, error) {
	p, err := d.Ix.ByCertificate(c)
	if err != nil {
		return "", "", nil, err
	}
	return p.Name, p.MailReceipt, p.Domains, nil
}

// IndexSource is the configured source of the providers' index.
func IndexSource(cfg *config.Config) (index.Source, error) {
	switch {
	case cfg.Index.LDIF != "":
		return index.FileSource{Path: cfg.Index.LDIF}, nil
	case cfg.Index.SignedLDIF != "":
		roots, err := cfg.Roots()
		if err != nil {
			return nil, err
		}
		if strings.HasPrefix(cfg.Index.SignedLDIF, "https://") || strings.HasPrefix(cfg.Index.SignedLDIF, "http://") {
			return index.URLSource{URL: cfg.Index.SignedLDIF, Roots: roots.Pool()}, nil
		}
		return index.FileSource{Path: cfg.Index.SignedLDIF, Signed: true, Roots: roots.Pool()}, nil
	case cfg.Index.LDAPURL != "":
		return index.LDAPSource{LDAPConfig: index.LDAPConfig{URL: cfg.Index.LDAPURL, BaseDN: cfg.Index.LDAPBase}}, nil
	}
	return nil, errors.New("[index] needs ldif, signed_ldif or ldap_url: the providers' index tells certified from ordinary recipients")
}

// IndexCacheDir is where the Syncer keeps the last good copy: [index]
// cache_dir, by default "index" next to the store (as OpenIndex does).
func IndexCacheDir(cfg *config.Config) string {
	if cfg.Index.CacheDir != "" {
		return cfg.Index.CacheDir
	}
	return filepath.Join(cfg.Store.Dir, "index")
}
