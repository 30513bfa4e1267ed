package logarchive_test

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/logarchive"
	"github.com/pecgo/pec/logarchive/tsatest"
)

// jsonOf is v as JSON, to compare values whose times may carry different
// but equivalent locations.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("%+v: %v", v, err)
	}
	return string(b)
}

// encodeLines writes an archive's JSON lines as Archiver.Write does.
func encodeLines(t *testing.T, h logarchive.Header, rows []logarchive.Row, tr logarchive.Trailer) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, v := range append(append([]any{h}, anys(rows)...), tr) {
		if err := enc.Encode(v); err != nil {
			t.Fatalf("%+v: %v", v, err)
		}
	}
	return b.Bytes()
}

func anys(rows []logarchive.Row) []any {
	out := make([]any, len(rows))
	for i := range rows {
		out[i] = rows[i]
	}
	return out
}

// checkArchive checks what the content checks promise of an archive they
// accepted: the header is of day, each row hashes to its hash, falls in
// the day and comes after the previous one, consecutive ids link, and the
// trailer counts the rows, names the first and last and lists every gap.
func checkArchive(t *testing.T, rep *logarchive.Report, rows []logarchive.Row, day string) {
	t.Helper()
	h, tr := rep.Header, rep.Trailer
	if h.Format != logarchive.Format || h.Day != day || tr.End != logarchive.Format || tr.Rows != len(rows) {
		t.Fatalf("accepted header %+v, trailer %+v with %d rows for day %s", h, tr, len(rows), day)
	}
	gaps := 0
	for i, r := range rows {
		e, err := r.Event()
		if err != nil {
			t.Fatalf("row %d accepted, but Event: %v", r.ID, err)
		}
		ph, _ := hex.DecodeString(r.PrevHash)
		if hex.EncodeToString(e.ChainHash(ph)) != r.Hash {
			t.Fatalf("row %d accepted with a hash that is not its own", r.ID)
		}
		if e.Time.Before(h.From) || !e.Time.Before(h.To) {
			t.Fatalf("row %d at %s accepted outside %s..%s", r.ID, e.Time, h.From, h.To)
		}
		if i == 0 {
			continue
		}
		p := rows[i-1]
		switch {
		case r.ID <= p.ID:
			t.Fatalf("row %d accepted after row %d", r.ID, p.ID)
		case r.ID == p.ID+1 && r.PrevHash != p.Hash:
			t.Fatalf("row %d accepted without linking to row %d", r.ID, p.ID)
		case r.ID != p.ID+1:
			gaps++
		}
	}
	if len(tr.Gaps) != gaps {
		t.Fatalf("trailer lists %d gaps, the rows have %d", len(tr.Gaps), gaps)
	}
	if len(rows) > 0 && (tr.FirstID != rows[0].ID || tr.FirstPrevHash != rows[0].PrevHash ||
		tr.LastID != rows[len(rows)-1].ID || tr.LastHash != rows[len(rows)-1].Hash) {
		t.Fatalf("trailer %+v does not name the first and last rows", tr)
	}
}

// FuzzArchiveLines fuzzes the reader of a daily archive (what Verify
// checks once the signature is good and the file is gunzipped): it never
// panics; an archive it accepts satisfies checkArchive; an error from the
// row callback stops it and is returned; and the rows it read, written
// again as Archiver.Write writes them, are accepted again with the same
// header, rows and trailer. The seeds are the archives the tests write
// (a gap, a latin-1 subject in "binary", the 23 and 25 hour days in
// Europe/Rome, an empty day).
func FuzzArchiveLines(f *testing.F) {
	e := newEnv(f)
	dir := f.TempDir()
	for _, day := range []string{"2024-03-01", "2024-03-02", "2024-03-31", "2024-10-27", "2024-06-01"} {
		if _, err := e.ar.Write(dir, day, false); err != nil {
			f.Fatal(err)
		}
		gz, err := os.ReadFile(logarchive.PathsFor(dir, day).Data)
		if err != nil {
			f.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			f.Fatal(err)
		}
		lines, err := io.ReadAll(zr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(lines, day)
	}
	f.Add([]byte(`{"format":"pec-log-archive/1","day":"2024-06-01"}`+"\n"), "2024-06-01")
	f.Add([]byte{}, "2024-06-01")

	f.Fuzz(func(t *testing.T, lines []byte, day string) {
		var rows []logarchive.Row
		rep, err := logarchive.CheckLines(lines, day, func(r logarchive.Row) error {
			rows = append(rows, r)
			return nil
		})
		if err != nil {
			return
		}
		checkArchive(t, rep, rows, day)

		if len(rows) > 0 {
			stop := errors.New("stop")
			if _, err := logarchive.CheckLines(lines, day, func(logarchive.Row) error { return stop }); !errors.Is(err, stop) {
				t.Fatalf("the callback's error was not returned: %v", err)
			}
		}

		again := encodeLines(t, rep.Header, rows, rep.Trailer)
		var rows2 []logarchive.Row
		rep2, err := logarchive.CheckLines(again, day, func(r logarchive.Row) error {
			rows2 = append(rows2, r)
			return nil
		})
		if err != nil {
			t.Fatalf("the accepted archive, written again, is refused: %v\n%s", err, again)
		}
		if jsonOf(t, rep.Header) != jsonOf(t, rep2.Header) || jsonOf(t, rep.Trailer) != jsonOf(t, rep2.Trailer) || jsonOf(t, rows) != jsonOf(t, rows2) {
			t.Fatalf("written again, the archive reads differently:\n%s\n----\n%s", lines, again)
		}
	})
}

// FuzzCheckTimestamp fuzzes the RFC 3161 reply parser with the data the
// time-stamp should cover: it never panics; a warning never comes with an
// error; a time-stamp comes with an error only when its imprint is not
// the data's hash; an accepted reply is granted, names a supported hash
// whose value over data is its imprint, carries a serial and a policy, its
// signer is one of its certificates, and a reply whose TSA chain was not
// checked says so. The seeds are replies of the fake TSA (SHA-256 and
// SHA-512 imprints, with and without certificates, a refusal, an imprint
// of other data).
func FuzzCheckTimestamp(f *testing.F) {
	pki := testpki.New("pec.example.test")
	roots := pki.Pool().Pool()
	data := []byte("the signature of a daily archive")
	reply := func(h crypto.Hash, certReq bool, setup func(a *tsatest.TSA)) []byte {
		a := tsatest.New(pki)
		a.Now = func() time.Time { return time.Date(2024, 3, 3, 0, 5, 0, 0, time.UTC) }
		setup(a)
		d := h.New()
		d.Write(data)
		req, err := logarchive.TimestampRequest(h, d.Sum(nil), big.NewInt(42), certReq)
		if err != nil {
			f.Fatal(err)
		}
		r, err := a.Reply(req)
		if err != nil {
			f.Fatal(err)
		}
		return r
	}
	none := func(*tsatest.TSA) {}
	f.Add(reply(crypto.SHA256, true, none), data)
	f.Add(reply(crypto.SHA512, true, none), data)
	f.Add(reply(crypto.SHA256, false, none), data)
	f.Add(reply(crypto.SHA256, true, func(a *tsatest.TSA) { a.Status, a.FailBit, a.Text = 2, 14, "time not available" }), data)
	f.Add(reply(crypto.SHA256, true, func(a *tsatest.TSA) { d := sha256.Sum256([]byte("other")); a.Digest = d[:] }), data)

	f.Fuzz(func(t *testing.T, reply, data []byte) {
		ts, warn, err := logarchive.CheckTimestamp(reply, data, roots)
		if err != nil {
			if warn != nil {
				t.Fatalf("warnings %q with error %v", warn, err)
			}
			if ts != nil && ts.Hash.Available() {
				d := ts.Hash.New()
				d.Write(data)
				if bytes.Equal(d.Sum(nil), ts.Digest) {
					t.Fatalf("a time-stamp over the data refused: %v", err)
				}
			}
			return
		}
		if ts == nil {
			t.Fatal("no time-stamp and no error")
		}
		switch ts.Hash {
		case crypto.SHA256, crypto.SHA384, crypto.SHA512:
		default:
			t.Fatalf("accepted imprint hash %v", ts.Hash)
		}
		d := ts.Hash.New()
		d.Write(data)
		if !bytes.Equal(d.Sum(nil), ts.Digest) {
			t.Fatal("accepted a time-stamp whose imprint is not the data's hash")
		}
		if ts.Status != 0 && ts.Status != 1 {
			t.Fatalf("accepted status %d", ts.Status)
		}
		if ts.Serial == nil || len(ts.Policy) == 0 {
			t.Fatalf("accepted a token without serial or policy: %+v", ts)
		}
		if ts.Signer != nil && !slices.ContainsFunc(ts.Certificates, ts.Signer.Equal) {
			t.Fatal("the signer is not one of the token's certificates")
		}
		if ts.Signer == nil && len(warn) == 0 {
			t.Fatal("the TSA chain was not checked and no warning says so")
		}
	})
}
