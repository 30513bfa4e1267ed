package config_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/testenv"
)

func TestMain(m *testing.M) {
	testenv.HelperMain()
	os.Exit(m.Run())
}

func stat(t *testing.T, p string) (os.FileMode, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode(), fi.Sys().(*syscall.Stat_t)
}

func listen(t *testing.T, spec string) net.Listener {
	t.Helper()
	ln, err := config.Listen(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// accept and drop, so that a connecting child does not hang
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// TestListenUnixModes: a socket in a missing directory gets a 0750
// directory and mode 0660; an existing directory that others can enter is
// tightened to 0750 (its setgid bit kept); a stale socket is replaced, any
// other file is refused.
func TestListenUnixModes(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "run")
	sock := filepath.Join(dir, "access.sock")
	listen(t, "unix:"+sock)
	if m, _ := stat(t, dir); m.Perm() != 0o750 || !m.IsDir() {
		t.Errorf("created socket directory: mode %v, want drwxr-x---", m)
	}
	m, st := stat(t, sock)
	if m.Type() != os.ModeSocket || m.Perm() != 0o660 {
		t.Errorf("socket mode %v, want srw-rw----", m)
	}
	_, dst := stat(t, dir)
	if st.Gid != dst.Gid {
		t.Errorf("socket group %d, directory group %d", st.Gid, dst.Gid)
	}

	// an open directory of ours is tightened, setgid kept
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	listen(t, "unix:"+filepath.Join(open, "incoming.sock"))
	if m, _ := stat(t, open); m.Perm() != 0o750 || m&os.ModeSetgid == 0 {
		t.Errorf("open directory after Listen: %v, want drwxr-s---", m)
	}

	// a stale socket (the listener of a killed run) is replaced
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	listen(t, "unix:"+stale)

	// a regular file is not ours to delete
	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ln, err := config.Listen("unix:" + file); err == nil {
		ln.Close()
		t.Error("Listen replaced a regular file")
	}
}

// TestListenUnixRefusesForeignOpenDir: a directory others can enter that
// belongs to another user is refused, with the command that fixes it.
func TestListenUnixRefusesForeignOpenDir(t *testing.T) {
	testenv.NeedRoot(t, "making a directory owned by another user")
	nobody := testenv.LookupAccount(t, "nobody")
	d := filepath.Join(t.TempDir(), "foreign")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, int(nobody.Cred.Uid), int(nobody.Cred.Gid)); err != nil {
		t.Fatal(err)
	}
	ln, err := config.Listen("unix:" + filepath.Join(d, "x.sock"))
	if err == nil {
		ln.Close()
		t.Fatal("Listen used a socket directory of another user that everyone can enter")
	}
	if !strings.Contains(err.Error(), "install -d -o pec -g postfix -m 2750 "+d) {
		t.Errorf("error does not tell the operator the fix: %v", err)
	}
}

// TestListenUnixOnlyGroup runs connecting clients as other local accounts:
// in the production layout (directory group postfix, mode 2750) Postfix's
// user connects, nobody gets permission denied — at the socket (0660)
// even when the directory lets it through.
func TestListenUnixOnlyGroup(t *testing.T) {
	testenv.NeedRoot(t, "running clients as other users")
	postfix := testenv.LookupAccount(t, "postfix")
	nobody := testenv.LookupAccount(t, "nobody")

	dir := testenv.SocketDir(t) // root:postfix 2750
	sock := filepath.Join(dir, "access.sock")
	listen(t, "unix:"+sock)
	m, st := stat(t, sock)
	if m.Perm() != 0o660 || st.Gid != postfix.Cred.Gid {
		t.Fatalf("socket %v group %d, want srw-rw---- group postfix (%d)", m, st.Gid, postfix.Cred.Gid)
	}
	if _, err := testenv.DialAs(t, postfix, "unix", sock); err != nil {
		t.Errorf("postfix cannot connect to the milter socket: %v", err)
	}
	if _, err := testenv.DialAs(t, nobody, "unix", sock); !errors.Is(err, testenv.ErrDenied) {
		t.Errorf("nobody connecting to the milter socket: %v, want permission denied", err)
	}

	// Without setgid on the directory, Listen gives the socket the
	// directory's group itself (root may; pec may for a group it is in).
	plain := filepath.Join(testenv.SocketDir(t), "plain")
	if err := os.Mkdir(plain, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(plain, 0, int(postfix.Cred.Gid)); err != nil {
		t.Fatal(err)
	}
	sock2 := filepath.Join(plain, "lmtp.sock")
	listen(t, "unix:"+sock2)
	if _, st := stat(t, sock2); st.Gid != postfix.Cred.Gid {
		t.Errorf("socket group %d, want the directory's (%d)", st.Gid, postfix.Cred.Gid)
	}

	// The socket's own mode is the lock: even in a directory everyone can
	// enter, nobody cannot connect.
	parent, err := os.MkdirTemp("", "pec-wide-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	wide := filepath.Join(parent, "run")
	sock3 := filepath.Join(wide, "s.sock")
	listen(t, "unix:"+sock3)
	for _, p := range []string{parent, wide} { // Listen made run 0750: open both to everyone
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := testenv.DialAs(t, nobody, "unix", sock3); !errors.Is(err, testenv.ErrDenied) {
		t.Errorf("nobody connecting to a 0660 socket in an open directory: %v, want permission denied", err)
	}
}
