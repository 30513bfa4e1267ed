package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

const logPurgeUsage = `usage: pecctl log purge [--before RFC3339] [--dir DIR] [--force] [--i-know] [-config FILE]

Deletes the event rows and virus store items older than --before, and sent
outbox items; by default --before is now minus [store] retention (30
months). Deleted rows leave the log as a prefix, so the chain still
verifies. A purged row survives only in its daily archive, so purge first
checks, for every day it would delete rows of, that the day's archive in
DIR verifies (signature, chain) and holds every row the store has of that
day; it refuses otherwise, naming the day and the command that archives it.

  --dir DIR  archive directory (default: "archive" next to the store)
  --force    allow a cutoff younger than [store] retention but still older
             than 30 months (to correct a misconfiguration)
  --i-know   allow a cutoff younger than 30 months, the legal minimum
             (RFC 6109 §2.3); never on a production log
`

func logPurge(args []string, stdout, stderr io.Writer) int {
	const cmd = "log purge"
	fs, cfgPath := newFlags(cmd, logPurgeUsage, stderr)
	beforeS := fs.String("before", "", "")
	dir := fs.String("dir", "", "")
	force := fs.Bool("force", false, "")
	iKnow := fs.Bool("i-know", false, "")
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
	now := time.Now()
	limit := now.Add(-cfg.Store.Retention.Duration)
	legal := now.In(cfg.Location()).AddDate(0, -30, 0)
	if before.IsZero() {
		before = limit
	} else if before.After(limit) && !*force && !*iKnow {
		return fail(stderr, cmd, fmt.Errorf("--before %s is inside the retention period ([store] retention %s: nothing younger than %s may be purged); pass --force if you really mean it",
			before.Format(time.RFC3339), cfg.Store.Retention.Duration, limit.Format(time.RFC3339)))
	}
	if before.After(legal) && !*iKnow && !(*beforeS == "" && cfg.Store.RetentionBelowLegalMinimum) {
		return fail(stderr, cmd, fmt.Errorf("cutoff %s is younger than 30 months (%s): the law wants the log and the virus store kept that long (RFC 6109 §2.3); pass --i-know only on a test installation",
			before.Format(time.RFC3339), legal.Format(time.RFC3339)))
	}
	if *dir == "" {
		*dir = filepath.Join(cfg.Store.Dir, "archive")
	}
	roots, err := cfg.SealingRoots() // [signing] and [log] trusted_roots: archives are sealed with the [log] key
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: purge checks the archives' signatures against [signing] and [log] trusted_roots", err))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	days, err := daysBefore(st, before, cfg.Location())
	if err != nil {
		return fail(stderr, cmd, err)
	}
	for _, day := range days {
		if err := checkArchived(st, roots, *dir, day); err != nil {
			fmt.Fprintf(stderr, "pecctl %s: refusing to purge: %v\n", cmd, err)
			if cfg.Store.URL != "" {
				fmt.Fprintf(stderr, "pecctl %s: in a cluster one node writes each day's archive (pecctl log archive --day %s names it): run the purge there, or keep the archive directory on storage every node reads\n", cmd, day)
			}
			return 1
		}
	}
	ev, vi, err := st.Purge(before)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	anchor, _, err := st.LogAnchor()
	if err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "purged %d event rows and %d virus items older than %s (log now starts after row %d); %d archived days checked in %s\n",
		ev, vi, before.In(cfg.Location()).Format(time.RFC3339), anchor, len(days), *dir)
	return 0
}

// daysBefore returns the days (in loc) of the rows older than before, the
// rows a purge may delete, in order.
func daysBefore(st store.Log, before time.Time, loc *time.Location) ([]string, error) {
	set := map[string]bool{}
	err := st.EachLinkedEvent(time.Unix(0, 1), before, func(le store.LinkedEvent) error {
		set[le.Time.In(loc).Format("2006-01-02")] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	days := make([]string, 0, len(set))
	for d := range set {
		days = append(days, d)
	}
	sort.Strings(days)
	return days, nil
}

// checkArchived returns nil when day's archive in dir verifies against
// roots and holds every row the store still has of that day, with the
// same hash; else what is wrong and the command that fixes it.
func checkArchived(st store.Log, roots *smime.Roots, dir, day string) error {
	_, m, verr, cerr := compareArchive(st, roots, dir, day)
	switch {
	case verr != nil:
		return fmt.Errorf("day %s is not in a verified archive in %s (%v): run \"pecctl log archive --day %s --dir %s\" and check it with --verify", day, dir, verr, day, dir)
	case m.mismatch != 0:
		return fmt.Errorf("day %s: row %d of the archive differs from the store's: run \"pecctl log verify\" and compare with the backups before purging anything", day, m.mismatch)
	case cerr != nil:
		return cerr
	case m.stored > m.matched:
		return fmt.Errorf("the archive of day %s holds %d of the store's %d rows of that day (rows written after it was made): run \"pecctl log archive --day %s --dir %s --force\"", day, m.matched, m.stored, day, dir)
	}
	return nil
}

// archiveMatch is how an archive's rows compare with the store's.
type archiveMatch struct {
	matched  int   // rows the store holds with the same hash
	purged   int   // rows the store no longer holds
	mismatch int64 // the first row whose hash differs; 0 when none does
	stored   int   // the store's rows of the archive's span (counted when no row differs)
}

// compareArchive verifies day's archive in dir against roots and, when st
// is not nil, compares each of its rows with the store's: verr is what
// the verification (or a store read during it) found, cerr a failure to
// count the store's rows afterwards.
func compareArchive(st store.Log, roots *smime.Roots, dir, day string) (rep *logarchive.Report, m archiveMatch, verr, cerr error) {
	rep, verr = logarchive.VerifyEach(dir, day, roots, func(r logarchive.Row) error {
		if st == nil {
			return nil
		}
		_, h, ok, err := st.EventLink(r.ID)
		switch {
		case err != nil:
			return err
		case !ok:
			m.purged++
		case hex.EncodeToString(h) != r.Hash:
			if m.mismatch == 0 {
				m.mismatch = r.ID
			}
		default:
			m.matched++
		}
		return nil
	})
	if verr != nil || st == nil || m.mismatch != 0 {
		return rep, m, verr, nil
	}
	m.stored, cerr = st.CountEvents(rep.Header.From, rep.Header.To)
	return rep, m, nil, cerr
}
