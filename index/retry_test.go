package index

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Run's waits, recorded instead of slept. With no copy at hand a failing
// source is retried after 5 s, doubling up to a minute; once a sync
// succeeds the period is the interval again, and a failure with a copy
// at hand waits an hour.
func TestRunRetriesQuicklyWhileNoCopy(t *testing.T) {
	f := getFixture(t)
	path := filepath.Join(t.TempDir(), "igpec.ldif") // missing: the source is down
	s, logs := newSyncer(t, FileSource{Path: path}, time.Now())
	var waits []time.Duration
	updates := 0
	s.sleep = func(ctx context.Context, d time.Duration) bool {
		waits = append(waits, d)
		switch len(waits) {
		case 6: // the source comes back
			if err := os.WriteFile(path, TestLDIF(f.betaP), 0o644); err != nil {
				t.Fatal(err)
			}
		case 7: // and goes away again, with a copy at hand now
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		case 8:
			return false
		}
		return true
	}
	s.Run(context.Background(), 24*time.Hour, func(*Index) { updates++ })

	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, time.Minute, time.Minute,
		24 * time.Hour, time.Hour}
	if !reflect.DeepEqual(waits, want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	if updates != 1 {
		t.Errorf("%d updates, want 1", updates)
	}
	if n := strings.Count(logs.String(), "no copy loaded"); n != 6 {
		t.Errorf("%d warnings about the missing copy, want 6 (one per failure without a copy):\n%s", n, logs)
	}
}

// A cached copy is a copy at hand: a failing source waits the normal hour.
func TestRunWithCacheRetriesHourly(t *testing.T) {
	f := getFixture(t)
	path := filepath.Join(t.TempDir(), "igpec.ldif")
	if err := os.WriteFile(path, TestLDIF(f.betaP), 0o644); err != nil {
		t.Fatal(err)
	}
	s, _ := newSyncer(t, FileSource{Path: path}, time.Now())
	if _, _, err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	s.sleep = func(_ context.Context, d time.Duration) bool { waits = append(waits, d); return false }
	s.Run(context.Background(), 24*time.Hour, nil)
	if len(waits) != 1 || waits[0] != time.Hour {
		t.Errorf("waits %v, want [1h]", waits)
	}
}
