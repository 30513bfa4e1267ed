package logarchive_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"github.com/pecgo/pec/store/sqlite"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

type env struct {
	dir    string
	st     *sqlite.Store
	pki    *testpki.PKI
	signer *smime.Signer
	ar     *logarchive.Archiver
	all    []store.Event
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func ev(t string, typ store.EventType, subject string, rcpts ...string) store.Event {
	return store.Event{Time: at(t), Point: "access", Type: typ, PECID: "opec-" + t + "@pec.example.test",
		MsgID: "<" + t + "@pec.example.test>", Sender: "mario.rossi@pec.example.test", Recipients: rcpts,
		Subject: subject, Related: []string{"<r-" + t + "@pec.example.test>"}, Provider: "Example PEC S.p.A."}
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dir: t.TempDir()}
	var err error
	if e.st, err = sqlite.Open(filepath.Join(e.dir, "pec.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.st.Close() })
	e.pki = testpki.New("pec.example.test")
	p := e.pki.Issue("Example PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	e.signer = &smime.Signer{Key: p.Key, Cert: p.Cert, Chain: p.Chain}
	e.ar = &logarchive.Archiver{Store: e.st, Signer: e.signer, Location: build.Rome, Provider: "Example PEC S.p.A."}
	evs := []store.Event{
		ev("2024-03-01T22:59:59.999999999Z", "accettazione", "last of the 1st", "anna@pec.other.test"),
		ev("2024-03-01T23:00:00Z", "accettazione", "first of the 2nd", "anna@pec.other.test"),
		ev("2024-03-02T08:00:00Z", "posta-certificata", "Fattura n. 1 – €", "anna@pec.other.test", "luigi@pec.other.test"),
		ev("2024-03-02T09:00:00Z", "accettazione", "subject with a raw byte \xe8 (latin-1)", "anna@pec.other.test"),
		ev("2024-03-02T23:00:00Z", "accettazione", "first of the 3rd"),
		ev("2024-03-02T12:00:00Z", "accettazione", "the 2nd, written late"),
		// Rome's clocks go forward on 2024-03-31 (23 h) and back on 2024-10-27 (25 h)
		ev("2024-03-30T22:59:00Z", "accettazione", "30th"),
		ev("2024-03-30T23:00:00Z", "accettazione", "31st, first"),
		ev("2024-03-31T21:59:00Z", "accettazione", "31st, last"),
		ev("2024-03-31T22:00:00Z", "accettazione", "1st of April"),
		ev("2024-10-26T22:00:00Z", "accettazione", "27th, first"),
		ev("2024-10-27T22:59:00Z", "accettazione", "27th, last (25 h day)"),
		ev("2024-10-27T23:00:00Z", "accettazione", "28th"),
	}
	for _, x := range evs {
		if err := e.st.Commit(store.Txn{Events: []store.Event{x}}); err != nil {
			t.Fatal(err)
		}
	}
	if e.all, err = e.st.Events(store.Query{}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) idsOf(day string) []int64 {
	var out []int64
	for _, x := range e.all {
		if x.Time.In(build.Rome).Format("2006-01-02") == day {
			out = append(out, x.ID)
		}
	}
	return out
}

func TestDayRange(t *testing.T) {
	for day, hours := range map[string]float64{"2024-03-02": 24, "2024-03-31": 23, "2024-10-27": 25} {
		from, to, err := logarchive.DayRange(day, build.Rome)
		if err != nil || to.Sub(from).Hours() != hours || from.In(build.Rome).Format("2006-01-02 15:04") != day+" 00:00" {
			t.Errorf("%s: %v .. %v (%v), want %v hours", day, from, to, err, hours)
		}
	}
	if _, _, err := logarchive.DayRange("2024-02-30", build.Rome); err == nil {
		t.Error("2024-02-30 accepted")
	}
}

func TestWriteVerify(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "arch")
	for _, day := range []string{"2024-03-01", "2024-03-02", "2024-03-03", "2024-03-31", "2024-10-27", "2024-06-01"} {
		res, err := e.ar.Write(dir, day, false)
		if err != nil {
			t.Fatalf("%s: %v", day, err)
		}
		var got []int64
		var back []store.Event
		rep, err := logarchive.VerifyEach(dir, day, e.pki.Pool(), func(r logarchive.Row) error {
			got = append(got, r.ID)
			x, err := r.Event()
			back = append(back, x)
			return err
		})
		if err != nil {
			t.Fatalf("Verify %s: %v", day, err)
		}
		if !reflect.DeepEqual(got, e.idsOf(day)) {
			t.Errorf("%s: rows %v, want %v", day, got, e.idsOf(day))
		}
		// every row comes back byte for byte, raw bytes included
		for _, x := range back {
			if !reflect.DeepEqual(x, e.all[x.ID-1]) {
				t.Errorf("row %d: %+v, want %+v", x.ID, x, e.all[x.ID-1])
			}
		}
		if !reflect.DeepEqual(rep.Trailer, res.Trailer) {
			t.Errorf("%s: trailer %+v, written %+v", day, rep.Trailer, res.Trailer)
		}
		if rep.Signer == nil || rep.Signer.Subject.Organization[0] != "Example PEC S.p.A." || rep.Timestamp != nil {
			t.Errorf("%s: report %+v", day, rep)
		}
	}
	// the 2nd has a row of the 3rd between two of its rows
	rep, _ := logarchive.Verify(dir, "2024-03-02", e.pki.Pool())
	if len(rep.Trailer.Gaps) != 1 || rep.Trailer.Gaps[0] != (logarchive.Gap{After: 4, Next: 6}) {
		t.Errorf("gaps %+v", rep.Trailer.Gaps)
	}
	// an empty day is sealed too
	if rep, err := logarchive.Verify(dir, "2024-06-01", e.pki.Pool()); err != nil || rep.Trailer.Rows != 0 || rep.Trailer.LogHeadID != int64(len(e.all)) {
		t.Errorf("empty day: %+v, %v", rep, err)
	}

	if _, err := e.ar.Write(dir, "2024-03-02", false); !errors.Is(err, logarchive.ErrExists) {
		t.Errorf("rewrite: %v", err)
	}
	if _, err := e.ar.Write(dir, time.Now().In(build.Rome).Format("2006-01-02"), false); !errors.Is(err, logarchive.ErrDayNotOver) {
		t.Errorf("today: %v", err)
	}
	// another PKI's roots: the chain fails
	other := testpki.New("pec.example.test")
	if _, err := logarchive.Verify(dir, "2024-03-02", other.Pool()); err == nil || !strings.Contains(err.Error(), "chain") {
		t.Errorf("foreign roots: %v", err)
	}
	// the archive of one day is not the archive of another
	os.Rename(logarchive.PathsFor(dir, "2024-03-03").Data, filepath.Join(dir, "x"))
	os.Rename(logarchive.PathsFor(dir, "2024-03-03").Signature, filepath.Join(dir, "y"))
	os.Link(logarchive.PathsFor(dir, "2024-03-02").Data, logarchive.PathsFor(dir, "2024-03-03").Data)
	os.Link(logarchive.PathsFor(dir, "2024-03-02").Signature, logarchive.PathsFor(dir, "2024-03-03").Signature)
	if _, err := logarchive.Verify(dir, "2024-03-03", e.pki.Pool()); err == nil || !strings.Contains(err.Error(), "of day 2024-03-02, not 2024-03-03") {
		t.Errorf("renamed archive: %v", err)
	}
}

// resign rewrites the archive's lines with edit and signs the result with
// the provider key: what an insider with the key could do. The content
// checks must still catch the change.
func resign(t *testing.T, e *env, dir, day string, edit func(lines []string) []string) error {
	t.Helper()
	files := logarchive.PathsFor(dir, day)
	raw, err := os.ReadFile(files.Data)
	if err != nil {
		t.Fatal(err)
	}
	zr, _ := gzip.NewReader(bytes.NewReader(raw))
	var lines []string
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	lines = edit(lines)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	for _, l := range lines {
		zw.Write([]byte(l + "\n"))
	}
	zw.Close()
	sig, err := e.signer.SignDetachedDER(buf.Bytes(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(files.Data, buf.Bytes(), 0o640)
	os.WriteFile(files.Signature, sig, 0o640)
	_, err = logarchive.Verify(dir, day, e.pki.Pool())
	return err
}

func setField(t *testing.T, line, key string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	m[key] = v
	b, _ := json.Marshal(m)
	return string(b)
}

func TestVerifyContent(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name string
		edit func(l []string) []string
		want string
	}{
		{"unchanged", func(l []string) []string { return l }, ""},
		{"subject changed", func(l []string) []string {
			l[2] = setField(t, l[2], "subject", "altered")
			return l
		}, "was changed"},
		{"row removed", func(l []string) []string { return append(l[:2], l[3:]...) }, ""},
		{"row of another day", func(l []string) []string {
			l[1] = setField(t, l[1], "time", "2024-03-01T22:00:00Z")
			return l
		}, "is not of day 2024-03-02"},
		{"trailer dropped", func(l []string) []string { return l[:len(l)-1] }, "truncated"},
		{"header day changed", func(l []string) []string {
			l[0] = setField(t, l[0], "day", "2024-03-03")
			return l
		}, "of day 2024-03-03"},
		{"bounds widened", func(l []string) []string {
			l[0] = setField(t, l[0], "from", "2024-03-01T00:00:00Z")
			return l
		}, "bounds"},
		{"rows reordered", func(l []string) []string {
			l[1], l[2] = l[2], l[1]
			return l
		}, "out of order"},
		{"gap hidden", func(l []string) []string {
			l[len(l)-1] = setField(t, l[len(l)-1], "gaps", []any{})
			return l
		}, "gaps"},
		{"unknown field", func(l []string) []string {
			l[1] = setField(t, l[1], "note", "x")
			return l
		}, "unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(e.dir, strings.ReplaceAll(c.name, " ", "-"))
			if _, err := e.ar.Write(dir, "2024-03-02", false); err != nil {
				t.Fatal(err)
			}
			err := resign(t, e, dir, "2024-03-02", c.edit)
			switch {
			case c.name == "unchanged" && err != nil:
				t.Fatalf("re-encoded archive: %v", err)
			case c.name == "row removed" && (err == nil || !(strings.Contains(err.Error(), "rows") || strings.Contains(err.Error(), "link"))):
				t.Errorf("row removed: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestVerifyChangedByte(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.dir, "arch")
	if _, err := e.ar.Write(dir, "2024-03-02", false); err != nil {
		t.Fatal(err)
	}
	files := logarchive.PathsFor(dir, "2024-03-02")
	good, _ := os.ReadFile(files.Data)
	for _, i := range []int{0, 10, len(good) / 2, len(good) - 1} {
		bad := bytes.Clone(good)
		bad[i] ^= 0x80
		os.WriteFile(files.Data, bad, 0o640)
		if _, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err == nil {
			t.Errorf("byte %d changed: verified", i)
		}
	}
	os.WriteFile(files.Data, good, 0o640)
	sig, _ := os.ReadFile(files.Signature)
	sig[len(sig)-5] ^= 0x01
	os.WriteFile(files.Signature, sig, 0o640)
	if _, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err == nil {
		t.Error("changed signature verified")
	}
	os.Remove(files.Signature)
	if _, err := logarchive.Verify(dir, "2024-03-02", e.pki.Pool()); err == nil || !strings.Contains(err.Error(), "no signature") {
		t.Errorf("missing signature: %v", err)
	}
}
