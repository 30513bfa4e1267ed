package main

import (
	"bytes"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/metrics"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

// searchIDs runs log search --json and returns the ids printed.
func searchIDs(t *testing.T, f *fixture, args ...string) []int64 {
	t.Helper()
	code, out, errOut := f.run(append([]string{"log", "search", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("log search %v: exit %d: %s", args, code, errOut)
	}
	var ids []int64
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r logarchive.Row
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ids = append(ids, r.ID)
	}
	return ids
}

func TestLogSearchByKey(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		args []string
		keep func(e store.Event) bool
	}{
		{"pecid", []string{"--pecid", "opec-102.20240302@pec.example.test"}, func(e store.Event) bool { return e.PECID == "opec-102.20240302@pec.example.test" }},
		{"msgid", []string{"--msgid", "<b1@pec.other.test>"}, func(e store.Event) bool { return e.MsgID == "<b1@pec.other.test>" }},
		{"sender, case-insensitive", []string{"--sender", strings.ToUpper(giulia)}, func(e store.Event) bool { return e.Sender == giulia }},
		{"recipient", []string{"--rcpt", mario}, func(e store.Event) bool { return hasAddr(e.Recipients, mario) }},
		{"type and point", []string{"--type", "non-accettazione", "--point", "access"}, func(e store.Event) bool { return e.Type == "non-accettazione" }},
		{"sender and day", []string{"--sender", mario, "--day", "2024-03-02"}, func(e store.Event) bool {
			return e.Sender == mario && romeDay(e.Time) == "2024-03-02"
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := searchIDs(t, f, c.args...)
			want := f.ids(c.keep)
			if len(want) == 0 {
				t.Fatal("bad fixture: nothing expected")
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ids = %v, want %v", got, want)
			}
		})
	}
}

func TestLogSearchDayInRome(t *testing.T) {
	f := newFixture(t)
	for _, day := range []string{"2024-03-01", "2024-03-02", "2024-03-03"} {
		got := searchIDs(t, f, "--day", day)
		want := f.ids(func(e store.Event) bool { return romeDay(e.Time) == day })
		if !reflect.DeepEqual(got, want) || len(want) == 0 {
			t.Errorf("--day %s: ids = %v, want %v", day, got, want)
		}
	}
	// 23:30 UTC on the 1st is 00:30 on the 2nd in Rome, 22:30 UTC stays on the 1st
	late := f.ids(func(e store.Event) bool { return e.Time.Equal(utc("2024-03-01T23:30:00Z")) })
	early := f.ids(func(e store.Event) bool { return e.Time.Equal(utc("2024-03-01T22:30:00Z")) })
	day2 := searchIDs(t, f, "--day", "2024-03-02")
	for _, id := range late {
		if !slices.Contains(day2, id) {
			t.Errorf("row %d (23:30 UTC on the 1st) missing from the 2nd", id)
		}
	}
	for _, id := range early {
		if slices.Contains(day2, id) {
			t.Errorf("row %d (22:30 UTC on the 1st) listed on the 2nd", id)
		}
	}
	// an explicit range: from inclusive, to exclusive
	got := searchIDs(t, f, "--from", "2024-03-02T10:00:00+01:00", "--to", "2024-03-02T13:00:00+01:00")
	want := f.ids(func(e store.Event) bool {
		return !e.Time.Before(utc("2024-03-02T09:00:00Z")) && e.Time.Before(utc("2024-03-02T12:00:00Z"))
	})
	if !reflect.DeepEqual(got, want) {
		t.Errorf("--from/--to: ids = %v, want %v", got, want)
	}

	// text output: one line per event, time in Rome
	code, out, _ := f.run("log", "search", "--pecid", "opec-102.20240302@pec.example.test")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("text search: exit %d, %q", code, out)
	}
	wantLine := `2024-03-02 00:30:00 +0100 access accettazione pecid=opec-102.20240302@pec.example.test msgid=<m102@pec.example.test> sender=mario.rossi@pec.example.test rcpt=anna.verdi@pec.other.test,giulia.bianchi@pec.example.test subject="Contratto \"firmato\"" related=<acc-102@pec.example.test> error=""`
	if lines[0] != wantLine {
		t.Errorf("text line\n got %s\nwant %s", lines[0], wantLine)
	}
}

func TestLogSearchUsage(t *testing.T) {
	f := newFixture(t)
	for _, args := range [][]string{
		{"log", "search", "--day", "2024-03-02", "--from", "2024-03-02T00:00:00Z"},
		{"log", "search", "--day", "02/03/2024"},
		{"log", "search", "--from", "yesterday"},
		{"log", "search", "stray"},
		{"log", "frobnicate"},
		{"log"},
	} {
		if code, _, errOut := f.run(args...); code != 2 || !strings.Contains(errOut, "usage:") {
			t.Errorf("%v: exit %d, stderr %q; want 2 with usage", args, code, errOut)
		}
	}
	if code, out, _ := runCmd("log", "search", "-h"); code != 0 && !strings.Contains(out, "usage") {
		t.Errorf("-h: exit %d", code)
	}
	code, _, errOut := runCmd("log", "verify", "-config", filepath.Join(t.TempDir(), "none.toml"))
	if code != 1 || !strings.Contains(errOut, "pass -config FILE") {
		t.Errorf("missing config: exit %d, %q", code, errOut)
	}
}

func TestLogVerify(t *testing.T) {
	f := newFixture(t)
	code, out, errOut := f.run("log", "verify")
	want := regexp.MustCompile(fmt.Sprintf(`^log intact: %d rows, head %d [0-9a-f]{64}\n$`, len(f.all), len(f.all)))
	if code != 0 || !want.MatchString(out) {
		t.Fatalf("intact log: exit %d, %q %q", code, out, errOut)
	}
	if s := verifyStatus(t, f.db); !s.OK || time.Since(s.At) > time.Minute {
		t.Errorf("recorded status after an intact log: %+v, want ok now", s)
	}

	// tamper: drop the trigger that forbids UPDATE and change a subject
	db, err := sql.Open("sqlite3", f.db)
	if err != nil {
		t.Fatal(err)
	}
	target := f.ids(func(e store.Event) bool { return e.MsgID == "<b1@pec.other.test>" })[0]
	if _, err := db.Exec("DROP TRIGGER events_no_update"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE events SET subject = 'Preventivo modificato' WHERE id = ?", target); err != nil {
		t.Fatal(err)
	}
	db.Close()
	code, out, _ = f.run("log", "verify")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("row %d", target)) || !strings.Contains(out, "was changed") {
		t.Errorf("tampered log: exit %d, %q", code, out)
	}
	if s := verifyStatus(t, f.db); s.OK || !strings.Contains(s.Detail, fmt.Sprintf("row %d", target)) {
		t.Errorf("recorded status after damage: %+v, want not ok naming row %d", s, target)
	}
}

// verifyStatus reads what log verify recorded for pec_log_verify_ok.
func verifyStatus(t *testing.T, path string) metrics.LogVerifyStatus {
	t.Helper()
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b, _, ok, err := st.GetShared(metrics.StatusLogVerify)
	if err != nil || !ok {
		t.Fatalf("no log verify status recorded: %v", err)
	}
	var s metrics.LogVerifyStatus
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// A removed row and two swapped rows are named too (the three
// kinds of tampering: changed, removed, reordered).
func TestLogVerifyRemovedAndReordered(t *testing.T) {
	for _, c := range []struct {
		name, want string
		tamper     func(db *sql.DB, a, b int64) error
	}{
		{"removed", "rows 3..3 removed", func(db *sql.DB, a, _ int64) error {
			_, err := db.Exec("DELETE FROM events WHERE id = ?", a)
			return err
		}},
		{"reordered", "reordered", func(db *sql.DB, a, b int64) error {
			// swap the contents of two neighbouring rows, hashes included
			for _, q := range []string{
				"UPDATE events SET id = -1 WHERE id = ?", "UPDATE events SET id = ? WHERE id = ?", "UPDATE events SET id = ? WHERE id = -1",
			} {
				var err error
				switch q {
				case "UPDATE events SET id = -1 WHERE id = ?":
					_, err = db.Exec(q, a)
				case "UPDATE events SET id = ? WHERE id = ?":
					_, err = db.Exec(q, a, b)
				default:
					_, err = db.Exec(q, b)
				}
				if err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			db, err := sql.Open("sqlite3", f.db)
			if err != nil {
				t.Fatal(err)
			}
			rows, _ := db.Query("SELECT name FROM sqlite_master WHERE type = 'trigger'")
			var triggers []string
			for rows.Next() {
				var n string
				rows.Scan(&n)
				triggers = append(triggers, n)
			}
			rows.Close()
			for _, tr := range triggers {
				if _, err := db.Exec("DROP TRIGGER " + tr); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.tamper(db, 3, 4); err != nil {
				t.Fatal(err)
			}
			db.Close()
			code, out, _ := f.run("log", "verify")
			if code != 1 || !strings.Contains(out, "DAMAGED at row") || !strings.Contains(out, c.want) {
				t.Errorf("%s row: exit %d, %q", c.name, code, out)
			}
		})
	}
}

func TestLogPurge(t *testing.T) {
	forBackends(t, testLogPurge)
}

func testLogPurge(t *testing.T, bf *backendFixture) {
	f := bf.fixture
	// inside the retention period: refused without --force
	code, _, errOut := f.run("log", "purge", "--before", "2024-03-02T00:00:00+01:00")
	if code != 1 || !strings.Contains(errOut, "--force") {
		t.Fatalf("purge inside retention: exit %d, %q", code, errOut)
	}
	// younger than 30 months: --force is not enough
	recent := time.Now().AddDate(0, -29, 0).Format(time.RFC3339)
	code, _, errOut = f.run("log", "purge", "--before", recent, "--force")
	if code != 1 || !strings.Contains(errOut, "younger than 30 months") || !strings.Contains(errOut, "--i-know") {
		t.Fatalf("purge inside 30 months: exit %d, %q", code, errOut)
	}
	before := searchIDs(t, f)
	// default cutoff: now - retention (2023-01-01 in this configuration);
	// the days of the old rows are not archived yet: nothing is deleted
	code, _, errOut = f.run("log", "purge")
	if code != 1 || !strings.Contains(errOut, "day 2021-01-10 is not in a verified archive") ||
		!strings.Contains(errOut, "pecctl log archive --day 2021-01-10") {
		t.Fatalf("purge of unarchived days: exit %d, %q", code, errOut)
	}
	if got := searchIDs(t, f); !reflect.DeepEqual(got, before) {
		t.Fatalf("a refused purge deleted rows: %v", got)
	}
	if code, out, errOut := f.run("log", "archive", "--day", "2021-01-10"); code != 0 {
		t.Fatalf("archive: %d %s %s", code, out, errOut)
	}
	code, _, errOut = f.run("log", "purge")
	if code != 1 || !strings.Contains(errOut, "day 2021-01-11 is not in a verified archive") {
		t.Fatalf("purge with one of two days archived: exit %d, %q", code, errOut)
	}
	if code, out, errOut := f.run("log", "archive", "--day", "2021-01-11"); code != 0 {
		t.Fatalf("archive: %d %s %s", code, out, errOut)
	}
	old := f.ids(func(e store.Event) bool { return e.Time.Before(retentionStart) })
	code, out, errOut := f.run("log", "purge")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("purged %d event rows and 1 virus items", len(old))) {
		t.Fatalf("purge: exit %d, %q %q", code, out, errOut)
	}
	after := searchIDs(t, f)
	if !reflect.DeepEqual(after, before[len(old):]) {
		t.Errorf("after purge: %v, want %v", after, before[len(old):])
	}
	if code, out, _ := f.run("log", "verify"); code != 0 || !strings.Contains(out, fmt.Sprintf("log intact: %d rows", len(after))) {
		t.Errorf("verify after purge: exit %d, %q", code, out)
	}
	// --force with an explicit cutoff: exactly the rows before it, once
	// their days (the 1st and the 2nd in Rome) are archived
	cut := utc("2024-03-02T00:00:00Z")
	for _, day := range []string{"2024-03-01", "2024-03-02"} {
		if code, out, errOut := f.run("log", "archive", "--day", day); code != 0 {
			t.Fatalf("archive %s: %d %s %s", day, code, out, errOut)
		}
	}
	// an archive that no longer verifies blocks the purge
	sig := filepath.Join(f.dir, "archive", "pec-log-2024-03-01.jsonl.gz.p7s")
	good, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sig, good[:len(good)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = f.run("log", "purge", "--before", cut.Format(time.RFC3339), "--force")
	if code != 1 || !strings.Contains(errOut, "day 2024-03-01 is not in a verified archive") {
		t.Fatalf("purge over a damaged archive: exit %d, %q", code, errOut)
	}
	if err := os.WriteFile(sig, good, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = f.run("log", "purge", "--before", cut.Format(time.RFC3339), "--force")
	gone := f.ids(func(e store.Event) bool { return !e.Time.Before(retentionStart) && e.Time.Before(cut) })
	if code != 0 || !strings.Contains(out, fmt.Sprintf("purged %d event rows", len(gone))) {
		t.Fatalf("purge --force: exit %d, %q", code, out)
	}
	rest := searchIDs(t, f)
	want := f.ids(func(e store.Event) bool { return !e.Time.Before(cut) })
	if !reflect.DeepEqual(rest, want) {
		t.Errorf("after purge --before %s: %v, want %v", cut, rest, want)
	}
	if code, _, errOut := f.run("log", "purge", "--before", "2024-03-02"); code != 2 {
		t.Errorf("bad --before: exit %d, %q", code, errOut)
	}
}

// An archive written before more rows of its day were logged does not
// cover the day: purge asks for it to be rewritten.
func TestLogPurgeIncompleteArchive(t *testing.T) {
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		f := bf.fixture
		for _, day := range []string{"2021-01-10", "2021-01-11"} {
			if code, out, errOut := f.run("log", "archive", "--day", day); code != 0 {
				t.Fatalf("archive %s: %d %s %s", day, code, out, errOut)
			}
		}
		st := bf.open(t)
		if err := st.Commit(store.Txn{Events: []store.Event{{Time: utc("2021-01-10T12:00:00Z"), Point: "access", Type: "accettazione", PECID: "late"}}}); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := f.run("log", "purge")
		if code != 1 || !strings.Contains(errOut, "archive of day 2021-01-10 holds 2 of the store's 3 rows") ||
			!strings.Contains(errOut, "--day 2021-01-10") || !strings.Contains(errOut, "--force") {
			t.Fatalf("purge over an incomplete archive: exit %d, %q", code, errOut)
		}
	})
}

// exportParts returns the text summary and the JSON attachment of the
// content openssl printed after verifying an extract.
func exportParts(t *testing.T, content []byte) (string, exportJSON) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("signed content is %q: %v", mt, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var text string
	var js exportJSON
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		switch ct, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type")); ct {
		case "text/plain":
			b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
			if err != nil {
				t.Fatal(err)
			}
			text = string(b)
		case "application/json":
			dec, err := decodeB64(body)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(dec, &js); err != nil {
				t.Fatal(err)
			}
		}
	}
	return text, js
}

func TestLogExport(t *testing.T) {
	openssl := needOpenSSL(t)
	f := newFixture(t)
	out := filepath.Join(f.dir, "estratto.eml")
	code, _, errOut := f.run("log", "export", "--mailbox", "Mario.Rossi@pec.example.test", "--date", "2024-03-02", "-o", out)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	cmd := exec.Command(openssl, "smime", "-verify", "-in", out, "-CAfile", f.root, "-purpose", "any")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("openssl smime -verify: %v: %s", err, stderr.String())
	}
	text, js := exportParts(t, stdout.Bytes())
	want := f.ids(func(e store.Event) bool {
		return romeDay(e.Time) == "2024-03-02" && (e.Sender == mario || hasAddr(e.Recipients, mario))
	})
	var got []int64
	for _, r := range js.Rows {
		got = append(got, r.ID)
		if r.Sender != mario && !hasAddr(r.Recipients, mario) {
			t.Errorf("row %d is not mario's: %+v", r.ID, r)
		}
	}
	if !reflect.DeepEqual(got, want) || len(want) < 5 {
		t.Errorf("rows %v, want %v", got, want)
	}
	if js.Mailbox != mario || js.Day != "2024-03-02" || js.TimeZone != "Europe/Rome" {
		t.Errorf("header %+v", js)
	}
	for _, s := range []string{"Casella: " + mario, "Giorno: 02/03/2024", fmt.Sprintf("Operazioni registrate: %d", len(want)),
		"02/03/2024 00:30:00 (+0100) - accettazione (punto di accesso)", "la casella è mittente o destinataria"} {
		if !strings.Contains(text, s) {
			t.Errorf("summary lacks %q:\n%s", s, text)
		}
	}
	// a changed byte breaks the signature
	raw, _ := os.ReadFile(out)
	bad := bytes.Replace(raw, []byte("Operazioni registrate"), []byte("Operazioni Registrate"), 1)
	if bytes.Equal(bad, raw) {
		// the summary is quoted-printable; change the JSON attachment instead
		t.Fatal("summary text not found in the extract")
	}
	badFile := filepath.Join(f.dir, "bad.eml")
	os.WriteFile(badFile, bad, 0o600)
	if err := exec.Command(openssl, "smime", "-verify", "-in", badFile, "-CAfile", f.root, "-purpose", "any", "-out", os.DevNull).Run(); err == nil {
		t.Error("openssl verified a changed extract")
	}
	if code, _, _ := f.run("log", "export", "--mailbox", mario); code != 2 {
		t.Errorf("export without --date: exit %d", code)
	}
}

func decodeB64(b []byte) ([]byte, error) {
	clean := strings.NewReplacer("\r", "", "\n", "").Replace(string(b))
	return base64.StdEncoding.DecodeString(clean)
}
