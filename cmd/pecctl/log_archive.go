package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/metrics"
)

const logArchiveUsage = `usage: pecctl log archive --day YYYY-MM-DD|yesterday [--dir DIR] [--tsa URL] [--force] [-config FILE]
       pecctl log archive --verify --day YYYY-MM-DD [--dir DIR] [-config FILE]

Writes the day's rows (provider's time zone; only rows of that day) to
DIR/pec-log-DAY.jsonl.gz with a detached CMS signature made with the
sealing key of [log] (.p7s, DER; the PEC key, with a warning, while [log]
has none), and with --tsa an RFC 3161 time-stamp of the
signature (.tsq request, .tsr reply). Run it daily after midnight, e.g.
from cron with --day yesterday.

With --verify it checks an archive: signature and chain to [signing]
and [log] trusted_roots, every row's hash and link, the day's bounds, the time-stamp
if any, and, while the store still holds the rows, that they match.

  --dir DIR   archive directory (default: "archive" next to the store)
  --tsa URL   time-stamp authority (HTTP POST application/timestamp-query;
              default: [store] tsa_url of the configuration);
              on an existing archive without a time-stamp, only time-stamps it
  --force     rewrite an existing archive (a new signature; the old
              time-stamp is removed)
  --verify    check instead of writing
`

func logArchive(args []string, stdout, stderr io.Writer) int {
	const cmd = "log archive"
	fs, cfgPath := newFlags(cmd, logArchiveUsage, stderr)
	day := fs.String("day", "", "")
	dir := fs.String("dir", "", "")
	tsa := fs.String("tsa", "", "")
	force := fs.Bool("force", false, "")
	verify := fs.Bool("verify", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, logArchiveUsage, "unexpected argument %q", pos[0])
	}
	if *day == "" {
		return usageErr(stderr, cmd, logArchiveUsage, "--day is required")
	}
	if *verify && (*tsa != "" || *force) {
		return usageErr(stderr, cmd, logArchiveUsage, "--verify does not take --tsa or --force")
	}
	if *tsa != "" && !strings.HasPrefix(*tsa, "http://") && !strings.HasPrefix(*tsa, "https://") {
		return usageErr(stderr, cmd, logArchiveUsage, "--tsa %q: want an http:// or https:// URL", *tsa)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if *tsa == "" && !*verify {
		*tsa = cfg.Store.TSAURL // [store] tsa_url
	}
	loc := cfg.Location()
	if *day == "yesterday" {
		y := time.Now().In(loc)
		*day = time.Date(y.Year(), y.Month(), y.Day()-1, 12, 0, 0, 0, loc).Format("2006-01-02")
	}
	if _, _, err := parseDay(*day, loc); err != nil {
		return usageErr(stderr, cmd, logArchiveUsage, "--day: %v", err)
	}
	if *dir == "" {
		*dir = filepath.Join(cfg.Store.Dir, "archive")
	}
	if *verify {
		return archiveVerify(cfg, *dir, *day, stdout, stderr)
	}
	signer, err := sealingSigner(cfg, cmd, stderr) // [log] sealing key (Aruba §8.1)
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the archive is signed with the sealing key", err))
	}
	roots, _ := cfg.SealingRoots() // only to check a TSA's chain; nil is fine
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	files := logarchive.PathsFor(*dir, *day)
	if cfg.Store.URL != "" && !*force {
		// a cluster: one node archives each day (every node's timer runs
		// this); the lease names it and where the archive is
		lease := "archive/" + *day
		host := service.NodeName(cfg)
		held, ls, err := st.Lease(lease, host, time.Now(), 2*time.Hour)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		if !held && ls.Holder != host {
			if !ls.Done.IsZero() {
				fmt.Fprintf(stdout, "archive of %s was written by node %s at %s: %s\n", *day, ls.Holder, ls.Done.Format(time.RFC3339), ls.Note)
			} else {
				fmt.Fprintf(stdout, "archive of %s is being written by node %s (lease until %s)\n", *day, ls.Holder, ls.Until.Format(time.RFC3339))
			}
			return 0
		}
		if held {
			defer func() {
				if exists(files.Signature) {
					hn, _ := os.Hostname()
					if err := st.Finish(lease, host, time.Now(), hn+":"+files.Data); err != nil {
						fmt.Fprintf(stderr, "pecctl log archive: warning: %v\n", err)
					}
				} else {
					st.Unlease(lease, host)
				}
			}()
		}
	}
	a := &logarchive.Archiver{Store: st, Signer: signer, Location: loc, Provider: cfg.Provider.Name}
	res, err := a.Write(*dir, *day, *force)
	switch {
	case errors.Is(err, logarchive.ErrExists) && *tsa != "" && !exists(files.Reply):
		// a time-stamp that failed before: add it to the signed archive
		if _, err := logarchive.Verify(*dir, *day, roots); err != nil {
			return fail(stderr, cmd, fmt.Errorf("the existing archive does not verify, not time-stamping it: %v", err))
		}
		fmt.Fprintf(stdout, "archive of %s exists without a time-stamp: time-stamping it\n", *day)
	case errors.Is(err, logarchive.ErrExists):
		return fail(stderr, cmd, fmt.Errorf("%v: check it with --verify, or pass --force to rewrite it", err))
	case errors.Is(err, logarchive.ErrDayNotOver):
		return fail(stderr, cmd, fmt.Errorf("%v: archive it after midnight", err))
	case err != nil:
		return fail(stderr, cmd, err)
	default:
		t := res.Trailer
		fmt.Fprintf(stdout, "archived %s (%s, %s .. %s): %d rows", *day, res.Header.TimeZone,
			res.Header.From.Format(time.RFC3339), res.Header.To.Format(time.RFC3339), t.Rows)
		if t.Rows > 0 {
			fmt.Fprintf(stdout, " (ids %d..%d", t.FirstID, t.LastID)
			if len(t.Gaps) > 0 {
				fmt.Fprintf(stdout, ", %d gaps of rows of other days", len(t.Gaps))
			}
			fmt.Fprint(stdout, ")")
		}
		fmt.Fprintf(stdout, "\n  %s\n  %s\n", res.Data, res.Signature)
		// for pec_log_archive_last_day_timestamp_seconds
		if err := metrics.RecordLogArchive(st, metrics.LogArchiveStatus{Day: *day, At: time.Now()}); err != nil {
			fmt.Fprintf(stderr, "pecctl log archive: warning: %v\n", err)
		}
	}
	if *tsa == "" {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, warn, err := logarchive.Timestamp(ctx, nil, *tsa, *dir, *day, roots.Pool())
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: the archive is written and signed but not time-stamped; run the same command again (with --tsa) to time-stamp it", err))
	}
	fmt.Fprintf(stdout, "  %s\n  time-stamped at %s (serial %v)\n", files.Reply, ts.GenTime.Format(time.RFC3339), ts.Serial)
	for _, w := range warn {
		fmt.Fprintf(stderr, "pecctl log archive: warning: %s\n", w)
	}
	return 0
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func archiveVerify(cfg *config.Config, dir, day string, stdout, stderr io.Writer) int {
	const cmd = "log archive --verify"
	roots, err := cfg.SealingRoots() // [signing] and [log] trusted_roots
	if err != nil {
		return fail(stderr, cmd, err)
	}
	// Compare with the store while it still holds the rows. A store that
	// cannot be opened (e.g. checking on another machine) is skipped.
	st, serr := openStore(cfg)
	if st != nil {
		defer st.Close()
	}
	rep, m, err, cerr := compareArchive(st, roots, dir, day)
	if err != nil {
		fmt.Fprintf(stdout, "archive %s INVALID: %v\n", day, err)
		return 1
	}
	t := rep.Trailer
	fmt.Fprintf(stdout, "archive %s valid: %d rows", day, t.Rows)
	if t.Rows > 0 {
		fmt.Fprintf(stdout, " (ids %d..%d)", t.FirstID, t.LastID)
	}
	fmt.Fprintf(stdout, ", %s .. %s (%s)\n", rep.Header.From.Format(time.RFC3339), rep.Header.To.Format(time.RFC3339), rep.Header.TimeZone)
	fmt.Fprintf(stdout, "  signed by %s at %s\n", rep.Signer.Subject.String(), rep.SigningTime.Format(time.RFC3339))
	if t.Rows > 0 {
		fmt.Fprintf(stdout, "  first prev_hash %s\n  last hash       %s\n", t.FirstPrevHash, t.LastHash)
	}
	if ts := rep.Timestamp; ts != nil {
		who := "unknown TSA"
		if ts.Signer != nil {
			who = ts.Signer.Subject.String()
		}
		fmt.Fprintf(stdout, "  time-stamped at %s by %s\n", ts.GenTime.Format(time.RFC3339), who)
	} else {
		fmt.Fprintln(stdout, "  no time-stamp (.tsr)")
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(stdout, "  warning: %s\n", w)
	}
	if st == nil {
		fmt.Fprintf(stdout, "  store not compared: %v\n", serr)
		return 0
	}
	if m.mismatch != 0 {
		fmt.Fprintf(stdout, "archive %s does NOT match the store: row %d in the archive differs from row %d in the store; run pecctl log verify\n", day, m.mismatch, m.mismatch)
		return 1
	}
	if cerr != nil {
		return fail(stderr, cmd, cerr)
	}
	fmt.Fprintf(stdout, "  store: %d rows match, %d purged\n", m.matched, m.purged)
	if m.stored > m.matched {
		fmt.Fprintf(stdout, "archive %s is INCOMPLETE: the store holds %d rows of that day, the archive %d (rows written after the archive was made); rewrite it with --force\n", day, m.stored, m.matched)
		return 1
	}
	return 0
}
