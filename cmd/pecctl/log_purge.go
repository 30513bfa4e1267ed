package main

import (
	"fmt"
	"io"
	"time"
)

const logPurgeUsage = `usage: pecctl log purge [--before RFC3339] [--force] [-config FILE]

Deletes the event rows and virus store items older than --before, and sent
outbox items; by default --before is now minus [store] retention (30
months). Deleted rows leave the log as a prefix, so the chain still
verifies. Archive every day first (pecctl log archive): a purged row
survives only in its archive.

  --force   allow a cutoff younger than the retention period (the law wants
            30 months; use only to correct a misconfiguration)
`

func logPurge(args []string, stdout, stderr io.Writer) int {
	const cmd = "log purge"
	fs, cfgPath := newFlags(cmd, logPurgeUsage, stderr)
	beforeS := fs.String("before", "", "")
	force := fs.Bool("force", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logPurgeUsage, "unexpected argument %q", pos[0])
	}
	var before time.Time
	if *beforeS != "" {
		if before, err = time.Parse(time.RFC3339Nano, *beforeS); err != nil {
			return usageErr(stderr, cmd, logPurgeUsage, "--before %q: want RFC 3339, e.g. 2024-01-01T00:00:00+01:00", *beforeS)
		}
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	limit := time.Now().Add(-cfg.Store.Retention.Duration)
	if before.IsZero() {
		before = limit
	} else if before.After(limit) && !*force {
		return fail(stderr, cmd, fmt.Errorf("--before %s is inside the retention period ([store] retention %s: nothing younger than %s may be purged); pass --force if you really mean it",
			before.Format(time.RFC3339), cfg.Store.Retention.Duration, limit.Format(time.RFC3339)))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	ev, vi, err := st.Purge(before)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	anchor, _, err := st.LogAnchor()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "purged %d event rows and %d virus items older than %s (log now starts after row %d)\n",
		ev, vi, before.In(cfg.Location()).Format(time.RFC3339), anchor)
	return 0
}
