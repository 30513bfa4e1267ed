package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

const storeUsage = `usage: pecctl store backup|restore [OPTIONS]

  backup [--keep N] DIR          an online, consistent copy of the store into DIR
  restore [--verify] [--force] [--dir ARCHIVES] FROM
                                 put a backup back in place of the configured store

Run "pecctl store SUBCOMMAND -h" for its options. Every subcommand takes
-config FILE (default ` + config.DefaultPath + `).
`

func cmdStore(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, storeUsage)
		return 2
	}
	switch args[0] {
	case "backup":
		return storeBackup(args[1:], stdout, stderr)
	case "restore":
		return storeRestore(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, storeUsage)
		return 0
	}
	fmt.Fprintf(stderr, "pecctl store: unknown subcommand %q\n%s", args[0], storeUsage)
	return 2
}

const storeBackupUsage = `usage: pecctl store backup [--keep N] [-config FILE] DIR

Writes a consistent copy of the whole store (event log, outbox, timers,
virus store, deliveries) into DIR while the daemons keep running:

  SQLite      DIR/pec-YYYYMMDDTHHMMSSZ.db, made with VACUUM INTO (one read
              transaction: the state of one instant); the copy's hash chain
              is then verified
  PostgreSQL  DIR/pec-YYYYMMDDTHHMMSSZ.dump, made with pg_dump --format=custom
              (one snapshot), which must be installed (postgresql-client);
              for point-in-time recovery use pg_basebackup and WAL
              archiving instead (README, "Backup and restore")

Copy DIR to another machine: a backup on the store's disk does not survive
that disk.

  --keep N   then delete all but the newest N backups in DIR (0: keep all)
`

// backupPrefix names the files store backup writes.
const backupPrefix = "pec-"

func storeBackup(args []string, stdout, stderr io.Writer) int {
	const cmd = "store backup"
	fs, cfgPath := newFlags(cmd, storeBackupUsage, stderr)
	keep := fs.Int("keep", 0, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 {
		return usageErr(stderr, cmd, storeBackupUsage, "want one backup directory")
	}
	if *keep < 0 {
		return usageErr(stderr, cmd, storeBackupUsage, "--keep %d: want 0 or more", *keep)
	}
	dir := pos[0]
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fail(stderr, cmd, err)
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	var path, ext string
	if cfg.Store.URL != "" {
		ext = ".dump"
		path = filepath.Join(dir, backupPrefix+stamp+ext)
		if err := pgDump(cfg.Store.URL, path); err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "backup written: %s (pg_dump custom format; restore with pecctl store restore --verify %s)\n", path, path)
	} else {
		ext = ".db"
		path = filepath.Join(dir, backupPrefix+stamp+ext)
		st, err := openStore(cfg)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		bu, ok := st.(interface{ BackupTo(string) error })
		if !ok {
			st.Close()
			return fail(stderr, cmd, fmt.Errorf("the store %s cannot make a backup", st.Describe()))
		}
		err = bu.BackupTo(path)
		st.Close()
		if err != nil {
			os.Remove(path)
			return fail(stderr, cmd, err)
		}
		// the copy is a store of its own: check its chain
		cp, err := sqlite.Open(path)
		if err != nil {
			return fail(stderr, cmd, fmt.Errorf("the backup %s cannot be opened: %v", path, err))
		}
		bad, verr := cp.VerifyLog()
		head, hash, herr := cp.LogHead()
		cp.Close()
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
		if verr != nil {
			return fail(stderr, cmd, fmt.Errorf("the backup %s does not verify (row %d: %v): the live log may be damaged, run pecctl log verify", path, bad, verr))
		}
		if herr != nil {
			return fail(stderr, cmd, herr)
		}
		if err := os.Chmod(path, 0o640); err != nil {
			return fail(stderr, cmd, err)
		}
		fmt.Fprintf(stdout, "backup written: %s (log intact up to row %d %s)\n", path, head, hex.EncodeToString(hash))
	}
	if *keep > 0 {
		removed, err := pruneBackups(dir, ext, *keep)
		if err != nil {
			return fail(stderr, cmd, err)
		}
		for _, r := range removed {
			fmt.Fprintf(stdout, "removed old backup %s\n", r)
		}
	}
	return 0
}

// pgDump runs pg_dump into path.
func pgDump(url, path string) error {
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		return errors.New("pg_dump is not installed: install postgresql-client (the same major version as the server or newer), or back the database up with pg_basebackup on the database host (README, \"Backup and restore\")")
	}
	tmp := path + ".part"
	out, err := exec.Command(bin, "--format=custom", "--no-owner", "--file="+tmp, "--dbname="+url).CombinedOutput()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pg_dump: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Chmod(tmp, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// pruneBackups deletes all but the newest keep backups with extension ext
// in dir (their names sort by time).
func pruneBackups(dir, ext string, keep int) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, backupPrefix+"*"+ext))
	if err != nil {
		return nil, err
	}
	sort.Strings(m)
	var removed []string
	for len(m) > keep {
		if err := os.Remove(m[0]); err != nil {
			return removed, err
		}
		removed = append(removed, m[0])
		m = m[1:]
	}
	return removed, nil
}

const storeRestoreUsage = `usage: pecctl store restore [--verify] [--force] [--dir ARCHIVES] [-config FILE] FROM

Puts the backup FROM (written by pecctl store backup) in place of the
configured store. Stop pecmilter, pecdeliver and the pec-* timers on every
node first.

  SQLite      FROM (a .db file) is copied to [store] path; an existing store
              is refused unless --force, which keeps it as PATH.replaced-TIME
  PostgreSQL  FROM (a .dump file) is loaded with pg_restore into the
              database of [store] url, which must hold no store (create it
              empty: createdb -O pec pec); with --force an existing store
              is dropped first (pg_restore --clean)

  --verify    then check the restored store: the whole hash chain (as
              pecctl log verify), and that the last daily archive in
              ARCHIVES (signature, chain) ends on a row the restored log
              holds with the same hash: the restored log continues the
              sealed archives. Exit 1 naming what does not match.
  --dir DIR   the daily archives (default: "archive" next to the store)
`

func storeRestore(args []string, stdout, stderr io.Writer) int {
	const cmd = "store restore"
	fs, cfgPath := newFlags(cmd, storeRestoreUsage, stderr)
	verify := fs.Bool("verify", false, "")
	force := fs.Bool("force", false, "")
	dir := fs.String("dir", "", "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) != 1 {
		return usageErr(stderr, cmd, storeRestoreUsage, "want one backup file")
	}
	from := pos[0]
	if _, err := os.Stat(from); err != nil {
		return fail(stderr, cmd, fmt.Errorf("backup %s: %v", from, err))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if *dir == "" {
		*dir = filepath.Join(cfg.Store.Dir, "archive")
	}
	if cfg.Store.URL != "" {
		err = pgRestore(cfg, from, *force)
	} else {
		err = sqliteRestore(cfg.Store.Path, from, *force, stdout)
	}
	if err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "restored %s into the configured store\n", from)
	if !*verify {
		return 0
	}
	roots, err := cfg.SealingRoots() // [signing] and [log] trusted_roots: archives are sealed with the [log] key
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: --verify checks the archives against [signing] and [log] trusted_roots", err))
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	msgs, err := verifyRestored(st, roots, *dir)
	for _, m := range msgs {
		fmt.Fprintln(stdout, m)
	}
	if err != nil {
		fmt.Fprintf(stdout, "restored store does NOT verify: %v\n", err)
		return 1
	}
	return 0
}

func sqliteRestore(path, from string, force bool, stdout io.Writer) error {
	if path == "" {
		return errors.New("neither [store] path nor [store] url is set in the configuration")
	}
	if filepath.Ext(from) == ".dump" {
		return fmt.Errorf("%s is a PostgreSQL dump, and [store] names a SQLite file", from)
	}
	// the copy must be a store whose chain verifies before it replaces
	// anything; it is checked next to the store, not in place (opening a
	// SQLite file may write to it)
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	tmp := path + ".restoring"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	cleanup := func() {
		for _, suf := range []string{"", "-wal", "-shm"} {
			os.Remove(tmp + suf)
		}
	}
	cp, err := sqlite.Open(tmp)
	if err != nil {
		cleanup()
		return fmt.Errorf("backup %s: %v", from, err)
	}
	bad, verr := cp.VerifyLog()
	if cerr := cp.Close(); verr == nil && cerr != nil {
		verr = cerr
	}
	if verr != nil {
		cleanup()
		return fmt.Errorf("backup %s does not verify at row %d (%v): restore an older backup", from, bad, verr)
	}
	if _, err := os.Stat(path); err == nil {
		if !force {
			cleanup()
			return fmt.Errorf("%s exists: stop the daemons, then pass --force to keep it aside and restore", path)
		}
		aside := path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		for _, suf := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(path+suf, aside+suf); err != nil && !errors.Is(err, fs.ErrNotExist) {
				cleanup()
				return err
			}
		}
		fmt.Fprintf(stdout, "the store that was there is kept as %s\n", aside)
	}
	for _, suf := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(tmp + suf); err == nil {
			if err := os.Rename(tmp+suf, path+suf); err != nil {
				cleanup()
				return err
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		cleanup()
		return err
	}
	return nil
}

func pgRestore(cfg *config.Config, from string, force bool) error {
	if filepath.Ext(from) == ".db" {
		return fmt.Errorf("%s is a SQLite store, and [store] names a PostgreSQL database", from)
	}
	bin, err := exec.LookPath("pg_restore")
	if err != nil {
		return errors.New("pg_restore is not installed: install postgresql-client, or restore with pg_restore on the database host")
	}
	if st, err := openStore(cfg); err == nil {
		st.Close()
		if !force {
			return fmt.Errorf("the database of [store] url already holds a store: stop the daemons and pass --force to replace it, or restore into an empty database")
		}
	}
	args := []string{"--no-owner", "--exit-on-error", "--single-transaction", "--dbname=" + cfg.Store.URL}
	if force {
		args = append(args, "--clean", "--if-exists")
	}
	out, err := exec.Command(bin, append(args, from)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_restore: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// verifyRestored checks a restored store: its chain, and that it holds
// the last row of the newest daily archive in dir with the same hash.
func verifyRestored(st store.Store, roots *smime.Roots, dir string) ([]string, error) {
	var msgs []string
	if bad, err := st.VerifyLog(); err != nil {
		if bad == 0 {
			return msgs, err
		}
		return msgs, fmt.Errorf("log damaged at row %d: %v", bad, err)
	}
	anchor, _, err := st.LogAnchor()
	if err != nil {
		return msgs, err
	}
	head, hash, err := st.LogHead()
	if err != nil {
		return msgs, err
	}
	msgs = append(msgs, fmt.Sprintf("log intact: %d rows, head %d %s", head-anchor, head, hex.EncodeToString(hash)))
	day, err := lastArchivedDay(dir)
	if err != nil {
		return msgs, err
	}
	if day == "" {
		msgs = append(msgs, fmt.Sprintf("warning: no daily archive in %s: only the chain was checked (pass --dir)", dir))
		return msgs, nil
	}
	rep, err := logarchive.Verify(dir, day, roots)
	if err != nil {
		return msgs, fmt.Errorf("the last daily archive (%s) does not verify: %v", day, err)
	}
	t := rep.Trailer
	// the archive's anchor: its last row, else the log head it sealed
	id, want := t.LastID, t.LastHash
	if t.Rows == 0 {
		id, want = t.LogHeadID, t.LogHeadHash
	}
	if id == 0 {
		msgs = append(msgs, fmt.Sprintf("the last daily archive (%s) seals an empty log", day))
		return msgs, nil
	}
	if id > head {
		return msgs, fmt.Errorf("the last daily archive (%s) ends at row %d, the restored log at row %d: rows %d..%d were lost since the backup (they are in the archives; restore a newer backup)", day, id, head, head+1, id)
	}
	_, h, ok, err := st.EventLink(id)
	if err != nil {
		return msgs, err
	}
	if !ok {
		msgs = append(msgs, fmt.Sprintf("row %d, the last of archive %s, is purged from the restored log (the archive is older than the retention)", id, day))
		return msgs, nil
	}
	if hex.EncodeToString(h) != want {
		return msgs, fmt.Errorf("row %d of the restored log differs from row %d of the archive of %s: this is not the log the archives sealed", id, id, day)
	}
	if t.LogHeadID > id && t.LogHeadID <= head {
		// the head the archive sealed when it was made
		_, h, ok, err := st.EventLink(t.LogHeadID)
		if err != nil {
			return msgs, err
		}
		if ok && hex.EncodeToString(h) != t.LogHeadHash {
			return msgs, fmt.Errorf("row %d of the restored log differs from the log head sealed by the archive of %s", t.LogHeadID, day)
		}
	}
	msgs = append(msgs, fmt.Sprintf("chain matches the last daily archive (%s): row %d %s", day, id, want))
	return msgs, nil
}

// lastArchivedDay returns the newest day with an archive in dir ("" when
// none).
func lastArchivedDay(dir string) (string, error) {
	m, err := filepath.Glob(filepath.Join(dir, "pec-log-*.jsonl.gz"))
	if err != nil {
		return "", err
	}
	sort.Strings(m)
	if len(m) == 0 {
		return "", nil
	}
	b := filepath.Base(m[len(m)-1])
	return strings.TrimSuffix(strings.TrimPrefix(b, "pec-log-"), ".jsonl.gz"), nil
}
