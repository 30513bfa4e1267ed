package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

const outboxUsage = `usage: pecctl outbox list|retry [-config FILE]

The receipts and notices waiting to be sent to the Postfix re-injection
listener ([reinject] address).
  list    every unsent message: id, kind, recipients, attempts, next try, last error
  retry   make every unsent message due now (after fixing what made them
          fail); the running pecmilter/pecdeliver send them within seconds
`

func cmdOutbox(args []string, stdout, stderr io.Writer) int {
	const cmd = "outbox"
	fs, cfgPath := newFlags(cmd, outboxUsage, stderr)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 || (pos[0] != "list" && pos[0] != "retry") {
		return usageErr(stderr, cmd, outboxUsage, "want list or retry")
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
	loc := cfg.Location()
	if pos[0] == "retry" {
		n, err := st.RetryAll(time.Now())
		if err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "%d messages due now\n", n)
		return 0
	}
	items, err := st.Pending(0)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	for _, p := range items {
		next := "now"
		if !p.NextTry.IsZero() {
			next = localTime(p.NextTry, loc)
		}
		fmt.Fprintf(stdout, "%d %s %s -> %s created %s attempts %d next %s", p.ID, p.Kind, p.MessageID,
			strings.Join(p.Rcpts, ","), localTime(p.Created, loc), p.Attempts, next)
		if p.LastError != "" {
			fmt.Fprintf(stdout, " error %q", p.LastError)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "%d unsent\n", len(items))
	return 0
}
