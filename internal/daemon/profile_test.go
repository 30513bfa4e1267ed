package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
)

// With PEC_PROFILE_DIR set a daemon writes its CPU profile and, at exit,
// its allocation profile there; without it, nothing.
func TestProfiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(ProfileEnv, dir)
	stop := startProfile(slog.New(slog.DiscardHandler))
	for i := 0; i < 1e6; i++ {
		_ = strings.Repeat("x", i%64)
	}
	stop()
	for _, suffix := range []string{".cpu.pprof", ".allocs.pprof"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
		if len(files) != 1 {
			t.Fatalf("%d %s files in %s, want 1", len(files), suffix, dir)
		}
		if fi, err := os.Stat(files[0]); err != nil || fi.Size() == 0 {
			t.Fatalf("%s: %v, empty", files[0], err)
		}
	}
	t.Setenv(ProfileEnv, "")
	stop = startProfile(slog.New(slog.DiscardHandler))
	// not profiling: the CPU profiler is free
	if err := pprof.StartCPUProfile(io.Discard); err != nil {
		t.Fatalf("a CPU profile runs without %s: %v", ProfileEnv, err)
	}
	pprof.StopCPUProfile()
	stop()
	if files, _ := os.ReadDir(dir); len(files) != 2 {
		t.Fatalf("%d files in %s after a run without %s, want the 2 of the first run", len(files), dir, ProfileEnv)
	}
}
