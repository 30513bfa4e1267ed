package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
)

// ProfileEnv names a directory: when set, the daemon writes a CPU profile
// of its whole run and a profile of its allocations at exit there
// (<program>.<pid>.cpu.pprof, .allocs.pprof), for `go tool pprof`. A
// diagnostic for measuring the full path (make bench-fullpath), off unless
// asked for; it never changes what the daemon does.
const ProfileEnv = "PEC_PROFILE_DIR"

// startProfile starts the CPU profile when ProfileEnv is set and returns
// what writes both profiles; it returns a no-op otherwise.
func startProfile(log *slog.Logger) func() {
	dir := os.Getenv(ProfileEnv)
	if dir == "" {
		return func() {}
	}
	base := filepath.Join(dir, fmt.Sprintf("%s.%d", filepath.Base(os.Args[0]), os.Getpid()))
	cpu, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		log.Warn("no profile written: cannot create the file", "error", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		cpu.Close()
		log.Warn("no profile written", "error", err)
		return func() {}
	}
	log.Info("writing profiles", "prefix", base)
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		runtime.GC()
		if f, err := os.Create(base + ".allocs.pprof"); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
}
