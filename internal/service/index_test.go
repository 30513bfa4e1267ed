package service

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testpki"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// No cached copy and the source down at start: mail is tempfailed
// (ErrNoIndex) only until the source is back, seconds later, not for the
// hour of the normal retry period.
func TestIndexLoadedSoonAfterTheSourceReturns(t *testing.T) {
	dir := t.TempDir()
	ldif := filepath.Join(dir, "providers.ldif") // not there yet
	cfg := &config.Config{Index: config.Index{LDIF: ldif, CacheDir: filepath.Join(dir, "cache")},
		Store: config.Store{Path: filepath.Join(dir, "pec.db")}}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ix, err := OpenIndex(ctx, cfg, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Current(); !errors.Is(err, ErrNoIndex) {
		t.Fatalf("Current with neither source nor cache = %v, want ErrNoIndex", err)
	}
	// wait for the background loop's own failed attempt, then bring the
	// source back
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "no copy loaded"); {
		if time.Now().After(deadline) {
			t.Fatalf("the background sync never reported the missing copy:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	p := testpki.New("pec.example.test").Issue("Provider S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, true)
	data := index.TestLDIF(index.TestProvider{Name: "Provider S.p.A.", Domains: []string{"pec.example.test"}, Certs: []*x509.Certificate{p.Cert}})
	if err := os.WriteFile(ldif, data, 0o644); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for {
		if d, err := ix.Current(); err == nil {
			if !d.IsCertified("someone@pec.example.test") {
				t.Fatal("the loaded index does not know the provider")
			}
			t.Logf("index served %v after the source returned", time.Since(back).Round(time.Millisecond))
			return
		}
		if time.Since(back) > 20*time.Second {
			t.Fatalf("still no index 20 s after the source returned:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
