package index

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/pecgo/pec/internal/atomicfile"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Source produces a fresh snapshot of the directory.
type Source interface {
	Fetch(ctx context.Context) (*Index, error)
}

// FileSource reads a local file: plain LDIF, or, with Signed, a CMS-signed
// LDIF verified against Roots.
type FileSource struct {
	Path   string
	Signed bool
	Roots  *x509.CertPool
}

// Fetch reads and parses the file.
func (s FileSource) Fetch(ctx context.Context) (*Index, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.Path)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	if s.Signed {
		ix, err := LoadSignedLDIF(data, s.Roots)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.Path, err)
		}
		return ix, nil
	}
	ix, err := ParseLDIF(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Path, err)
	}
	return ix, nil
}

// MaxSignedLDIFSize bounds what URLSource reads.
const MaxSignedLDIFSize = 64 << 20

// URLSource downloads a signed LDIF (the .p7m at the root entry's
// LDIFLocationURL, RFC 6109 §4.5.6) and verifies it against Roots. The
// signature, not the transport, is what makes the file trusted, so http://
// works too (RFC 6109 says HTTPS; a client certificate, if IGPEC asks for
// one, goes in Client's transport).
type URLSource struct {
	URL    string
	Roots  *x509.CertPool
	Client *http.Client // nil: a client with a 2-minute timeout
}

// Fetch downloads and verifies the file.
func (s URLSource) Fetch(ctx context.Context) (*Index, error) {
	c := s.Client
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Minute}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	req.Header.Set("Accept", "application/pkcs7-mime, application/octet-stream, */*")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("index: GET %s: %s", s.URL, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxSignedLDIFSize+1))
	if err != nil {
		return nil, fmt.Errorf("index: GET %s: %w", s.URL, err)
	}
	if len(data) > MaxSignedLDIFSize {
		return nil, fmt.Errorf("index: GET %s: larger than %d bytes", s.URL, MaxSignedLDIFSize)
	}
	ix, err := LoadSignedLDIF(data, s.Roots)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.URL, err)
	}
	return ix, nil
}

// LDAPSource reads an LDAP replica of the directory.
type LDAPSource struct {
	LDAPConfig
}

// Fetch runs FetchLDAP.
func (s LDAPSource) Fetch(ctx context.Context) (*Index, error) {
	return FetchLDAP(ctx, s.LDAPConfig)
}

// CacheFileName is the cache file inside Syncer.CacheDir.
const CacheFileName = "providers.ldif"

// fetchedAtPrefix starts the cache file's first line, a comment.
const fetchedAtPrefix = "# fetched-at: "

// signedAtPrefix starts the comment line recording when a signed LDIF was
// signed (the CMS signing time), against rollbacks.
const signedAtPrefix = "# signed-at: "

// cachedSignedAt returns the signing time recorded in the cache, if any.
func (s *Syncer) cachedSignedAt() time.Time {
	data, err := os.ReadFile(s.CachePath())
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.SplitN(string(data), "\n", 4) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), signedAtPrefix); ok {
			t, _ := time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
			return t
		}
	}
	return time.Time{}
}

// Syncer refreshes the index from Source and keeps the last good snapshot
// on disk (CacheDir/providers.ldif, LDIF written atomically with a
// temporary file and a rename) so that it can be served while the source is
// down. Methods may be called concurrently; syncs are serialised.
type Syncer struct {
	Source   Source
	CacheDir string
	Logger   *slog.Logger     // nil: no logging
	Now      func() time.Time // nil: time.Now

	mu    sync.Mutex
	sleep func(ctx context.Context, d time.Duration) bool // Run's wait; nil: sleepCtx (tests replace it)
}

func (s *Syncer) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Syncer) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

// CachePath is the cache file's path.
func (s *Syncer) CachePath() string { return filepath.Join(s.CacheDir, CacheFileName) }

// Load returns the cached index and when it was fetched. Before the first
// successful Sync the error wraps fs.ErrNotExist.
func (s *Syncer) Load() (*Index, time.Time, error) {
	data, err := os.ReadFile(s.CachePath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, time.Time{}, fmt.Errorf("index: no cached index yet (%w)", err)
		}
		return nil, time.Time{}, fmt.Errorf("index: cache: %w", err)
	}
	ix, err := ParseLDIF(bytes.NewReader(data))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("index: cache %s: %w", s.CachePath(), err)
	}
	var at time.Time
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if v, ok := strings.CutPrefix(strings.TrimSpace(string(first)), fetchedAtPrefix); ok {
		at, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(v))
	}
	if at.IsZero() {
		if fi, err := os.Stat(s.CachePath()); err == nil {
			at = fi.ModTime()
		}
	}
	return ix, at, nil
}

// Sync fetches from the source. On success it writes the cache, logs and
// returns the new index with the Diff against the cached one (the index's
// Warnings are logged too). On failure it returns the error and leaves the
// cache untouched: callers keep serving the snapshot they have.
func (s *Syncer) Sync(ctx context.Context) (*Index, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	log := s.logger()
	ix, err := s.Source.Fetch(ctx)
	if err != nil {
		log.Error("providers' index: sync failed, keeping the cached index", "err", err)
		return nil, nil, err
	}
	// a validly signed but older file (a replayed copy) must not replace
	// a newer one: that could bring back a revoked certificate
	if signer, signedAt := ix.SignedBy(); signer != nil {
		prev := s.cachedSignedAt()
		if signedAt.IsZero() && !prev.IsZero() {
			err := errors.New("index: the signed LDIF has no signing time, the cached copy has one: refusing what could be a rollback")
			log.Error("providers' index: sync refused, keeping the cached index", "err", err)
			return nil, nil, err
		}
		if !prev.IsZero() && signedAt.Before(prev) {
			err := fmt.Errorf("index: the signed LDIF was signed at %s, before the cached copy (%s): refusing a rollback",
				signedAt.UTC().Format(time.RFC3339), prev.UTC().Format(time.RFC3339))
			log.Error("providers' index: sync refused, keeping the cached index", "err", err)
			return nil, nil, err
		}
	}
	old, _, lerr := s.Load()
	if lerr != nil && !errors.Is(lerr, fs.ErrNotExist) {
		log.Warn("providers' index: cached index unreadable, diffing against an empty one", "err", lerr)
	}
	at := s.now()
	if err := s.writeCache(ix, at); err != nil {
		log.Error("providers' index: cannot write the cache", "err", err)
		return nil, nil, err
	}
	lines := Diff(old, ix)
	attrs := []any{"providers", ix.Len(), "changes", len(lines)}
	if c, t := ix.SignedBy(); c != nil {
		attrs = append(attrs, "signer", c.Subject.String(), "signed_at", t)
	}
	log.Info("providers' index: synced", attrs...)
	for _, l := range lines {
		log.Info("providers' index: " + l)
	}
	for _, w := range ix.Warnings() {
		log.Warn("providers' index: " + w)
	}
	return ix, lines, nil
}

func (s *Syncer) writeCache(ix *Index, at time.Time) error {
	if err := os.MkdirAll(s.CacheDir, 0o755); err != nil {
		return fmt.Errorf("index: cache: %w", err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s%s\n", fetchedAtPrefix, at.UTC().Format(time.RFC3339Nano))
	if _, signedAt := ix.SignedBy(); !signedAt.IsZero() {
		fmt.Fprintf(&buf, "%s%s\n", signedAtPrefix, signedAt.UTC().Format(time.RFC3339Nano))
	}
	fmt.Fprintf(&buf, "# PEC providers' index (RFC 6109 §4.5), last good copy kept by the index Syncer\n")
	if err := ix.WriteLDIF(&buf); err != nil {
		return fmt.Errorf("index: cache: %w", err)
	}
	if err := atomicfile.Write(s.CachePath(), buf.Bytes(), 0o644, nil); err != nil {
		return fmt.Errorf("index: cache: %w", err)
	}
	return nil
}

// Retry delays of Run while no copy of the index is at hand: mail is
// tempfailed meanwhile, so the source is tried again soon, backing off
// from RetryFirst to RetryMax.
const (
	RetryFirst = 5 * time.Second
	RetryMax   = time.Minute
)

// Run syncs now and then every interval (default 24 h) until ctx is done,
// calling onUpdate (if not nil) with the snapshot of each successful sync.
// After a failed sync it retries sooner: while a copy is at hand (the
// cache, or an earlier sync of this Run) after min(interval, 1 h); while
// there is none, and so mail is tempfailed (fail closed), after
// RetryFirst, doubling up to RetryMax, so that mail flows again within a
// minute of the source coming back.
func (s *Syncer) Run(ctx context.Context, interval time.Duration, onUpdate func(*Index)) {
	if interval <= 0 {
		interval = 24 * time.Hour
	}
	sleep := s.sleep
	if sleep == nil {
		sleep = sleepCtx
	}
	_, _, lerr := s.Load()
	have := lerr == nil
	retry := RetryFirst
	for {
		next := interval
		ix, _, err := s.Sync(ctx)
		switch {
		case err == nil:
			have, retry = true, RetryFirst
			if onUpdate != nil {
				onUpdate(ix)
			}
		case have:
			next = min(interval, time.Hour)
		default:
			next, retry = min(retry, interval), min(2*retry, RetryMax)
			if ctx.Err() == nil {
				s.logger().Warn("providers' index: no copy loaded, mail is tempfailed until a sync succeeds; check the [index] source",
					"retry_in", next, "err", err)
			}
		}
		if !sleep(ctx, next) {
			return
		}
	}
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
