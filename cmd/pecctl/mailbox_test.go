package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
)

// TestMailboxCommand: pecctl mailbox against a real Dovecot reading the
// users file the command writes: an IMAP login works after add and after
// close within the read-only period, fails after it (the clock moved),
// a closed address is never added again, and every change is a row of
// a log that still verifies.
func TestMailboxCommand(t *testing.T) {
	f := newFixture(t)
	dc := testenv.StartDovecot(t, nil)
	conf, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf = append(conf, []byte("\n[mailboxes]\nread_only_period = \"48h\"\npasswd_file = \""+dc.UsersFile+"\"\n")...)
	if err := os.WriteFile(f.cfg, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	mailboxClock = func() time.Time { return now }
	t.Cleanup(func() { mailboxClock, stdin = time.Now, os.Stdin })
	const addr, pw = "giulia.neri@pec.example.test", "una password lunga"
	cmd := func(input string, args ...string) (int, string, string) {
		t.Helper()
		stdin = strings.NewReader(input)
		code, out, errOut := f.run(append([]string{"mailbox"}, args...)...)
		time.Sleep(1100 * time.Millisecond) // Dovecot looks at its users file at most once a second
		return code, out, errOut
	}
	show := func() map[string]any {
		t.Helper()
		code, out, errOut := f.run("mailbox", "show", addr, "--json")
		var m map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("show: %d %s %s", code, out, errOut)
		}
		return m
	}

	if code, out, errOut := cmd(pw+"\n", "add", addr, "--quota", "1048576", "--receipt-form", "breve", "--note", "contratto 7"); code != 0 || !strings.Contains(out, addr+" active") {
		t.Fatalf("add: %d %s %s", code, out, errOut)
	}
	if err := dc.IMAPLogin(addr, pw); err != nil {
		t.Fatalf("IMAP login after mailbox add: %v", err)
	}
	if code, _, errOut := cmd(pw+"\n", "add", addr); code != 1 || !strings.Contains(errOut, "registered already") {
		t.Fatalf("second add: %d %s", code, errOut)
	}
	if code, _, errOut := cmd("x\n", "add", "someone@pec.other.test"); code != 1 || !strings.Contains(errOut, "managed_domains") {
		t.Fatalf("add outside our domains: %d %s", code, errOut)
	}
	if code, _, errOut := cmd("", "add", "nopw@pec.example.test"); code != 1 || !strings.Contains(errOut, "no password") {
		t.Fatalf("add without a password: %d %s", code, errOut)
	}
	if m := show(); m["state"] != "active" || m["receipt_form"] != "breve" || m["quota_bytes"] != float64(1048576) {
		t.Fatalf("show %v", m)
	}

	now = now.Add(time.Hour)
	if code, out, errOut := cmd("", "close", addr, "--note", "fine contratto"); code != 0 || !strings.Contains(out, "closed") {
		t.Fatalf("close: %d %s %s", code, out, errOut)
	}
	if err := dc.IMAPLogin(addr, pw); err != nil {
		t.Fatalf("IMAP login after close, within the read-only period: %v", err)
	}
	code, _, errOut := cmd("other\n", "add", addr)
	if code != 1 || !strings.Contains(errOut, "never reassigned") || !strings.Contains(errOut, "pecctl mailbox reopen") {
		t.Fatalf("add of a closed address: %d %s", code, errOut)
	}

	now = now.Add(48 * time.Hour)
	if code, out, errOut := cmd("", "sync"); code != 0 || !strings.Contains(out, "updated") {
		t.Fatalf("sync: %d %s %s", code, out, errOut)
	}
	if err := dc.IMAPLogin(addr, pw); err == nil {
		t.Fatal("IMAP login after the read-only period")
	}
	if m := show(); m["state"] != "disabled" {
		t.Fatalf("after the period: %v", m)
	}
	if code, _, errOut := cmd("", "reopen", addr); code != 1 || !strings.Contains(errOut, "disabled") {
		t.Fatalf("reopen of a disabled mailbox: %d %s", code, errOut)
	}
	if code, _, errOut := cmd("other\n", "add", addr); code != 1 || !strings.Contains(errOut, "never reassigned") {
		t.Fatalf("add of a disabled address: %d %s", code, errOut)
	}

	code, out, errOut := f.run("log", "search", "--rcpt", addr, "--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z")
	if code != 0 {
		t.Fatalf("log search: %d %s", code, errOut)
	}
	for _, typ := range []string{"mailbox-add", "mailbox-close", "mailbox-disable"} {
		if !strings.Contains(out, typ) {
			t.Errorf("log has no %s row:\n%s", typ, out)
		}
	}
	if strings.Contains(out, "BLF-CRYPT") || strings.Contains(out, "$2a$") {
		t.Fatalf("the log holds the password hash:\n%s", out)
	}
	if code, out, errOut := f.run("log", "verify"); code != 0 {
		t.Fatalf("log verify: %d %s %s", code, out, errOut)
	}
}
