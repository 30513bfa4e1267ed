package mailbox

import (
	"bytes"
	"context"
	"fmt"
	"github.com/pecgo/pec/internal/atomicfile"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// Dovecot reads users and passwords from a passwd-file (passwd-file(5) of
// Dovecot 2.3: user:password:uid:gid:gecos:home:shell:extra_fields) that
// Sync writes from the registry. It lists the mailboxes that may log in
// (point.MayUse): active, suspended, and closed within the read-only
// period; a disabled one is left out, so its login fails. Dovecot reads
// the file again when it changes, so no reload is needed.
//
//	passdb {
//	  driver = passwd-file
//	  args = scheme=BLF-CRYPT username_format=%Lu /etc/dovecot/pec-users
//	}
//	userdb {
//	  driver = passwd-file
//	  args = username_format=%Lu /etc/dovecot/pec-users
//	  default_fields = uid=vmail gid=vmail home=/var/vmail/%Ld/%Ln
//	}

// passwdHeader starts every users file the registry writes: a file that
// does not start with it is someone else's and is never replaced.
const passwdHeader = "# written by pecctl mailbox / pecdeliver from the mailbox registry: do not edit\n"

// PasswdFile renders the users file for list at now.
func PasswdFile(list []store.Mailbox, now time.Time, period time.Duration) []byte {
	var b bytes.Buffer
	b.WriteString(passwdHeader)
	for _, m := range list {
		if _, _, login := point.MayUse(Effective(m, now, period)); !login || m.PasswordHash == "" {
			continue
		}
		if strings.ContainsAny(m.Address+m.PasswordHash, ":\n\r") {
			continue // never registered so (CheckAddress); a line must not be split
		}
		fmt.Fprintf(&b, "%s:%s::::::", m.Address, m.PasswordHash)
		if q := m.Options.QuotaBytes; q > 0 {
			fmt.Fprintf(&b, "userdb_quota_rule=*:bytes=%d", q)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory, synced, then renamed over it, so a reader sees the old file
// or the new one, never a part. The mode and group of an existing file
// are kept (Dovecot's auth process must keep reading it); a new file gets
// mode 0640. It does nothing when the file already holds data.
func WriteFileAtomic(path string, data []byte) (changed bool, err error) {
	mode, gid := os.FileMode(0o640), -1
	var oldTime time.Time
	if fi, err := os.Stat(path); err == nil {
		mode, oldTime = fi.Mode().Perm(), fi.ModTime()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			gid = int(st.Gid)
		}
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			return false, nil
		}
	}
	err = atomicfile.Write(path, data, mode, func(tmp string) error {
		if gid >= 0 {
			os.Chown(tmp, -1, gid) // best effort: keep the group Dovecot reads with
		}
		// Dovecot sees a change by the file's time in whole seconds or
		// its size: a second write within the same second, of the same
		// size (a new password), must still move the time
		if now := time.Now(); !oldTime.IsZero() && now.Unix() <= oldTime.Unix() {
			next := oldTime.Truncate(time.Second).Add(time.Second)
			return os.Chtimes(tmp, next, next)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("replacing the Dovecot users file %s: %w", path, err)
	}
	return true, nil
}

// SyncFile writes the users file at path from the registry at now: first
// Sweep records the mailboxes whose read-only period is over, then the
// file is rewritten when it differs. With the store unavailable the file
// is left as it is and the error returned.
func (r *Registry) SyncFile(path string) (changed bool, err error) {
	if _, err := r.Sweep(); err != nil {
		return false, fmt.Errorf("disabling the mailboxes past their read-only period: %w", err)
	}
	list, err := r.Store.ListMailboxes()
	if err != nil {
		return false, err
	}
	if err := checkOurs(path); err != nil {
		return false, err
	}
	return WriteFileAtomic(path, PasswdFile(list, r.now(), r.period()))
}

// Keep runs SyncFile for path now and every interval until ctx ends, so
// that the end of a read-only period removes the login without an
// operator's command (pecdeliver runs it on every node: each node's
// Dovecot reads its own file). Failures are logged and retried.
func (r *Registry) Keep(ctx context.Context, path string, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if changed, err := r.SyncFile(path); err != nil {
			r.log().Error("cannot bring the Dovecot users file in step with the mailbox registry; it keeps its last content, retrying", "file", path, "error", err)
		} else if changed {
			r.log().Info("Dovecot users file updated from the mailbox registry", "file", path)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkOurs refuses to replace a users file the registry did not write
// (a hand-written one would lose every mailbox not yet registered): it
// must be missing, empty, or start with passwdHeader.
func checkOurs(path string) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, len(passwdHeader))
	n, _ := io.ReadFull(f, head)
	if n == 0 || string(head[:n]) == passwdHeader {
		return nil
	}
	return fmt.Errorf("%s was not written from the mailbox registry and is left as it is: register its mailboxes with pecctl mailbox add, then empty it (or set [mailboxes] passwd_file to a new file and point Dovecot there)", path)
}
