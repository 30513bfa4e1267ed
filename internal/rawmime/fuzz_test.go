package rawmime_test

import (
	"bytes"
	"testing"
	"unsafe"

	"github.com/pecgo/pec/internal/rawmime"
)

// within reports whether inner is a sub-slice of outer (shares its
// backing array, inside its length) and returns its offset.
func within(outer, inner []byte) (int, bool) {
	if len(inner) == 0 {
		return 0, true // an empty slice carries no bytes; its position does not matter
	}
	o := uintptr(unsafe.Pointer(unsafe.SliceData(outer)))
	i := uintptr(unsafe.Pointer(unsafe.SliceData(inner)))
	if i < o || i+uintptr(len(inner)) > o+uintptr(len(outer)) {
		return 0, false
	}
	return int(i - o), true
}

// FuzzSplit: Split never panics, every field's Raw and the body are
// sub-slices of the input (nothing is copied or rewritten), in order, and
// the body is what follows the first empty line.
func FuzzSplit(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nSubject: x\r\n\tfolded\r\n\r\nbody\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed;\r\n boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, entity []byte) {
		h, body, err := rawmime.Split(entity)
		if err != nil {
			if h != nil || body != nil {
				t.Fatalf("error %v with header %d fields, body %d bytes", err, len(h), len(body))
			}
			return
		}
		next := 0
		for _, fl := range h {
			off, ok := within(entity, fl.Raw)
			if !ok {
				t.Fatalf("field %q: Raw is not a sub-slice of the input", fl.Name)
			}
			if off < next {
				t.Fatalf("field %q at %d overlaps the previous one (ends at %d)", fl.Name, off, next)
			}
			next = off + len(fl.Raw)
			if fl.Name == "" || !bytes.Contains(fl.Raw, []byte(fl.Name)) {
				t.Fatalf("field name %q not in its raw bytes %q", fl.Name, fl.Raw)
			}
			if h.Get(fl.Name) != h.Values(fl.Name)[0] || !h.Has(fl.Name) {
				t.Fatalf("Get, Values and Has disagree on %q", fl.Name)
			}
		}
		if body != nil {
			off, ok := within(entity, body)
			if !ok || off+len(body) != len(entity) && len(body) > 0 {
				t.Fatalf("body is not the tail of the input (offset %d, ok %v)", off, ok)
			}
			if len(body) > 0 && !bytes.HasSuffix(entity[:off], []byte("\r\n")) {
				t.Fatalf("body does not follow an empty line")
			}
		}
	})
}

// FuzzParts: Parts never panics; the parts are sub-slices of the body, in
// order and not overlapping, and each non-empty part is followed in the
// body by CRLF (or the bare LF of input that was not canonicalised) and a
// delimiter line.
func FuzzParts(f *testing.F) {
	f.Add([]byte("preamble\r\n--b\r\nA\r\n--b\r\nB\r\n--b--\r\nepilogue"), "b")
	f.Add([]byte("--b\r\n\r\n--b--"), "b")
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		parts, err := rawmime.Parts(body, boundary)
		if err != nil {
			if parts != nil {
				t.Fatalf("error %v with %d parts", err, len(parts))
			}
			return
		}
		delim := []byte("--" + boundary)
		next := 0
		for i, p := range parts {
			off, ok := within(body, p)
			if !ok {
				t.Fatalf("part %d is not a sub-slice of the body", i)
			}
			if len(p) == 0 {
				continue
			}
			if off < next {
				t.Fatalf("part %d at %d overlaps the previous one (ends at %d)", i, off, next)
			}
			next = off + len(p)
			rest := body[next:]
			if !bytes.HasPrefix(rest, append([]byte("\r\n"), delim...)) && !bytes.HasPrefix(rest, append([]byte("\n"), delim...)) {
				t.Fatalf("part %d is not followed by a line end and a delimiter: %q", i, rest[:min(len(rest), len(delim)+2)])
			}
		}
	})
}
