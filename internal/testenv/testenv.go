// Package testenv starts throwaway real daemons (clamd, Dovecot, Postfix) on
// 127.0.0.1 for integration tests. Every daemon gets a private temp dir,
// ports chosen free at run time, and is stopped by PID (from its pid file)
// in t.Cleanup. See /work/shared/spec/RUNNING-REAL-COMPONENTS.md §2.
package testenv

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sbinDirs are searched after $PATH: daemons live in /usr/sbin, which is not
// on a non-root user's PATH on Debian.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// lookPath is exec.LookPath with the sbin directories as a fallback.
func lookPath(cmd string) (string, error) {
	p, err := exec.LookPath(cmd)
	if err == nil {
		return p, nil
	}
	if !strings.Contains(cmd, "/") {
		for _, d := range sbinDirs {
			if p, err2 := exec.LookPath(filepath.Join(d, cmd)); err2 == nil {
				return p, nil
			}
		}
	}
	return "", err
}

// mustLook resolves cmd or skips the test.
func mustLook(t testing.TB, cmd string) string {
	t.Helper()
	Need(t, cmd)
	p, _ := lookPath(cmd)
	return p
}

// Need skips the test when any of the commands is not installed, naming it.
func Need(t testing.TB, cmds ...string) {
	t.Helper()
	var missing []string
	for _, c := range cmds {
		if _, err := lookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Skipf("not installed: %s (run scripts/install-deps)", strings.Join(missing, ", "))
	}
}

// NeedRoot skips the test unless it runs as root (Postfix needs it).
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// FreePort returns a free TCP port on 127.0.0.1, never the same twice in one
// test process. The port is released before returning, so another process
// could grab it first (unlikely in practice).
func FreePort(t testing.TB) int {
	t.Helper()
	givenMu.Lock()
	defer givenMu.Unlock()
	// the kernel may hand the port just closed out again: a daemon given
	// one port twice (Dovecot: "duplicate listener") fails to start, so
	// a port is never given twice in one test process
	for range 100 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: no free port on 127.0.0.1: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !given[port] {
			given[port] = true
			return port
		}
	}
	t.Fatal("testenv: no port on 127.0.0.1 that this process has not used already")
	return 0
}

var (
	givenMu sync.Mutex
	given   = map[int]bool{} // ports FreePort gave out
)

// eicarB64 is the base64 of the EICAR anti-virus test file; the plain text is
// kept out of the repository so that scanners do not flag the sources.
const eicarB64 = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo="

// EICAR returns the 68-byte EICAR test file, built at run time.
func EICAR() []byte {
	b, err := base64.StdEncoding.DecodeString(eicarB64)
	if err != nil {
		panic(err)
	}
	return b
}

// newDir makes a short, world-traversable temp dir (0755) removed at cleanup.
// Short because unix socket paths are limited to 108 bytes (t.TempDir embeds
// the test name); traversable because daemons drop privileges (Dovecot writes
// mail as the userdb uid, Postfix children run as user postfix).
func newDir(t testing.TB, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pec-"+prefix+"-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// waitTCP waits until addr accepts a connection.
func waitTCP(addr string, timeout time.Duration) error {
	return waitDial("tcp", addr, timeout)
}

func waitDial(network, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %s not accepting connections after %v: %w", network, addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPID reads a pid file ("1234\n", possibly space-padded as Postfix writes it).
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("bad pid file %s: %q", path, b)
	}
	return pid, nil
}

// alive reports whether pid exists and is not a zombie (a daemonised master
// reparented to a PID 1 that does not reap would otherwise look alive).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: trust kill(0)
	}
	// Format: "pid (comm) S ...": the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// stopPID sends SIGTERM to pid and waits until it is gone (exited is closed,
// for children we reap ourselves, or alive() turns false); after grace it
// sends SIGKILL. It returns how the process ended, for the log.
func stopPID(pid int, exited <-chan struct{}, grace time.Duration) string {
	gone := func() bool {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
				return false
			}
		}
		return !alive(pid)
	}
	if gone() {
		return "already gone"
	}
	syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if gone() {
			return "stopped"
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 500 && !gone(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	return "killed after " + grace.String()
}

// tail returns the last n lines of a file, for failure reports.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
