package packaging

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/testenv"
)

// listenEnv makes the test binary, run as another account by
// testenv.RunSelfAs, open a socket with config.Listen and leave it behind.
const listenEnv = "PEC_PACKAGING_LISTEN"

func TestMain(m *testing.M) {
	if spec := os.Getenv(listenEnv); spec != "" {
		ln, err := config.Listen(spec)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
		fmt.Println("ok")
		os.Exit(0)
	}
	testenv.HelperMain()
	os.Exit(m.Run())
}

// freeID returns a uid and gid that no local account or group uses.
func freeID(t *testing.T) int {
	for id := 64100; id < 65000; id++ {
		_, errU := user.LookupId(strconv.Itoa(id))
		_, errG := user.LookupGroupId(strconv.Itoa(id))
		if errU != nil && errG != nil {
			return id
		}
	}
	t.Skip("no free uid between 64100 and 65000")
	return 0
}

// TestSocketDirLayout installs the package's /run/pec the way the system
// does (systemd-tmpfiles with packaging/tmpfiles/pec.conf) into a scratch
// root, with a pec account that exists only there, then lets pec open the
// sockets of pec.toml.example with config.Listen as pecmilter and
// pecdeliver do: the directory is pec:postfix 2750, each socket 0660 with
// group postfix although pec is not in that group; Postfix's user can
// connect, nobody gets permission denied.
func TestSocketDirLayout(t *testing.T) {
	testenv.NeedRoot(t, "creating files for other accounts")
	testenv.Need(t, "systemd-tmpfiles")
	postfix := testenv.LookupAccount(t, "postfix")
	nobody := testenv.LookupAccount(t, "nobody")
	id := freeID(t)
	pec := testenv.Account{Name: "pec", Cred: &syscall.Credential{Uid: uint32(id), Gid: uint32(id), Groups: []uint32{}}}

	root, err := os.MkdirTemp("", "pec-root-") // short and traversable: socket paths, other accounts
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	for _, d := range []string{"etc", "run", "usr/lib/tmpfiles.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/passwd", fmt.Sprintf("pec:x:%d:%d:PEC provider services:/var/lib/pec:/usr/sbin/nologin\n", id, id))
	write("etc/group", fmt.Sprintf("pec:x:%d:\npostfix:x:%d:\n", id, postfix.Cred.Gid))
	conf, err := os.ReadFile("tmpfiles/pec.conf")
	if err != nil {
		t.Fatal(err)
	}
	write("usr/lib/tmpfiles.d/pec.conf", string(conf))
	if out, err := exec.Command("systemd-tmpfiles", "--root="+root, "--create", "pec.conf").CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --create pec.conf: %v\n%s", err, out)
	}

	run := filepath.Join(root, "run/pec")
	fi, err := os.Stat(run)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 ||
		st.Uid != uint32(id) || st.Gid != postfix.Cred.Gid {
		t.Fatalf("/run/pec: %v uid %d gid %d, want drwxr-s--- pec:postfix", fi.Mode(), st.Uid, st.Gid)
	}

	cfg, err := config.Load("../pec.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{cfg.Milter.Access, cfg.Milter.Incoming, cfg.Deliver.Listen} {
		network, path, _ := config.SplitAddr(spec)
		if network != "unix" || filepath.Dir(path) != "/run/pec" {
			t.Errorf("pec.toml.example: %s is not a socket in /run/pec", spec)
			continue
		}
		sock := filepath.Join(root, path)
		if out := testenv.RunSelfAs(t, pec, listenEnv+"=unix:"+sock); out != "ok" {
			t.Errorf("config.Listen(%s) as pec: %s", sock, out)
			continue
		}
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 ||
			st.Uid != uint32(id) || st.Gid != postfix.Cred.Gid {
			t.Errorf("%s made by pec: %v uid %d gid %d, want srw-rw---- pec:postfix", path, fi.Mode(), st.Uid, st.Gid)
		}
		// who may connect, with a listener behind the same path and modes
		ln, err := config.Listen("unix:" + sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		if _, err := testenv.DialAs(t, postfix, "unix", sock); err != nil {
			t.Errorf("postfix cannot connect to %s: %v", path, err)
		}
		if got, err := testenv.DialAs(t, nobody, "unix", sock); !errors.Is(err, testenv.ErrDenied) {
			t.Errorf("nobody connecting to %s: %q, %v; want permission denied", path, got, err)
		}
		ln.Close()
	}
	// the directory stays as tmpfiles made it (Listen tightens only open ones)
	if fi, _ := os.Stat(run); fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("/run/pec after the listeners: %v", fi.Mode())
	}
	if !strings.Contains(string(conf), "d /run/pec 2750 pec postfix") {
		t.Errorf("tmpfiles/pec.conf: %q", conf)
	}
}
