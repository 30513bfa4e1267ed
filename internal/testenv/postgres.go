package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is a throwaway PostgreSQL server from Debian's postgresql
// package: initdb into a temporary directory, the server on 127.0.0.1 and
// a socket directory of its own, stopped by PID at cleanup. As root it
// runs as user postgres (or nobody), since the server refuses root.
type Postgres struct {
	Bin  string // directory of initdb and postgres
	Dir  string // data directory
	Sock string // unix socket directory
	Port int
	User string // the database superuser the tests connect as
	// Fsync keeps the server's fsync and synchronous_commit on (the
	// benchmarks want commits on disk, like SQLite's synchronous=FULL);
	// off by default for quick tests.
	Fsync bool

	t      testing.TB
	cred   *syscall.Credential
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

// postgresBin finds the directory of Debian's server binaries (the
// newest /usr/lib/postgresql/N/bin), or one on PATH.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	p, err := exec.LookPath("postgres")
	if err != nil {
		return "", err
	}
	return filepath.Dir(p), nil
}

// NeedPostgres skips the test when PostgreSQL's server is not installed.
func NeedPostgres(t testing.TB) string {
	t.Helper()
	bin, err := postgresBin()
	if err != nil {
		t.Skip("not installed: postgresql (run scripts/install-deps)")
	}
	return bin
}

// StartPostgres initialises and starts a server; it is stopped at cleanup.
func StartPostgres(t testing.TB) *Postgres {
	return StartPostgresWith(t, false)
}

// StartPostgresWith is StartPostgres with fsync on or off.
func StartPostgresWith(t testing.TB, fsync bool) *Postgres {
	t.Helper()
	p := &Postgres{Bin: NeedPostgres(t), Port: FreePort(t), User: "pec", Fsync: fsync, t: t}
	root := newDir(t, "pg")
	p.Dir, p.Sock, p.log = filepath.Join(root, "data"), filepath.Join(root, "sock"), filepath.Join(root, "postgres.log")
	for _, d := range []string{p.Dir, p.Sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	if os.Geteuid() == 0 {
		name := "postgres"
		u, err := user.Lookup(name)
		if err != nil {
			name = "nobody"
			if u, err = user.Lookup(name); err != nil {
				t.Fatalf("testenv: PostgreSQL refuses to run as root and there is neither a postgres nor a nobody account: %v", err)
			}
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
		for _, f := range []string{root, p.Dir, p.Sock} {
			if err := os.Chown(f, uid, gid); err != nil {
				t.Fatalf("testenv: %v", err)
			}
		}
	}
	initdb := exec.Command(filepath.Join(p.Bin, "initdb"), "-D", p.Dir, "-U", p.User, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	initdb.Dir = root
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	p.Start(t)
	t.Cleanup(p.Stop)
	return p
}

// Start starts the server (again, after Stop or Kill) and waits until it
// accepts connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		t.Fatal("testenv: postgres already running")
	}
	sync := "off"
	if p.Fsync {
		sync = "on"
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(p.Bin, "postgres"), "-D", p.Dir, "-k", p.Sock, "-h", "127.0.0.1", "-p", strconv.Itoa(p.Port),
		"-c", "fsync="+sync, "-c", "synchronous_commit="+sync, "-c", "full_page_writes="+sync,
		"-c", "max_connections=100", "-c", "shared_buffers=32MB")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred, Setpgid: true}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting postgres: %v", err)
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { c.Wait(); close(done) }(cmd, p.exited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := p.ping(); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("testenv: postgres not ready after 30 s: %v\n%s", err, tail(p.log, 30))
		}
		select {
		case <-p.exited:
			p.cmd = nil
			t.Fatalf("testenv: postgres exited at start:\n%s", tail(p.log, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Postgres) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return err
	}
	return c.Close(ctx)
}

// PID is the server's PID (0 when stopped).
func (p *Postgres) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop shuts the server down (fast shutdown: SIGINT, sessions are ended),
// SIGKILL after 20 s.
func (p *Postgres) Stop() { p.signal(syscall.SIGINT) }

// Kill kills the server with SIGKILL: at the next start it recovers from
// its WAL, as after a crash.
func (p *Postgres) Kill() { p.signal(syscall.SIGKILL) }

func (p *Postgres) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	pid := p.cmd.Process.Pid
	syscall.Kill(pid, sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(pid, syscall.SIGKILL)
		<-p.exited
	}
	// the server's children (backends, checkpointer, ...) are in its
	// process group; after a SIGKILL of the postmaster they linger
	syscall.Kill(-pid, syscall.SIGKILL)
	p.cmd = nil
}

// URL is the connection URL of database db over TCP.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", p.User, p.Port, db)
}

var dbSeq struct {
	sync.Mutex
	n int
}

// NewDatabase creates an empty database and returns its URL.
func (p *Postgres) NewDatabase(t testing.TB) string {
	t.Helper()
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("pec_%d", dbSeq.n)
	dbSeq.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		t.Fatalf("testenv: %v\n%s", err, tail(p.log, 20))
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	return p.URL(name)
}

// Log returns the end of the server's log, for failure reports.
func (p *Postgres) Log() string { return tail(p.log, 40) }
