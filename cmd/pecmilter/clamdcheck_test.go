package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/internal/testenv"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// The start-up check names what is wrong: a clamd that does not answer
// (wrong socket, not started for want of signatures), a StreamMaxLength
// below the largest message, no official signature database.
func TestCheckClamd(t *testing.T) {
	old := clamdPatience
	clamdPatience, clamdRetry = 200*time.Millisecond, 50*time.Millisecond
	t.Cleanup(func() { clamdPatience, clamdRetry = old, 2*time.Second })

	cd := testenv.StartClamdWith(t, testenv.ClamdOptions{StreamMaxLength: "1M"})
	var logs lockedBuf
	log := slog.New(slog.NewTextHandler(&logs, nil))
	checkClamd(context.Background(), &clamd.Client{Network: "unix", Addr: cd.Socket}, 100<<20, log)
	out := logs.String()
	for _, want := range []string{"no official signature database", "StreamMaxLength is below", "needed_bytes=104857600", "dpkg-reconfigure clamav-daemon"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}

	logs = lockedBuf{}
	checkClamd(context.Background(), &clamd.Client{Network: "unix", Addr: cd.Socket}, 1<<20, log)
	if out := logs.String(); !strings.Contains(out, "clamd takes streams of the largest message") || strings.Contains(out, "level=ERROR") {
		t.Errorf("limit big enough:\n%s", out)
	}

	// a wrong socket path: an error naming it, repeated while it lasts
	logs = lockedBuf{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	checkClamd(ctx, &clamd.Client{Network: "unix", Addr: "/nonexistent/clamd.ctl", Timeout: time.Second}, 1<<20, log)
	if out := logs.String(); !strings.Contains(out, "clamd does not answer PING") || !strings.Contains(out, "/nonexistent/clamd.ctl") || !strings.Contains(out, "freshclam") {
		t.Errorf("wrong socket:\n%s", out)
	}
}
