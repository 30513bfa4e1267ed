package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialEnv names the socket the test binary dials when it runs as the
// child of DialAs.
const dialEnv = "PEC_TESTENV_DIAL"

// HelperMain must be called first in TestMain of a package that uses
// DialAs: in the child it dials, prints the outcome and exits; otherwise
// it returns at once.
//
//	func TestMain(m *testing.M) { testenv.HelperMain(); os.Exit(m.Run()) }
func HelperMain() {
	spec := os.Getenv(dialEnv)
	if spec == "" {
		return
	}
	network, addr, _ := strings.Cut(spec, " ")
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
			fmt.Println("denied:", err)
		} else {
			fmt.Println("error:", err)
		}
		os.Exit(0)
	}
	defer c.Close()
	// SMTP and LMTP servers speak first; a milter waits for the client
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Println("ok:", strings.TrimSpace(line))
	os.Exit(0)
}

// Account is a local user to run a child process as.
type Account struct {
	Name string
	Cred *syscall.Credential // uid, primary gid and supplementary groups
}

// LookupAccount returns name's uid, gid and groups, or skips the test
// when the user does not exist.
func LookupAccount(t testing.TB, name string) Account {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no local user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return Account{Name: name, Cred: cred}
}

// ErrDenied is what DialAs returns when the kernel refused the connection
// (EACCES: the socket's or a directory's mode).
var ErrDenied = errors.New("permission denied")

// DialAs connects to network/addr ("unix", "/path" or "tcp", "host:port")
// from a child process running as the account, the way any other local
// process would, and returns the server's first line (the SMTP/LMTP
// greeting; "" for a milter, which waits for the client). A refusal by
// the kernel's permission checks wraps ErrDenied. The child is this test
// binary (see HelperMain).
func DialAs(t testing.TB, acct Account, network, addr string) (string, error) {
	t.Helper()
	res := RunSelfAs(t, acct, dialEnv+"="+network+" "+addr)
	switch {
	case strings.HasPrefix(res, "ok:"):
		return strings.TrimSpace(strings.TrimPrefix(res, "ok:")), nil
	case strings.HasPrefix(res, "denied:"):
		return "", fmt.Errorf("%w: %s", ErrDenied, strings.TrimSpace(strings.TrimPrefix(res, "denied:")))
	}
	return "", errors.New(res)
}

// RunSelfAs runs this test binary as the account (uid, gid and groups)
// with only env in its environment, from a copy the account can execute,
// and returns its trimmed output. TestMain must recognise env, do the
// work and exit (HelperMain does so for DialAs).
func RunSelfAs(t testing.TB, acct Account, env ...string) string {
	t.Helper()
	NeedRoot(t, "running a child process as another user")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(newDir(t, "as"), "child")
	copyFile(t, exe, bin, 0o755)
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: acct.Cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: running %v as %s: %v\n%s", env, acct.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// SocketDir makes a directory for unix sockets laid out as in production
// (/run/pec: owner root here instead of pec, group postfix, mode 2750, in a
// world-traversable parent): Postfix's user reaches the sockets through
// the group, other accounts cannot enter. Removed at cleanup.
func SocketDir(t testing.TB) string {
	t.Helper()
	NeedRoot(t, "giving the socket directory the group postfix")
	pf := LookupAccount(t, "postfix")
	parent := newDir(t, "run")
	d := filepath.Join(parent, "pec")
	if err := os.Mkdir(d, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d, 0, int(pf.Cred.Gid)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o750|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	return d
}

// SendmailAs submits msg with Postfix's sendmail(1) to the sandbox as the
// account would from a shell, and returns sendmail's output and error.
// For any user but root, sendmail reads /etc/postfix/main.cf first, so it
// runs in a private mount namespace where the sandbox's configuration
// directory is mounted on /etc/postfix (nothing changes outside it).
func (p *Postfix) SendmailAs(t testing.TB, acct Account, from string, rcpts []string, msg []byte) (string, error) {
	t.Helper()
	sendmail := mustLook(t, "sendmail")
	args := append([]string{"-i", "-f", from, "--"}, rcpts...)
	var cmd *exec.Cmd
	if acct.Cred.Uid == 0 {
		cmd = exec.Command(sendmail, append([]string{"-C", p.ConfDir}, args...)...)
	} else {
		Need(t, "unshare", "setpriv", "mount")
		groups := "--clear-groups"
		if len(acct.Cred.Groups) > 0 {
			var g []string
			for _, id := range acct.Cred.Groups {
				g = append(g, strconv.FormatUint(uint64(id), 10))
			}
			groups = "--groups=" + strings.Join(g, ",")
		}
		argv := []string{"-m", "--", "/bin/sh", "-c", `mount --bind "$0" /etc/postfix || exit 99; exec "$@"`, p.ConfDir,
			"setpriv", "--reuid=" + strconv.FormatUint(uint64(acct.Cred.Uid), 10),
			"--regid=" + strconv.FormatUint(uint64(acct.Cred.Gid), 10), groups, sendmail}
		cmd = exec.Command(mustLook(t, "unshare"), append(argv, args...)...)
	}
	cmd.Stdin = strings.NewReader(string(msg))
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 99 {
		t.Fatalf("testenv: cannot mount the sandbox configuration on /etc/postfix in a private namespace:\n%s", out)
	}
	return string(out), err
}
