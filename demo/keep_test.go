package demo

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testenv"
)

// keepEnv set (make demo KEEP=1) leaves the providers running after the
// exchange until SIGINT or SIGTERM.
const keepEnv = "PEC_DEMO_KEEP"

// Lines of the KEEP=1 hand-over that TestDemoKeep reads back.
const (
	readyLine   = "Ctrl-C stops everything"
	stoppedLine = "demo stopped: every process it started is gone"
)

// access is what a mail client needs for one provider.
type access struct {
	p          *pectest.Provider
	mailboxes  []mailbox
	submission string // Postfix submission, AUTH PLAIN or LOGIN
	imap       string // Dovecot IMAP
}

type mailbox struct {
	addr, password string
	messages       int // in INBOX at hand-over
}

// handOver gives every mailbox of the providers a fresh random password
// and checks that it logs in over IMAP and over SMTP AUTH on the
// provider's submission port, so what KEEP=1 prints is known to work.
func handOver(t *testing.T, w *pectest.World, ps ...*pectest.Provider) []access {
	t.Helper()
	var acc []access
	for _, p := range ps {
		a := access{p: p, submission: p.SubmissionAddr, imap: p.Dovecot.IMAPAddr}
		addrs := append(slices.Clone(p.Users), p.ServiceAddr())
		pws := map[string]string{}
		for _, addr := range addrs {
			pws[addr] = rand.Text()[:16]
		}
		if err := p.Dovecot.SetPasswords(pws); err != nil {
			t.Fatalf("new passwords for %s: %v", p.Domain, err)
		}
		for _, addr := range addrs {
			pw := pws[addr]
			n, err := testenv.IMAPInbox(a.imap, addr, pw)
			if err != nil {
				t.Fatalf("IMAP login with the new password: %v", err)
			}
			if err := smtpAuth(a.submission, addr, pw); err != nil {
				t.Fatalf("SMTP AUTH of %s on %s with the new password: %v", addr, a.submission, err)
			}
			if _, err := testenv.IMAPInbox(a.imap, addr, pectest.Password); err == nil {
				t.Fatalf("%s still logs in with the fixed test password", addr)
			}
			a.mailboxes = append(a.mailboxes, mailbox{addr: addr, password: pw, messages: n})
		}
		acc = append(acc, a)
	}
	return acc
}

// smtpAuth authenticates on a submission service and quits.
func smtpAuth(addr, user, password string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		return err
	}
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		return err
	}
	return c.Quit()
}

var (
	stoppingMu sync.Mutex
	stopping   []int // the processes to be gone when the demo ends
)

// catchStop catches SIGINT and SIGTERM from now on, and never lets go: a
// Ctrl-C while the providers start, or a second one while they stop, must
// not kill the demo before it has stopped every daemon (Postfix's master
// runs in a session of its own and would be left behind). The first
// signal is delivered on the returned channel.
func catchStop() <-chan os.Signal {
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	first := make(chan os.Signal, 1)
	go func() {
		s := <-sig
		first <- s
		fmt.Printf("\n%v: stopping everything the demo started\n", s)
		for s := range sig {
			fmt.Printf("%v: already stopping\n", s)
		}
	}()
	return first
}

// keepRunning prints how to reach the providers, waits for the signal on
// stop and returns; the daemons' cleanups then stop them by PID.
func keepRunning(w *pectest.World, acc []access, stop <-chan os.Signal) {
	select {
	case <-stop:
		return // interrupted while starting
	default:
	}
	pids := []string{fmt.Sprintf("clamd=%d", w.Clamd.PID())}
	roots := []int{w.Clamd.PID()}
	var b strings.Builder
	fmt.Fprintf(&b, "\nThe two providers keep running for a mail client (Thunderbird, mutt): loopback only,\n")
	fmt.Fprintf(&b, "no TLS, normal password; the login is the whole address. Passwords are new for this run.\n")
	for _, a := range acc {
		fmt.Fprintf(&b, "\n%s, domain %s\n", a.p.Name, a.p.Domain)
		fmt.Fprintf(&b, "  submission %s  (SMTP, AUTH PLAIN or LOGIN with a mailbox below)\n", a.submission)
		fmt.Fprintf(&b, "  imap       %s\n", a.imap)
		for _, m := range a.mailboxes {
			note := ""
			if m.addr == a.p.ServiceAddr() {
				note = "  (the provider's own address: receipts of other providers)"
			}
			fmt.Fprintf(&b, "  mailbox    %-40s password %s  %d in INBOX%s\n", m.addr, m.password, m.messages, note)
		}
		for _, d := range []struct {
			name string
			pid  int
		}{{"postfix", a.p.Postfix.MasterPID()}, {"dovecot", a.p.Dovecot.MasterPID()},
			{"pecmilter", a.p.PID("pecmilter")}, {"pecdeliver", a.p.PID("pecdeliver")}} {
			pids = append(pids, fmt.Sprintf("%s/%s=%d", a.p.Domain, d.name, d.pid))
			roots = append(roots, d.pid)
		}
	}
	first := acc[0].mailboxes[0].addr
	fmt.Fprintf(&b, "\nmutt, as %s:\n  mutt -f 'imap://%s@%s/INBOX' -e 'set smtp_url=smtp://%s@%s/ from=%s'\n",
		first, strings.ReplaceAll(first, "@", "%40"), acc[0].imap, strings.ReplaceAll(first, "@", "%40"), acc[0].submission, first)
	fmt.Fprintf(&b, "Mail to any other domain goes to an ordinary mail server inside the demo, which prints it here.\n")
	fmt.Fprintf(&b, "Working files: %s\n", w.Dir)
	fmt.Fprintf(&b, "pids %s\n", strings.Join(pids, " "))
	fmt.Fprintf(&b, "%s\n", readyLine)
	stoppingMu.Lock()
	stopping = processTree(roots)
	stoppingMu.Unlock()
	fmt.Print(b.String())

	done := make(chan struct{})
	go printOrdinary(w.Ordinary, len(w.Ordinary.Messages()), done)
	<-stop
	close(done)
}

// printOrdinary prints what the ordinary mail server receives from the
// first message not yet seen until done is closed.
func printOrdinary(s *pectest.Sink, seen int, done <-chan struct{}) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		msgs := s.Messages()
		for _, m := range msgs[seen:] {
			h, _, _ := rawmime.Split(rawmime.CRLF(m.Data))
			fmt.Printf("ordinary mail server: from %s to %s: %q\n", m.From, strings.Join(m.Rcpts, ", "), h.Get("Subject"))
		}
		seen = len(msgs)
	}
}

// checkStopped runs after every daemon's cleanup: nothing of the process
// tree noted at hand-over may be left.
func checkStopped(t *testing.T) {
	stoppingMu.Lock()
	pids := stopping
	stoppingMu.Unlock()
	if pids == nil {
		return // never handed over
	}
	if left := waitGone(pids, 10*time.Second); len(left) > 0 {
		t.Errorf("still running after the demo stopped: %s", describe(left))
		return
	}
	fmt.Println(stoppedLine)
}

// proc is one line of /proc/PID/stat, the fields we need.
type proc struct{ pid, ppid, pgrp int }

func procs() []proc {
	ents, _ := os.ReadDir("/proc")
	var ps []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid pgrp ...": comm may hold spaces
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		ps = append(ps, proc{pid, ppid, pgrp})
	}
	return ps
}

// processTree returns roots and every live process below them, or in the
// process group of one of them (Postfix's master leads its own session).
func processTree(roots []int) []int {
	in := map[int]bool{}
	for _, r := range roots {
		if r > 0 {
			in[r] = true
		}
	}
	ps := procs()
	for grown := true; grown; {
		grown = false
		for _, p := range ps {
			if !in[p.pid] && (in[p.ppid] || slices.Contains(roots, p.pgrp)) {
				in[p.pid] = true
				grown = true
			}
		}
	}
	var out []int
	for pid := range in {
		out = append(out, pid)
	}
	slices.Sort(out)
	return out
}

// waitGone waits until none of pids is alive (zombies count as gone) and
// returns those still alive after timeout.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		alive := map[int]bool{}
		for _, p := range procs() {
			alive[p.pid] = true
		}
		var left []int
		for _, pid := range pids {
			if alive[pid] {
				left = append(left, pid)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// describe names processes by PID and command line, for failure reports.
func describe(pids []int) string {
	var s []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		s = append(s, fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))))
	}
	return strings.Join(s, ", ")
}

// TestDemoKeep runs the demo as `make demo KEEP=1` does, in a child
// process: it reads the printed addresses and passwords, logs in over IMAP
// with each, sends a PEC message through the printed submission service
// and sees it and its acceptance arrive, then sends SIGINT and checks that
// the demo passes and leaves none of the processes it printed or started.
// The whole demo again takes about a minute: it runs only when asked,
// PEC_DEMO_KEEP_TEST=1 (make demo-keep-test).
func TestDemoKeep(t *testing.T) {
	if os.Getenv("PEC_DEMO_KEEP_TEST") == "" {
		t.Skip("runs the whole demo again (about a minute): PEC_DEMO_KEEP_TEST=1, or make demo-keep-test")
	}
	if os.Getenv(keepEnv) != "" {
		t.Skip("already inside a kept demo")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDemo$", "-test.v", "-test.count=1", "-test.timeout=0")
	cmd.Env = append(os.Environ(), keepEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var logMu sync.Mutex
	var log strings.Builder
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		isReady := false
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if !isReady && sc.Text() == readyLine {
				isReady = true
				close(ready)
			}
		}
		exited <- cmd.Wait()
	}()
	output := func() string { logMu.Lock(); defer logMu.Unlock(); return log.String() }
	// never leave the child behind, whatever fails below
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(90 * time.Second):
				cmd.Process.Kill()
			}
		}
	})

	select {
	case <-ready:
	case err := <-exited:
		if strings.Contains(output(), "--- SKIP: TestDemo") {
			t.Skipf("the demo skipped:\n%s", output())
		}
		t.Fatalf("the demo ended before it printed %q (%v):\n%s", readyLine, err, output())
	case <-time.After(8 * time.Minute):
		t.Fatalf("the demo printed no %q in 8 minutes:\n%s", readyLine, output())
	}
	printed := parseHandOver(t, output())

	// every printed login works over IMAP; the fixed test password does not
	for _, p := range printed.providers {
		for _, m := range p.mailboxes {
			if _, err := testenv.IMAPInbox(p.imap, m.addr, m.password); err != nil {
				t.Errorf("printed login %s on %s: %v", m.addr, p.imap, err)
			}
			if _, err := testenv.IMAPInbox(p.imap, m.addr, pectest.Password); err == nil {
				t.Errorf("%s logs in with the fixed test password", m.addr)
			}
		}
	}
	// a message from luigi (provider B) to mario (provider A) through the
	// printed submission service: luigi gets the acceptance, mario the
	// certified message
	pa, pb := printed.provider(t, "pec-a.example.test"), printed.provider(t, "pec-b.example.test")
	mar, lui := pa.mailbox(t, mario), pb.mailbox(t, luigi)
	before := map[string]int{}
	for _, c := range []struct {
		p *printedProvider
		m mailbox
	}{{pa, mar}, {pb, lui}} {
		n, err := testenv.IMAPInbox(c.p.imap, c.m.addr, c.m.password)
		if err != nil {
			t.Fatal(err)
		}
		before[c.m.addr] = n
	}
	raw := "From: " + luigi + "\r\nTo: " + mario + "\r\nSubject: Re: Contratto di fornitura n. 42\r\n" +
		"Message-ID: <demo-keep-1@client.example.test>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nRicevuto, grazie.\r\n"
	if err := submit(pb.submission, lui.addr, lui.password, []string{mario}, raw); err != nil {
		t.Fatalf("submission with the printed password: %v", err)
	}
	for _, c := range []struct {
		p *printedProvider
		m mailbox
	}{{pa, mar}, {pb, lui}} {
		deadline := time.Now().Add(60 * time.Second)
		for {
			n, err := testenv.IMAPInbox(c.p.imap, c.m.addr, c.m.password)
			if err == nil && n > before[c.m.addr] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d message(s) in INBOX (%v) 60s after submission, had %d", c.m.addr, n, err, before[c.m.addr])
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// Ctrl-C: the demo stops everything and passes
	tree := processTree(printed.pids)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the demo exited with %v after SIGINT, want 0", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the demo still runs 2 minutes after SIGINT:\n%s", output())
	}
	o := output()
	for _, want := range []string{"interrupt: stopping everything the demo started", stoppedLine, "--- PASS: TestDemo"} {
		if !strings.Contains(o, want) {
			t.Errorf("no %q in the demo's output", want)
		}
	}
	if left := waitGone(tree, 10*time.Second); len(left) > 0 {
		t.Errorf("left running after SIGINT: %s", describe(left))
		for _, pid := range left { // the child's, so ours to stop
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("the demo's output:\n%s", o)
		return
	}
	n := 0
	for _, p := range printed.providers {
		n += len(p.mailboxes)
	}
	t.Logf("%d printed logins worked over IMAP, %s's message reached %s, and after SIGINT the demo passed and none of its %d processes is left",
		n, luigi, mario, len(tree))
}

// handOverPrint is what the KEEP=1 demo printed.
type handOverPrint struct {
	providers []*printedProvider
	pids      []int
}

type printedProvider struct {
	domain, submission, imap string
	mailboxes                []mailbox
}

func (h *handOverPrint) provider(t *testing.T, domain string) *printedProvider {
	for _, p := range h.providers {
		if p.domain == domain {
			return p
		}
	}
	t.Fatalf("no provider %s printed", domain)
	return nil
}

func (p *printedProvider) mailbox(t *testing.T, addr string) mailbox {
	for _, m := range p.mailboxes {
		if m.addr == addr {
			return m
		}
	}
	t.Fatalf("no mailbox %s printed for %s", addr, p.domain)
	return mailbox{}
}

// parseHandOver reads the providers, mailboxes and PIDs the demo printed
// and checks that each is complete.
func parseHandOver(t *testing.T, out string) *handOverPrint {
	h := &handOverPrint{}
	var cur *printedProvider
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[len(f)-2] == "domain" && !strings.HasPrefix(line, " "):
			cur = &printedProvider{domain: f[len(f)-1]}
			h.providers = append(h.providers, cur)
		case cur != nil && len(f) >= 2 && f[0] == "submission":
			cur.submission = f[1]
		case cur != nil && len(f) >= 2 && f[0] == "imap":
			cur.imap = f[1]
		case cur != nil && len(f) >= 4 && f[0] == "mailbox" && f[2] == "password":
			cur.mailboxes = append(cur.mailboxes, mailbox{addr: f[1], password: f[3]})
		case len(f) >= 2 && f[0] == "pids":
			for _, kv := range f[1:] {
				_, v, _ := strings.Cut(kv, "=")
				pid, err := strconv.Atoi(v)
				if err != nil || pid <= 1 {
					t.Fatalf("printed PID %q", kv)
				}
				h.pids = append(h.pids, pid)
			}
		}
	}
	if len(h.providers) != 2 {
		t.Fatalf("%d providers printed, want 2:\n%s", len(h.providers), out)
	}
	for _, p := range h.providers {
		if p.submission == "" || p.imap == "" || len(p.mailboxes) == 0 {
			t.Fatalf("incomplete hand-over for %s: %+v\n%s", p.domain, p, out)
		}
		for _, a := range []string{p.submission, p.imap} {
			if !strings.HasPrefix(a, "127.0.0.1:") {
				t.Errorf("%s: address %s is not on loopback", p.domain, a)
			}
		}
		for _, m := range p.mailboxes {
			if len(m.password) < 12 || m.password == pectest.Password {
				t.Errorf("%s: password %q is not a fresh one", m.addr, m.password)
			}
		}
	}
	if len(h.pids) != 1+4*len(h.providers) {
		t.Fatalf("%d PIDs printed, want clamd and 4 per provider:\n%s", len(h.pids), out)
	}
	return h
}

// submit sends raw with AUTH PLAIN as user.
func submit(addr, user, password string, rcpts []string, raw string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		return err
	}
	if err := c.Auth(sasl.NewPlainClient("", user, password)); err != nil {
		return err
	}
	if err := c.SendMail(user, rcpts, strings.NewReader(raw)); err != nil {
		return err
	}
	return c.Quit()
}
