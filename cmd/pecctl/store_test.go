package main

import (
	"bytes"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// configFor writes a copy of the fixture's configuration naming another
// store (a SQLite path or a PostgreSQL url), with the same archive
// directory, and returns its path.
func (f *backendFixture) configFor(t *testing.T, target string) string {
	t.Helper()
	src, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var c string
	if f.backend == "postgres" {
		c = strings.Replace(string(src), fmt.Sprintf("url = %q\n", f.url), fmt.Sprintf("url = %q\n", target), 1)
	} else {
		c = strings.Replace(string(src), fmt.Sprintf("path = %q\n", f.db), fmt.Sprintf("path = %q\ndir = %q\n", target, f.dir), 1)
	}
	if c == string(src) {
		t.Fatal("the configuration names no store to replace")
	}
	p := filepath.Join(t.TempDir(), "pec.toml")
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStoreBackupRestore: a backup taken while acceptances (log rows and
// the receipt in the outbox) are being committed restores, its chain
// verifies and continues the last daily archive, and every acceptance in
// it has its receipt.
func TestStoreBackupRestore(t *testing.T) {
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		f := bf.fixture
		if code, out, errOut := f.run("log", "archive", "--day", "2024-03-03"); code != 0 {
			t.Fatalf("archive: %d %s %s", code, out, errOut)
		}
		st := bf.open(t)
		var committed atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := st.Commit(storetest.Acceptance(i, time.Now())); err != nil {
					t.Error(err)
					return
				}
				committed.Add(1)
			}
		}()
		for committed.Load() < 20 {
			time.Sleep(5 * time.Millisecond)
		}
		bdir := filepath.Join(t.TempDir(), "backup")
		before := committed.Load()
		code, out, errOut := f.run("store", "backup", bdir)
		for n := committed.Load(); committed.Load() < n+20; {
			time.Sleep(5 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if code != 0 || !strings.Contains(out, "backup written: ") {
			t.Fatalf("store backup under load: exit %d, %q %q", code, out, errOut)
		}
		files, _ := filepath.Glob(filepath.Join(bdir, "pec-*"))
		if len(files) != 1 {
			t.Fatalf("backup directory holds %v", files)
		}
		backup := files[0]

		var target string
		if bf.backend == "postgres" {
			target = testenv.StartPostgres(t).NewDatabase(t)
		} else {
			os.Mkdir(filepath.Join(f.dir, "restored"), 0o750)
			target = filepath.Join(f.dir, "restored", "pec.db")
		}
		rcfg := bf.configFor(t, target)
		code, out, errOut = runCmd("store", "restore", "--verify", backup, "-config", rcfg)
		if code != 0 || !strings.Contains(out, "log intact") || !strings.Contains(out, "chain matches the last daily archive (2024-03-03)") {
			t.Fatalf("store restore --verify: exit %d, %q %q", code, out, errOut)
		}
		code, out, errOut = runCmd("log", "verify", "-config", rcfg)
		if code != 0 || !strings.Contains(out, "log intact") {
			t.Fatalf("log verify of the restored store: exit %d, %q %q", code, out, errOut)
		}

		// every acceptance in the restored store has its receipt, and the
		// backup holds at least what was committed before it started
		cfg, err := loadConfig(rcfg)
		if err != nil {
			t.Fatal(err)
		}
		rst, err := openStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		acc, err := rst.Events(store.Query{Point: "access", Type: "accettazione", From: time.Now().Add(-time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(acc)) < before || int64(len(acc)) > committed.Load() {
			t.Errorf("restored %d acceptances; %d were committed before the backup, %d in all", len(acc), before, committed.Load())
		}
		var ids []string
		for _, e := range acc {
			ids = append(ids, e.Related[0])
		}
		copies, err := rst.(store.Records).GeneratedByMessageID(ids)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, g := range copies {
			found[g.MessageID] = g.Kind == "accettazione" && len(g.Data) > 0
		}
		for _, id := range ids {
			if !found[id] {
				t.Errorf("acceptance receipt %s is missing from the restored store", id)
			}
		}
		rst.Close()

		// a store is there now: refused without --force
		code, _, errOut = runCmd("store", "restore", backup, "-config", rcfg)
		if code != 1 || !strings.Contains(errOut, "--force") {
			t.Errorf("restore over a store: exit %d, %q", code, errOut)
		}
		// rows archived after the backup was taken: the restored log lacks them
		if err := st.Commit(store.Txn{Events: []store.Event{{Time: utc("2024-03-10T10:00:00Z"), Point: "access", Type: "accettazione", PECID: "after-backup"}}}); err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := f.run("log", "archive", "--day", "2024-03-10"); code != 0 {
			t.Fatalf("archive: %d %s %s", code, out, errOut)
		}
		code, out, errOut = runCmd("store", "restore", "--verify", "--force", backup, "-config", rcfg)
		if code != 1 || !strings.Contains(out, "does NOT verify") || !strings.Contains(out, "were lost since the backup") {
			t.Errorf("restore older than the last archive: exit %d, %q %q", code, out, errOut)
		}

		// --keep: the newest backups stay
		time.Sleep(1100 * time.Millisecond) // names have one-second resolution
		code, out, errOut = f.run("store", "backup", "--keep", "1", bdir)
		if code != 0 || !strings.Contains(out, "removed old backup "+backup) {
			t.Errorf("backup --keep 1: exit %d, %q %q", code, out, errOut)
		}
		if files, _ := filepath.Glob(filepath.Join(bdir, "pec-*")); len(files) != 1 || files[0] == backup {
			t.Errorf("after --keep 1: %v", files)
		}

		if bf.backend == "sqlite" {
			// a backup whose log was changed is refused before it replaces anything
			bad := filepath.Join(t.TempDir(), "bad.db")
			newest, _ := filepath.Glob(filepath.Join(bdir, "pec-*"))
			b, err := os.ReadFile(newest[0])
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(bad, b, 0o600)
			db, err := sql.Open("sqlite3", bad)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"DROP TRIGGER events_no_update", "UPDATE events SET subject = 'changed' WHERE id = 3"} {
				if _, err := db.Exec(q); err != nil {
					t.Fatal(err)
				}
			}
			db.Close()
			before, _ := os.ReadFile(target)
			code, _, errOut = runCmd("store", "restore", "--force", "--verify", bad, "-config", rcfg)
			if code != 1 || !strings.Contains(errOut, "does not verify at row 3") {
				t.Errorf("restore of a changed backup: exit %d, %q", code, errOut)
			}
			if after, _ := os.ReadFile(target); !bytes.Equal(before, after) {
				t.Error("a refused restore changed the store")
			}
		}
		if bf.backend == "postgres" {
			// without pg_dump the command says what to install or do instead
			t.Setenv("PATH", t.TempDir())
			code, _, errOut = f.run("store", "backup", bdir)
			if code != 1 || !strings.Contains(errOut, "pg_dump is not installed") || !strings.Contains(errOut, "pg_basebackup") {
				t.Errorf("backup without pg_dump: exit %d, %q", code, errOut)
			}
		}
	})
}
