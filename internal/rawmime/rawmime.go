// Package rawmime splits RFC 5322 / MIME entities into header fields and
// body, and multipart bodies into their parts, keeping every byte of each
// part as it was: signatures are computed over those exact bytes, so the
// parser must never re-encode or normalise anything but line ends.
package rawmime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"strings"
)

// Field is one header field as it appeared, with its raw bytes (name,
// colon, value and folded continuation lines, without the final CRLF).
type Field struct {
	Name  string
	Value string // unfolded, leading and trailing blanks trimmed
	Raw   []byte
}

// Header is an ordered list of header fields.
type Header []Field

// Get returns the value of the first field named name (case-insensitive,
// RFC 5322 §1.2.2), or "".
func (h Header) Get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// Has reports whether a field named name is present.
func (h Header) Has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// Values returns the values of every field named name.
func (h Header) Values(name string) []string {
	var v []string
	for _, f := range h {
		if strings.EqualFold(f.Name, name) {
			v = append(v, f.Value)
		}
	}
	return v
}

// ErrNoHeader is returned for input with no header/body separation.
var ErrNoHeader = errors.New("rawmime: no header section (want header fields, an empty line, then the body)")

// CRLF returns b with every line ending as CRLF (PEC-SPEC §6.7: messages
// arrive with LF or CRLF; S/MIME canonical form is CRLF, RFC 5751 §3.1.1).
// Input that is already canonical is returned unchanged, without copying.
func CRLF(b []byte) []byte {
	lf := bytes.Count(b, []byte("\n"))
	if lf == bytes.Count(b, []byte("\r\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+lf)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// Split parses the header section of entity (CRLF line ends) and returns
// it with the body that follows the empty line. An entity with no empty
// line is all header when every line looks like a field, else an error.
func Split(entity []byte) (Header, []byte, error) {
	var h Header
	rest := entity
	for len(rest) > 0 {
		if bytes.HasPrefix(rest, []byte("\r\n")) {
			return h, rest[2:], nil
		}
		end := lineEnd(rest)
		// extend over folded continuation lines (RFC 5322 §2.2.3)
		for end < len(rest) && (rest[end] == ' ' || rest[end] == '\t') {
			end += lineEnd(rest[end:])
		}
		raw := bytes.TrimRight(rest[:end], "\r\n")
		colon := bytes.IndexByte(raw, ':')
		if colon <= 0 {
			if len(h) == 0 {
				return nil, nil, ErrNoHeader
			}
			return nil, nil, fmt.Errorf("rawmime: malformed header line %q (no field name and colon)", truncate(raw))
		}
		name := string(bytes.TrimSpace(raw[:colon]))
		if name == "" { // only blanks before the colon
			return nil, nil, fmt.Errorf("rawmime: malformed header line %q (empty field name)", truncate(raw))
		}
		if strings.ContainsAny(name, " \t") {
			return nil, nil, fmt.Errorf("rawmime: malformed header field name %q", truncate(raw[:colon]))
		}
		val := unfold(raw[colon+1:])
		h = append(h, Field{Name: name, Value: val, Raw: raw})
		rest = rest[end:]
	}
	return h, nil, nil
}

func lineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return len(b)
	}
	return i + 1
}

func unfold(v []byte) string {
	s := strings.NewReplacer("\r\n", "", "\n", "").Replace(string(v))
	return strings.TrimSpace(s)
}

func truncate(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}

// MediaType parses a Content-Type value. It is lenient with the
// irregularities of real mail (unquoted parameters with odd characters,
// trailing semicolons): when the strict parser fails it falls back to a
// simple split on ';' and '='. An empty value is text/plain (RFC 2045 §5.2).
func MediaType(v string) (string, map[string]string) {
	if strings.TrimSpace(v) == "" {
		return "text/plain", map[string]string{}
	}
	mt, params, err := mime.ParseMediaType(v)
	if err == nil {
		return strings.ToLower(mt), params
	}
	parts := strings.Split(v, ";")
	params = map[string]string{}
	for _, p := range parts[1:] {
		k, val, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(val), `"`)
	}
	return strings.ToLower(strings.TrimSpace(parts[0])), params
}

// Parts splits a multipart body (CRLF line ends) at boundary and returns
// each part's bytes exactly as they appear between the delimiter lines: the
// CRLF that precedes a delimiter belongs to the delimiter (RFC 2046
// §5.1.1), so a part never ends with it (nor with the bare LF that stands
// for it in input that was not canonicalised). The preamble and epilogue are
// dropped. A body without a closing delimiter is an error.
func Parts(body []byte, boundary string) ([][]byte, error) {
	if boundary == "" {
		return nil, errors.New("rawmime: multipart without boundary parameter")
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1
	pos := 0
	for pos <= len(body) {
		// a delimiter is at the start of the body or after CRLF
		lineStart := pos
		end := lineEnd(body[pos:]) + pos
		line := bytes.TrimRight(body[lineStart:end], "\r\n")
		if bytes.HasPrefix(line, delim) {
			after := bytes.TrimRight(line[len(delim):], " \t")
			closing := bytes.Equal(after, []byte("--"))
			if closing || len(after) == 0 {
				if start >= 0 {
					// the line end before the delimiter belongs to it: CRLF,
					// or a bare LF when the caller did not canonicalise
					stop := lineStart
					if stop-2 >= start && body[stop-2] == '\r' && body[stop-1] == '\n' {
						stop -= 2
					} else if stop-1 >= start && body[stop-1] == '\n' {
						stop--
					}
					parts = append(parts, body[start:stop])
				}
				if closing {
					return parts, nil
				}
				start = end
			}
		}
		if end == pos { // no more input
			break
		}
		pos = end
	}
	if start < 0 {
		return nil, fmt.Errorf("rawmime: boundary %q not found in the multipart body", boundary)
	}
	return nil, fmt.Errorf("rawmime: multipart body with boundary %q has no closing delimiter", boundary)
}

// DecodeBase64 decodes a base64 body as mail writers produce it: lines of
// any length, blanks ignored, padding present or dropped.
func DecodeBase64(b []byte) ([]byte, error) {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, b)
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	if err != nil {
		// unpadded input can decode to more bytes than StdEncoding.DecodedLen allowed for
		raw := bytes.TrimRight(clean, "=")
		out = make([]byte, base64.RawStdEncoding.DecodedLen(len(raw)))
		n, err = base64.RawStdEncoding.Decode(out, raw)
		if err != nil {
			return nil, fmt.Errorf("bad base64: %v", err)
		}
	}
	return out[:n], nil
}
