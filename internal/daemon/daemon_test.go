package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

// serveBriefly runs Serve with the servers until each has accepted its
// listener, then stops it, and returns the log.
func serveBriefly(t *testing.T, servers ...Server) string {
	t.Helper()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(len(servers))
	for i := range servers {
		servers[i].Serve = func(ln net.Listener) error { wg.Done(); <-ctx.Done(); return nil }
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, log, servers...) }()
	ok := make(chan struct{})
	go func() { wg.Wait(); close(ok) }()
	select {
	case <-ok:
	case err := <-done:
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not start its servers")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return buf.String()
}

// TestServeWarnsOnTCP: a TCP listener (which any local process can use to
// get signatures) is logged as a warning naming what it exposes; a unix
// socket is logged with its mode and group, without a warning.
func TestServeWarnsOnTCP(t *testing.T) {
	log := serveBriefly(t,
		Server{Name: "access milter", Spec: "inet:127.0.0.1:0", Exposure: "provider-signed transport envelopes"},
		Server{Name: "incoming milter", Spec: "unix:" + filepath.Join(t.TempDir(), "run", "incoming.sock")})
	var warn, info string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") {
			warn += l + "\n"
		}
		if strings.Contains(l, "incoming milter") {
			info += l
		}
	}
	if !strings.Contains(warn, "any local process can connect") || !strings.Contains(warn, `what="access milter"`) ||
		!strings.Contains(warn, "provider-signed transport envelopes") {
		t.Errorf("no warning for the TCP access milter:\n%s", log)
	}
	if strings.Contains(warn, "incoming milter") {
		t.Errorf("a unix socket was warned about:\n%s", log)
	}
	if !strings.Contains(info, "mode=0660") || !strings.Contains(info, "group=") {
		t.Errorf("the unix socket's mode and group are not logged: %q", info)
	}
}
