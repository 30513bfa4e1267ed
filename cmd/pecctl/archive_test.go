package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"database/sql"
	"encoding/json"
	"fmt"
	"github.com/pecgo/pec/metrics"
	"github.com/pecgo/pec/store/sqlite"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/logarchive/tsatest"
	"github.com/pecgo/pec/store"
)

// archiveRows reads the rows of an archive file (between header and trailer).
func archiveRows(t *testing.T, path string) []logarchive.Row {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 2 || !strings.Contains(lines[0], `"format":"pec-log-archive/1"`) || !strings.Contains(lines[len(lines)-1], `"end":"pec-log-archive/1"`) {
		t.Fatalf("archive layout: %q", lines)
	}
	var rows []logarchive.Row
	for _, l := range lines[1 : len(lines)-1] {
		var r logarchive.Row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r)
	}
	return rows
}

func TestLogArchive(t *testing.T) {
	openssl := needOpenSSL(t)
	f := newFixture(t)
	dir := filepath.Join(f.dir, "arch")
	for _, day := range []string{"2024-03-01", "2024-03-02", "2024-03-03"} {
		code, out, errOut := f.run("log", "archive", "--day", day, "--dir", dir)
		if code != 0 {
			t.Fatalf("archive %s: exit %d: %s %s", day, code, out, errOut)
		}
		files := logarchive.PathsFor(dir, day)
		// openssl checks the detached signature over the gzip file
		cmd := exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", files.Signature,
			"-content", files.Data, "-CAfile", f.root, "-purpose", "any", "-out", os.DevNull)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openssl cms -verify %s: %v: %s", day, err, b)
		}
		// only rows of that day in Rome, every one of them
		rows := archiveRows(t, files.Data)
		var got []int64
		for _, r := range rows {
			got = append(got, r.ID)
			if d := romeDay(r.Time); d != day {
				t.Errorf("archive %s holds row %d of %s", day, r.ID, d)
			}
		}
		want := f.ids(func(e store.Event) bool { return romeDay(e.Time) == day })
		if !reflect.DeepEqual(got, want) {
			t.Errorf("archive %s: rows %v, want %v", day, got, want)
		}
		if day == "2024-03-02" && !strings.Contains(out, "1 gaps of rows of other days") {
			t.Errorf("the row written out of order should leave a gap: %q", out)
		}
		code, out, _ = f.run("log", "archive", "--verify", "--day", day, "--dir", dir)
		if code != 0 || !strings.Contains(out, "archive "+day+" valid") || !strings.Contains(out, "rows match, 0 purged") {
			t.Errorf("--verify %s: exit %d, %q", day, code, out)
		}
	}

	// the last day archived is recorded for the metrics
	if st, err := sqlite.Open(f.db); err != nil {
		t.Fatal(err)
	} else {
		b, _, ok, err := st.GetShared(metrics.StatusLogArchive)
		st.Close()
		if err != nil || !ok || !strings.Contains(string(b), `"day":"2024-03-03"`) {
			t.Errorf("recorded archive status %q (%v, %v), want day 2024-03-03", b, ok, err)
		}
	}

	// no overwrite without --force
	code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir)
	if code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("second archive: exit %d, %q", code, errOut)
	}
	// a day not over yet
	today := time.Now().In(rome).Format("2006-01-02")
	if code, _, errOut := f.run("log", "archive", "--day", today, "--dir", dir); code != 1 || !strings.Contains(errOut, "not over") {
		t.Errorf("archive today: exit %d, %q", code, errOut)
	}

	// one changed byte in the archive: Verify and --verify fail
	files := logarchive.PathsFor(dir, "2024-03-02")
	raw, _ := os.ReadFile(files.Data)
	raw[len(raw)/2] ^= 0x01
	os.WriteFile(files.Data, raw, 0o640)
	if _, err := logarchive.Verify(dir, "2024-03-02", f.pki.Pool()); err == nil || !strings.Contains(err.Error(), "signature does not match") {
		t.Errorf("Verify of a changed archive: %v", err)
	}
	if code, out, _ := f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir); code != 1 || !strings.Contains(out, "INVALID") {
		t.Errorf("--verify of a changed archive: exit %d, %q", code, out)
	}
	// --force rewrites it
	if code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir, "--force"); code != 0 {
		t.Fatalf("--force: exit %d: %s", code, errOut)
	}
	if _, err := logarchive.Verify(dir, "2024-03-02", f.pki.Pool()); err != nil {
		t.Errorf("rewritten archive: %v", err)
	}

	// after a purge the archive still verifies, the purged rows are reported
	// (purge wants every day it deletes rows of archived)
	for _, day := range []string{"2021-01-10", "2021-01-11"} {
		if code, out, errOut := f.run("log", "archive", "--day", day, "--dir", dir); code != 0 {
			t.Fatalf("archive %s: exit %d: %s %s", day, code, out, errOut)
		}
	}
	if code, _, errOut := f.run("log", "purge", "--before", "2024-03-03T00:00:00+01:00", "--force", "--dir", dir); code != 0 {
		t.Fatalf("purge: %s", errOut)
	}
	code, out, _ := f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir)
	n := len(f.ids(func(e store.Event) bool { return romeDay(e.Time) == "2024-03-02" }))
	if code != 0 || !strings.Contains(out, "purged") || strings.Contains(out, " 0 purged") {
		t.Errorf("--verify after purge (%d rows): exit %d, %q", n, code, out)
	}

	// usage errors
	for _, args := range [][]string{
		{"log", "archive"},
		{"log", "archive", "--day", "2024-3-2"},
		{"log", "archive", "--verify", "--day", "2024-03-02", "--force"},
		{"log", "archive", "--day", "2024-03-02", "--tsa", "tsa.example.test"},
	} {
		if code, _, errOut := f.run(args...); code != 2 {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

// An archive written while the store has later rows of the same day
// (clocks out of order, or run too early) is reported incomplete.
func TestLogArchiveIncomplete(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "arch")
	if code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir); code != 0 {
		t.Fatal(errOut)
	}
	st, err := sqlite.Open(f.db)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Commit(store.Txn{Events: []store.Event{{Time: utc("2024-03-02T20:00:00Z"), Point: "access", Type: "accettazione",
		PECID: "opec-late.20240302@pec.example.test", Sender: mario, Recipients: []string{anna}, Provider: provName}}})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ := f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir)
	if code != 1 || !strings.Contains(out, "INCOMPLETE") {
		t.Errorf("exit %d, %q", code, out)
	}
}

// --tsa against a fake TSA on loopback (no real TSA is contacted): a
// failed time-stamp leaves a signed archive that a second run time-stamps.
func TestLogArchiveTSA(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "arch")
	tsa := tsatest.New(f.pki)
	tsa.HTTPCode = http.StatusServiceUnavailable
	srv := httptest.NewServer(tsa)
	defer srv.Close()

	code, out, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir, "--tsa", srv.URL)
	if code != 1 || !strings.Contains(errOut, "run the same command again") || !strings.Contains(out, "archived 2024-03-02") {
		t.Fatalf("TSA down: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ := f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir); code != 0 || !strings.Contains(out, "no time-stamp") {
		t.Errorf("--verify without .tsr: exit %d, %q", code, out)
	}
	tsa.HTTPCode = 0
	code, out, errOut = f.run("log", "archive", "--day", "2024-03-02", "--dir", dir, "--tsa", srv.URL)
	if code != 0 || !strings.Contains(out, "without a time-stamp: time-stamping it") || !strings.Contains(out, "time-stamped at") {
		t.Fatalf("TSA back: exit %d, %q %q", code, out, errOut)
	}
	if len(tsa.Requests) != 2 {
		t.Errorf("%d requests to the TSA", len(tsa.Requests))
	}
	code, out, _ = f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir)
	if code != 0 || !strings.Contains(out, "time-stamped at") || !strings.Contains(out, "Test Time-Stamping Unit") || strings.Contains(out, "warning") {
		t.Errorf("--verify with .tsr: exit %d, %q", code, out)
	}
	// already time-stamped: nothing to do without --force
	if code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir, "--tsa", srv.URL); code != 1 || !strings.Contains(errOut, "--force") {
		t.Errorf("third run: exit %d, %q", code, errOut)
	}
}

// [store] tsa_url in the configuration is used when --tsa is not given.
func TestLogArchiveTSAFromConfig(t *testing.T) {
	f := newFixture(t)
	tsa := tsatest.New(f.pki)
	srv := httptest.NewServer(tsa)
	defer srv.Close()
	conf, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	conf = []byte(strings.Replace(string(conf), "[store]\n", "[store]\ntsa_url = \""+srv.URL+"\"\n", 1))
	if err := os.WriteFile(f.cfg, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(f.dir, "arch")
	code, out, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir)
	if code != 0 || !strings.Contains(out, "time-stamped at") || len(tsa.Requests) != 1 {
		t.Fatalf("exit %d, %q %q, %d requests", code, out, errOut, len(tsa.Requests))
	}
}

// A row whose hash in the store is not the archive's: log archive
// --verify says the archive does not match, and log purge refuses the
// day; both name the row.
func TestArchiveRowDiffersFromStore(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(f.dir, "arch")
	if code, out, errOut := f.run("log", "archive", "--day", "2021-01-10", "--dir", dir); code != 0 {
		t.Fatalf("archive: exit %d: %s %s", code, out, errOut)
	}
	target := f.ids(func(e store.Event) bool { return romeDay(e.Time) == "2021-01-10" })[0]
	db, err := sql.Open("sqlite3", f.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("DROP TRIGGER events_no_update"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE events SET hash = zeroblob(32) WHERE id = ?", target); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, _ := f.run("log", "archive", "--verify", "--day", "2021-01-10", "--dir", dir)
	if want := fmt.Sprintf("does NOT match the store: row %d in the archive differs from row %d in the store", target, target); code != 1 || !strings.Contains(out, want) {
		t.Errorf("--verify: exit %d, %q; want %q", code, out, want)
	}
	code, _, errOut := f.run("log", "purge", "--before", "2021-01-11T00:00:00+01:00", "--force", "--dir", dir)
	if want := fmt.Sprintf("day 2021-01-10: row %d of the archive differs from the store's", target); code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("purge: exit %d, %q; want %q", code, errOut, want)
	}
}
