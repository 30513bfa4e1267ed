package testenv

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClamdOptions tunes StartClamdWith.
type ClamdOptions struct {
	// StreamMaxLength is clamd.conf's StreamMaxLength (e.g. "1K", "1M");
	// default "50M". Bigger INSTREAM streams get "INSTREAM size limit exceeded. ERROR".
	StreamMaxLength string
	// Extra clamd.conf lines, appended last.
	Extra []string
}

// Clamd is a running throwaway clamd with a two-signature database.
type Clamd struct {
	Addr    string // "127.0.0.1:port" (TCPSocket)
	Socket  string // unix socket path (LocalSocket, mode 0666)
	Dir     string
	Conf    string // clamd.conf path
	LogPath string // clamd's LogFile

	bin    string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Signature names in the private database. clamd reports them with
// ".UNOFFICIAL" appended (e.g. "Test.EICAR.NDB.UNOFFICIAL"); the .ndb body
// signature normally matches first.
const (
	ClamdSigHDB = "Test.EICAR.HDB"
	ClamdSigNDB = "Test.EICAR.NDB"
)

// StartClamd starts clamd with a private database (EICAR as an MD5 .hdb and
// a body .ndb signature, made at run time), waits for PONG and registers cleanup.
func StartClamd(t testing.TB) *Clamd {
	t.Helper()
	return StartClamdWith(t, ClamdOptions{})
}

// StartClamdWith is StartClamd with options.
func StartClamdWith(t testing.TB, o ClamdOptions) *Clamd {
	t.Helper()
	bin := mustLook(t, "clamd")
	if o.StreamMaxLength == "" {
		o.StreamMaxLength = "50M"
	}
	dir := newDir(t, "clamd")
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	eicar := EICAR()
	sum := md5.Sum(eicar)
	// .hdb: md5:size:name; .ndb: name:target(0=any):offset(*):hex (ClamAV signature docs).
	writeFile(t, filepath.Join(db, "test.hdb"), fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(eicar), ClamdSigHDB), 0o644)
	writeFile(t, filepath.Join(db, "test.ndb"), fmt.Sprintf("%s:0:*:%s\n", ClamdSigNDB, hex.EncodeToString(eicar[:40])), 0o644)

	c := &Clamd{
		Addr:    fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		Socket:  filepath.Join(dir, "clamd.sock"),
		Dir:     dir,
		Conf:    filepath.Join(dir, "clamd.conf"),
		LogPath: filepath.Join(dir, "clamd.log"),
		bin:     bin,
	}
	host, port, _ := net.SplitHostPort(c.Addr)
	conf := []string{
		"Foreground yes",
		"DatabaseDirectory " + db,
		"LocalSocket " + c.Socket,
		// Readable/writable by any user, e.g. a milter not running as root.
		"LocalSocketMode 666",
		"TCPSocket " + port,
		"TCPAddr " + host,
		"LogFile " + c.LogPath,
		"LogTime yes",
		"PidFile " + filepath.Join(dir, "clamd.pid"),
		"StreamMaxLength " + o.StreamMaxLength,
		"MaxThreads 4",
	}
	conf = append(conf, o.Extra...)
	writeFile(t, c.Conf, strings.Join(conf, "\n")+"\n", 0o644)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("clamd log (%s):\n%s", c.LogPath, tail(c.LogPath, 20))
		}
		c.Stop()
	})
	c.Start(t)
	return c
}

// Start starts clamd again (same config and addresses) and waits for PONG on
// both the TCP and the unix socket. Starting a running clamd is a no-op.
func (c *Clamd) Start(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd != nil {
		return
	}
	out, err := os.OpenFile(filepath.Join(c.Dir, "clamd.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(c.bin, "-c", c.Conf)
	cmd.Stdout, cmd.Stderr = out, out
	// If the test binary dies (e.g. -timeout panic) clamd goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting clamd: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.cmd, c.exited = cmd, exited

	deadline := time.Now().Add(20 * time.Second)
	for _, a := range [][2]string{{"tcp", c.Addr}, {"unix", c.Socket}} {
		for {
			if clamdPing(a[0], a[1]) == nil {
				break
			}
			select {
			case <-exited:
				t.Fatalf("testenv: clamd exited at startup (%v):\n%s", cmd.ProcessState, tail(filepath.Join(c.Dir, "clamd.out"), 20))
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: clamd not answering PING on %s %s:\n%s", a[0], a[1], tail(c.LogPath, 20))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// PID returns clamd's process id (it runs in the foreground), 0 when it
// is not running.
func (c *Clamd) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Stop stops clamd now (SIGTERM to the PID in its pid file) and waits for it
// to exit. Idempotent.
func (c *Clamd) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	pid, err := readPID(filepath.Join(c.Dir, "clamd.pid"))
	if err != nil {
		pid = c.cmd.Process.Pid // pid file not written yet
	}
	stopPID(pid, c.exited, 10*time.Second)
	if pid != c.cmd.Process.Pid {
		stopPID(c.cmd.Process.Pid, c.exited, time.Second)
	}
	c.cmd, c.exited = nil, nil
}

// clamdPing does a raw zPING (clamd(8)) without importing package clamd,
// whose tests import testenv.
func clamdPing(network, addr string) error {
	conn, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("zPING\x00")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, _ := conn.Read(buf)
	if string(buf[:n]) != "PONG\x00" {
		return fmt.Errorf("reply %q", buf[:n])
	}
	return nil
}
