package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// IMAPInbox logs in to the IMAP server at addr as user with password (LOGIN,
// plaintext, as the throwaway Dovecot allows on loopback), selects INBOX and
// returns how many messages it holds. A refused login is an error naming the
// server's answer.
func IMAPInbox(addr, user, password string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("imap %s: greeting: %v", addr, err)
	}
	if !strings.HasPrefix(line, "* OK") {
		return 0, fmt.Errorf("imap %s: greeting %q", addr, strings.TrimSpace(line))
	}
	// cmd sends one tagged command and returns the untagged lines before
	// the tagged OK.
	cmd := func(tag, c string) ([]string, error) {
		if _, err := fmt.Fprintf(conn, "%s %s\r\n", tag, c); err != nil {
			return nil, err
		}
		var untagged []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return nil, err
			}
			line = strings.TrimRight(line, "\r\n")
			if rest, ok := strings.CutPrefix(line, tag+" "); ok {
				if !strings.HasPrefix(rest, "OK") {
					return nil, fmt.Errorf("%s", rest)
				}
				return untagged, nil
			}
			untagged = append(untagged, line)
		}
	}
	if _, err := cmd("a1", "LOGIN "+imapQuote(user)+" "+imapQuote(password)); err != nil {
		return 0, fmt.Errorf("imap %s: LOGIN %s: %v", addr, user, err)
	}
	lines, err := cmd("a2", "SELECT INBOX")
	if err != nil {
		return 0, fmt.Errorf("imap %s: SELECT INBOX as %s: %v", addr, user, err)
	}
	n := -1
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "*" && strings.EqualFold(f[2], "EXISTS") {
			n, _ = strconv.Atoi(f[1])
		}
	}
	cmd("a3", "LOGOUT")
	if n < 0 {
		return 0, fmt.Errorf("imap %s: SELECT INBOX as %s: no EXISTS in %q", addr, user, lines)
	}
	return n, nil
}

// imapQuote is an IMAP quoted string (RFC 3501 §4.3).
func imapQuote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// SetPassword changes the password of the Dovecot user addr while
// Dovecot runs; see SetPasswords.
func (d *Dovecot) SetPassword(addr, password string) error {
	return d.SetPasswords(map[string]string{addr: password})
}

// SetPasswords changes the passwords of Dovecot users (address to new
// password; IMAP login and the SASL of a Postfix pointed at AuthAddr)
// while Dovecot runs: the users file is rewritten and renamed into place
// with a later modification time, and SetPasswords returns once an IMAP
// login with each new password succeeds (Dovecot's passwd-file looks at
// the file at most once a second and sees a change by its size and
// modification time). Letters, digits and -._ are safe in a password;
// ':', '\\', '"' and newlines are refused.
func (d *Dovecot) SetPasswords(passwords map[string]string) error {
	path := filepath.Join(d.Dir, "users")
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(b), "\n")
	for addr, password := range passwords {
		if password == "" || strings.ContainsAny(password, ":\n\\\"") {
			return fmt.Errorf("testenv: dovecot password for %s: empty, or with ':', '\\', '\"' or a newline", addr)
		}
		found := false
		prefix := strings.ToLower(addr) + ":{PLAIN}"
		for i, l := range lines {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				_, tail, _ := strings.Cut(rest, ":")
				lines[i] = prefix + password + ":" + tail
				found = true
			}
		}
		if !found {
			return fmt.Errorf("testenv: no dovecot user %s", addr)
		}
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "")), 0o644); err != nil {
		return err
	}
	mtime := time.Now()
	if !mtime.After(fi.ModTime().Add(time.Second)) {
		mtime = fi.ModTime().Add(time.Second)
	}
	if err := os.Chtimes(tmp, mtime, mtime); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for addr, password := range passwords {
		for {
			_, err := IMAPInbox(d.IMAPAddr, addr, password)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("testenv: new password of %s not taken after 10s: %v", addr, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}
