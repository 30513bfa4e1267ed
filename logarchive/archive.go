// Package logarchive seals the PEC event log one day at a time
// (PROVIDER-REQUIREMENTS "Logs": one compressed, signed and timestamped
// archive per day; RFC 6109 §2.3).
//
// For a calendar day in the provider's time zone it writes, into one
// directory:
//
//	pec-log-YYYY-MM-DD.jsonl.gz       the day's rows, gzip-compressed JSON lines
//	pec-log-YYYY-MM-DD.jsonl.gz.p7s   a detached CMS signature (DER) of that file
//	                                  made with the provider key
//	pec-log-YYYY-MM-DD.jsonl.gz.tsq   with a TSA: the RFC 3161 request over the .p7s
//	pec-log-YYYY-MM-DD.jsonl.gz.tsr   with a TSA: the TSA's reply (TimeStampResp)
//
// The JSON lines are a Header (day, zone, the instants it covers), one
// Row per event whose time falls in that day (never a row of another day),
// in log order with its prev_hash and hash, and a Trailer (row count, the
// first row's prev_hash and the last row's hash as the store holds them,
// the places where rows of another day sit between two of the day's rows,
// and the log head when the archive was made). Verify checks the signature,
// recomputes every row's hash and the links between consecutive rows, and
// checks the day's bounds, so an archive keeps its value after the rows are
// purged from the store.
//
// Check a signature with openssl:
//
//	openssl cms -verify -binary -inform DER -in F.jsonl.gz.p7s -content F.jsonl.gz -CAfile root.pem -purpose any
package logarchive

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pecgo/pec/internal/atomicfile"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

// Format names this archive layout; it is the Header's first field.
const Format = "pec-log-archive/1"

// Header is the first line of an archive.
type Header struct {
	Format   string    `json:"format"`
	Day      string    `json:"day"`       // YYYY-MM-DD in TimeZone
	TimeZone string    `json:"time_zone"` // IANA name, e.g. Europe/Rome
	From     time.Time `json:"from"`      // start of the day, inclusive (UTC)
	To       time.Time `json:"to"`        // start of the next day, exclusive (UTC)
	Provider string    `json:"provider"`
	Created  time.Time `json:"created"`
}

// Gap says that the log rows between After and Next (exclusive) belong to
// another day: their clocks were out of order. The link between the two
// rows cannot be checked from the archive alone.
type Gap struct {
	After int64 `json:"after"`
	Next  int64 `json:"next"`
}

// Trailer is the last line of an archive.
type Trailer struct {
	End           string `json:"end"` // Format again: the archive is complete
	Rows          int    `json:"rows"`
	FirstID       int64  `json:"first_id"`        // 0 when Rows is 0
	LastID        int64  `json:"last_id"`         // 0 when Rows is 0
	FirstPrevHash string `json:"first_prev_hash"` // hex, as stored: the hash of the row before the first
	LastHash      string `json:"last_hash"`       // hex, as stored
	Gaps          []Gap  `json:"gaps"`
	// The log head when the archive was made: the signature seals it too.
	LogHeadID   int64  `json:"log_head_id"`
	LogHeadHash string `json:"log_head_hash"`
}

// Files are the paths of one day's archive.
type Files struct {
	Data, Signature, Query, Reply string
}

// PathsFor returns the file names of day's archive in dir.
func PathsFor(dir, day string) Files {
	d := filepath.Join(dir, "pec-log-"+day+".jsonl.gz")
	return Files{Data: d, Signature: d + ".p7s", Query: d + ".tsq", Reply: d + ".tsr"}
}

// DayRange returns the first instant of day (YYYY-MM-DD) in loc and the
// first instant of the next day. A day is 24 hours long except when the
// clocks change (23 or 25 hours in Europe/Rome).
func DayRange(day string, loc *time.Location) (from, to time.Time, err error) {
	d, err := time.ParseInLocation("2006-01-02", day, loc)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("day %q: want YYYY-MM-DD", day)
	}
	return d, time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc), nil
}

// Errors of Write.
var (
	ErrExists     = errors.New("logarchive: the archive of that day already exists")
	ErrDayNotOver = errors.New("logarchive: the day is not over yet")
)

// Archiver writes daily archives.
type Archiver struct {
	Store    store.Log
	Signer   *smime.Signer
	Location *time.Location   // the provider's zone; nil means UTC
	Provider string           // provider name, recorded in the header
	Now      func() time.Time // nil: time.Now
}

func (a *Archiver) now() time.Time {
	if a.Now == nil {
		return time.Now()
	}
	return a.Now()
}

// Result describes a written archive.
type Result struct {
	Files
	Header  Header
	Trailer Trailer
}

// Write archives day into dir (created if missing) and signs it. It
// refuses a day that is not over yet (ErrDayNotOver), and, unless
// overwrite, a day already archived (ErrExists). Files are written under
// temporary names and renamed, the signature last; an overwrite removes a
// stale timestamp.
func (a *Archiver) Write(dir, day string, overwrite bool) (*Result, error) {
	if a.Store == nil || a.Signer == nil {
		return nil, errors.New("logarchive: the archiver needs a store and a signer")
	}
	loc := a.Location
	if loc == nil {
		loc = time.UTC
	}
	from, to, err := DayRange(day, loc)
	if err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	now := a.now()
	if now.Before(to) {
		return nil, fmt.Errorf("%w: %s ends at %s in %s", ErrDayNotOver, day, to.Format(time.RFC3339), loc)
	}
	files := PathsFor(dir, day)
	if !overwrite {
		for _, f := range []string{files.Data, files.Signature} {
			if _, err := os.Stat(f); err == nil {
				return nil, fmt.Errorf("%w: %s", ErrExists, f)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}

	h := Header{Format: Format, Day: day, TimeZone: loc.String(), From: from.UTC(), To: to.UTC(), Provider: a.Provider, Created: now.UTC()}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.Name = filepath.Base(files.Data[:len(files.Data)-len(".gz")])
	zw.ModTime = now
	enc := json.NewEncoder(zw)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(h); err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	tr := Trailer{End: Format, Gaps: []Gap{}}
	var last int64
	err = a.Store.EachLinkedEvent(from, to, func(le store.LinkedEvent) error {
		if tr.Rows == 0 {
			tr.FirstID, tr.FirstPrevHash = le.ID, hex.EncodeToString(le.PrevHash)
		} else if le.ID != last+1 {
			tr.Gaps = append(tr.Gaps, Gap{After: last, Next: le.ID})
		}
		tr.Rows++
		last = le.ID
		tr.LastID, tr.LastHash = le.ID, hex.EncodeToString(le.Hash)
		return enc.Encode(linkedRowOf(le))
	})
	if err != nil {
		return nil, fmt.Errorf("logarchive: reading the log: %w", err)
	}
	headID, headHash, err := a.Store.LogHead()
	if err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	tr.LogHeadID, tr.LogHeadHash = headID, hex.EncodeToString(headHash)
	if err := enc.Encode(tr); err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	sig, err := a.Signer.SignDetachedDER(buf.Bytes(), now)
	if err != nil {
		return nil, fmt.Errorf("logarchive: signing: %w", err)
	}
	if overwrite {
		// a timestamp of the old signature would not match the new one
		for _, f := range []string{files.Query, files.Reply} {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("logarchive: %w", err)
			}
		}
	}
	if err := writeAtomic(files.Data, buf.Bytes()); err != nil {
		return nil, err
	}
	if err := writeAtomic(files.Signature, sig); err != nil {
		return nil, err
	}
	return &Result{Files: files, Header: h, Trailer: tr}, nil
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data, 0o640, nil); err != nil {
		return fmt.Errorf("logarchive: writing %s: %w", path, err)
	}
	return nil
}

// Report is what Verify found.
type Report struct {
	Files
	Header      Header
	Trailer     Trailer
	Signer      *x509.Certificate
	SigningTime time.Time
	// Timestamp is the verified RFC 3161 token over the signature, nil
	// when the archive has no .tsr.
	Timestamp *TimestampInfo
	// Warnings are findings that do not make the archive invalid (e.g. a
	// TSA certificate that does not chain to the given roots).
	Warnings []string
}

// Verify checks day's archive in dir: the CMS signature against roots,
// then every line: the header's day and bounds, each row inside the day,
// each row's hash, the links between consecutive rows, and the trailer's
// count, first prev_hash, last hash and gaps. When a .tsr is present it is
// checked too (status, token signature, message imprint = hash of the
// .p7s). The first problem found is returned as the error.
func Verify(dir, day string, roots *smime.Roots) (*Report, error) {
	return VerifyEach(dir, day, roots, nil)
}

// VerifyEach is Verify calling fn (if not nil) with every row, after the
// row's own hash has been checked. An error from fn stops the check.
func VerifyEach(dir, day string, roots *smime.Roots, fn func(Row) error) (*Report, error) {
	files := PathsFor(dir, day)
	rep := &Report{Files: files}
	data, err := os.ReadFile(files.Data)
	if err != nil {
		return nil, fmt.Errorf("logarchive: %w", err)
	}
	sig, err := os.ReadFile(files.Signature)
	if err != nil {
		return nil, fmt.Errorf("logarchive: no signature for %s: %w", files.Data, err)
	}
	res, err := smime.VerifyDetached(data, sig, roots)
	if err != nil {
		return nil, fmt.Errorf("logarchive: %s: %w", files.Signature, err)
	}
	rep.Signer, rep.SigningTime = res.Signer, res.SigningTime
	if res.SignatureErr != nil {
		return rep, fmt.Errorf("logarchive: %s: the signature does not match the archive (the file was changed): %w", files.Data, res.SignatureErr)
	}
	if res.ChainErr != nil {
		return rep, fmt.Errorf("logarchive: %s: %w", files.Signature, res.ChainErr)
	}
	if err := checkContent(rep, data, day, fn); err != nil {
		return rep, fmt.Errorf("logarchive: %s: %w", files.Data, err)
	}
	if reply, err := os.ReadFile(files.Reply); err == nil {
		ts, warn, err := checkReply(reply, sig, roots.Pool())
		if err != nil {
			return rep, fmt.Errorf("logarchive: %s: %w", files.Reply, err)
		}
		rep.Timestamp = ts
		rep.Warnings = append(rep.Warnings, warn...)
		if q, err := os.ReadFile(files.Query); err == nil {
			if n, err := requestNonce(q); err == nil && n != nil && (ts.Nonce == nil || n.Cmp(ts.Nonce) != 0) {
				return rep, fmt.Errorf("logarchive: %s: the reply's nonce does not match the request %s", files.Reply, files.Query)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("logarchive: %w", err)
	}
	return rep, nil
}

// maxLine bounds one JSON line (a row with a very long subject or many
// recipients still fits).
const maxLine = 64 << 20

// checkContent checks an archive's data file (gzip) into rep: see checkLines.
func checkContent(rep *Report, data []byte, day string, fn func(Row) error) error {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not a gzip file: %w", err)
	}
	return checkLines(rep, zr, day, fn)
}

// checkLines reads an archive's JSON lines from in into rep and checks them:
// the header's day and bounds, each row inside the day, each row's hash,
// the links between consecutive rows, and the trailer. fn, if not nil, is
// called with every row after its hash has been checked.
func checkLines(rep *Report, in io.Reader, day string, fn func(Row) error) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	line := 0
	next := func() ([]byte, bool) {
		if !sc.Scan() {
			return nil, false
		}
		line++
		// copied: the scanner reuses its buffer and we look one line ahead
		return bytes.Clone(sc.Bytes()), true
	}
	first, ok := next()
	if !ok {
		if err := sc.Err(); err != nil {
			return err
		}
		return errors.New("empty archive")
	}
	h := &rep.Header
	if err := strictUnmarshal(first, h); err != nil || h.Format != Format {
		return fmt.Errorf("line 1 is not a %s header", Format)
	}
	if h.Day != day {
		return fmt.Errorf("the archive is of day %s, not %s", h.Day, day)
	}
	loc, err := time.LoadLocation(h.TimeZone)
	if err != nil {
		return fmt.Errorf("header: time zone %q: %v", h.TimeZone, err)
	}
	from, to, err := DayRange(day, loc)
	if err != nil {
		return err
	}
	if !h.From.Equal(from) || !h.To.Equal(to) {
		return fmt.Errorf("header: bounds %s..%s are not day %s in %s", h.From.Format(time.RFC3339), h.To.Format(time.RFC3339), day, h.TimeZone)
	}

	var (
		rows      int
		prev      Row
		firstPrev string
		firstID   int64
		gaps      []Gap
	)
	cur, ok := next()
	for ok {
		nxt, more := next()
		if !more { // cur is the last line: the trailer
			break
		}
		var r Row
		if err := strictUnmarshal(cur, &r); err != nil {
			return fmt.Errorf("line %d: %v", line-1, err)
		}
		e, err := r.Event()
		if err != nil {
			return fmt.Errorf("line %d: %v", line-1, err)
		}
		if e.Time.Before(from) || !e.Time.Before(to) {
			return fmt.Errorf("line %d: row %d at %s is not of day %s in %s", line-1, r.ID, e.Time.Format(time.RFC3339Nano), day, h.TimeZone)
		}
		ph, err1 := hex.DecodeString(r.PrevHash)
		hh, err2 := hex.DecodeString(r.Hash)
		if err1 != nil || err2 != nil || len(ph) != 32 || len(hh) != 32 {
			return fmt.Errorf("line %d: row %d: prev_hash and hash must be 64 hex digits", line-1, r.ID)
		}
		if !bytes.Equal(e.ChainHash(ph), hh) {
			return fmt.Errorf("line %d: row %d was changed: its contents do not match its hash", line-1, r.ID)
		}
		if rows == 0 {
			firstPrev, firstID = r.PrevHash, r.ID
		} else {
			switch {
			case r.ID <= prev.ID:
				return fmt.Errorf("line %d: row %d after row %d: rows out of order", line-1, r.ID, prev.ID)
			case r.ID == prev.ID+1:
				if r.PrevHash != prev.Hash {
					return fmt.Errorf("line %d: row %d does not link to row %d", line-1, r.ID, prev.ID)
				}
			default:
				gaps = append(gaps, Gap{After: prev.ID, Next: r.ID})
			}
		}
		if fn != nil {
			if err := fn(r); err != nil {
				return err
			}
		}
		rows++
		prev = r
		cur, ok = nxt, more
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	if line < 2 {
		return errors.New("no trailer: the archive is truncated")
	}
	t := &rep.Trailer
	if err := strictUnmarshal(cur, t); err != nil || t.End != Format {
		return fmt.Errorf("line %d: no trailer: the archive is truncated", line)
	}
	if t.Rows != rows {
		return fmt.Errorf("trailer: %d rows, the archive holds %d", t.Rows, rows)
	}
	if rows > 0 {
		if t.FirstID != firstID || t.FirstPrevHash != firstPrev || t.LastID != prev.ID || t.LastHash != prev.Hash {
			return errors.New("trailer: first id, first prev_hash, last id or last hash do not match the rows")
		}
	}
	if rows == 0 && (t.FirstID != 0 || t.LastID != 0 || t.FirstPrevHash != "" || t.LastHash != "") {
		return errors.New("trailer: names rows the archive does not hold")
	}
	if len(gaps) != len(t.Gaps) {
		return fmt.Errorf("trailer: %d gaps listed, the rows have %d", len(t.Gaps), len(gaps))
	}
	for i := range gaps {
		if gaps[i] != t.Gaps[i] {
			return fmt.Errorf("trailer: gap %d is %d..%d, the rows have %d..%d", i, t.Gaps[i].After, t.Gaps[i].Next, gaps[i].After, gaps[i].Next)
		}
	}
	if t.LogHeadID < t.LastID {
		return fmt.Errorf("trailer: log head %d is before the last row %d", t.LogHeadID, t.LastID)
	}
	return nil
}

// strictUnmarshal decodes one JSON object, refusing unknown fields.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
