package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/mailbox"
	"github.com/pecgo/pec/store"
)

const mailboxUsage = `usage: pecctl mailbox COMMAND [ARGS] [-config FILE]

The registry of the PEC mailboxes we host (RFC 6109 has no word for it;
the AgID rules and the providers' manuals do). Every change is a row of
the event log (point "mailbox").
  add ADDR [options]        register an active mailbox; the password is the first
                            line of standard input (or --password-file). An address
                            once registered is never given again, even after closure
  list [--json]             every mailbox with its state
  show ADDR [--json]        one mailbox
  suspend ADDR [--note T]   no sending, no receiving, IMAP still readable
  close ADDR [--note T]     end of the service: readable over IMAP for
                            [mailboxes] read_only_period (default 30 days), then disabled
  reopen ADDR [--note T]    a suspended mailbox, or a closed one within its period
  passwd ADDR               new password from standard input (or --password-file)
  set ADDR [options]        replace the mailbox's options
  sync                      disable the mailboxes past their read-only period and
                            rewrite [mailboxes] passwd_file (pecdeliver does it every minute)

options of add and set (empty: the provider's default):
  --ordinary-mail accept|refuse   mail that is not PEC (RFC 6109 §2.2.2)
  --forward-to ADDR               a copy of accepted ordinary mail goes there
  --receipt-form completa|breve|sintetica
                                  delivery receipt form when a message asks for none
  --quota BYTES                   Dovecot quota (0: none)
  --note TEXT                     the reason, kept in the log row
`

// stdin is where passwords are read (tests replace it).
var stdin io.Reader = os.Stdin

// mailboxClock is the instant of each change (tests move it).
var mailboxClock = time.Now

func cmdMailbox(args []string, stdout, stderr io.Writer) int {
	const cmd = "mailbox"
	fs, cfgPath := newFlags(cmd, mailboxUsage, stderr)
	asJSON := fs.Bool("json", false, "JSON output")
	note := fs.String("note", "", "the reason, kept in the log row")
	pwFile := fs.String("password-file", "", "read the password from this file (first line)")
	var opts store.MailboxOptions
	fs.StringVar(&opts.OrdinaryMail, "ordinary-mail", "", "accept or refuse")
	fs.StringVar(&opts.ForwardTo, "forward-to", "", "forward copies of ordinary mail")
	fs.StringVar(&opts.ReceiptForm, "receipt-form", "", "completa, breve or sintetica")
	fs.Int64Var(&opts.QuotaBytes, "quota", 0, "quota in bytes")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) == 0 {
		return usageErr(stderr, cmd, mailboxUsage, "want a command")
	}
	sub, rest := pos[0], pos[1:]
	want := 1
	switch sub {
	case "list", "sync":
		want = 0
	case "add", "show", "suspend", "close", "reopen", "passwd", "set":
	default:
		return usageErr(stderr, cmd, mailboxUsage, "unknown command %q", sub)
	}
	if len(rest) != want {
		return usageErr(stderr, cmd, mailboxUsage, "%s takes %d address(es), got %d", sub, want, len(rest))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	reg := &mailbox.Registry{Store: st, Clock: mailboxClock, ReadOnly: cfg.Mailboxes.ReadOnly.Duration, Provider: cfg.Provider.Name,
		Domains: cfg.Provider.ManagedDomains}
	reg.Log = quietLog()

	var m store.Mailbox
	switch sub {
	case "list":
		list, err := reg.List()
		if err != nil {
			return fail(stderr, cmd, err)
		}
		for _, m := range list {
			printMailbox(stdout, reg, cfg, m, *asJSON)
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "%d mailboxes\n", len(list))
		}
		return 0
	case "show":
		if m, err = reg.Get(rest[0]); err != nil {
			return fail(stderr, cmd, err)
		}
		printMailbox(stdout, reg, cfg, m, *asJSON)
		return 0
	case "sync":
		return syncUsers(stdout, stderr, reg, cfg, true)
	case "add", "passwd":
		pw, err := readPassword(*pwFile)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		if sub == "add" {
			m, err = reg.Add(rest[0], pw, opts, *note)
		} else {
			m, err = reg.SetPassword(rest[0], pw, *note)
		}
		if err != nil {
			return fail(stderr, cmd, err)
		}
	case "set":
		if m, err = reg.SetOptions(rest[0], opts, *note); err != nil {
			return fail(stderr, cmd, err)
		}
	default:
		if m, err = reg.Change(rest[0], mailbox.Op(sub), *note); err != nil {
			return fail(stderr, cmd, err)
		}
	}
	printMailbox(stdout, reg, cfg, m, *asJSON)
	return syncUsers(stdout, stderr, reg, cfg, false)
}

// syncUsers brings [mailboxes] passwd_file in step after a change.
func syncUsers(stdout, stderr io.Writer, reg *mailbox.Registry, cfg *config.Config, asked bool) int {
	path := cfg.Mailboxes.PasswdFile
	if path == "" {
		if asked {
			fmt.Fprintln(stderr, "pecctl mailbox sync: [mailboxes] passwd_file is not set: nothing to write")
			return 1
		}
		return 0
	}
	changed, err := reg.SyncFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "pecctl mailbox: the registry is up to date but the Dovecot users file %s is not: %v; fix it and run `pecctl mailbox sync` (pecdeliver also retries every minute)\n", path, err)
		return 1
	}
	if changed {
		fmt.Fprintf(stdout, "Dovecot users file %s updated\n", path)
	}
	return 0
}

// readPassword is the first line of file, or of standard input.
func readPassword(file string) (string, error) {
	r := stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", errors.New("no password: give it as the first line of standard input or with --password-file")
	}
	return pw, nil
}

type mailboxJSON struct {
	Address       string    `json:"address"`
	State         string    `json:"state"`
	Created       time.Time `json:"created"`
	Changed       time.Time `json:"changed"`
	Closed        time.Time `json:"closed,omitzero"`
	ReadableUntil time.Time `json:"readable_until,omitzero"`
	OrdinaryMail  string    `json:"ordinary_mail,omitempty"`
	ForwardTo     string    `json:"forward_to,omitempty"`
	ReceiptForm   string    `json:"receipt_form,omitempty"`
	QuotaBytes    int64     `json:"quota_bytes,omitempty"`
}

func printMailbox(w io.Writer, reg *mailbox.Registry, cfg *config.Config, m store.Mailbox, asJSON bool) {
	state := reg.State(m)
	o := m.Options
	if asJSON {
		j := mailboxJSON{Address: m.Address, State: string(state), Created: m.Created, Changed: m.Changed, Closed: m.Closed,
			OrdinaryMail: o.OrdinaryMail, ForwardTo: o.ForwardTo, ReceiptForm: o.ReceiptForm, QuotaBytes: o.QuotaBytes}
		if !m.Closed.IsZero() {
			j.ReadableUntil = reg.ReadableUntil(m)
		}
		b, _ := json.Marshal(j)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	loc := cfg.Location()
	fmt.Fprintf(w, "%s %s created %s", m.Address, state, word(localTime(m.Created, loc)))
	if !m.Closed.IsZero() {
		fmt.Fprintf(w, " closed %s readable_until %s", word(localTime(m.Closed, loc)), word(localTime(reg.ReadableUntil(m), loc)))
	}
	fmt.Fprintf(w, " ordinary_mail=%s forward_to=%s receipt_form=%s quota_bytes=%d\n", word(o.OrdinaryMail), word(o.ForwardTo), word(o.ReceiptForm), o.QuotaBytes)
}

// quietLog drops the registry's log lines: pecctl prints the result.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
