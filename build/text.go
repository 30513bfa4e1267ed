package build

import (
	"bytes"
	"fmt"
	"html"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/pecgo/pec/internal/charset"
)

// textParts renders the human-readable text as multipart/alternative with
// text/plain and text/html (RFC 6109 §4.3.1, §4.3.2). The charset is
// ISO-8859-1 as the rules want; text holding characters outside it (such as
// "€" in a subject) is sent in UTF-8 instead of failing (PEC-SPEC §6.6
// rule 9). The HTML holds no links, images, styles or scripts.
func textParts(title string, paragraphs []string) part {
	plain := title + "\r\n\r\n" + strings.Join(paragraphs, "\r\n\r\n") + "\r\n"
	var h strings.Builder
	h.WriteString("<html><head><title>" + html.EscapeString(title) + "</title></head><body>\r\n")
	h.WriteString("<h3>" + html.EscapeString(title) + "</h3>\r\n")
	for _, p := range paragraphs {
		h.WriteString("<p>" + strings.ReplaceAll(html.EscapeString(p), "\r\n", "<br>\r\n") + "</p>\r\n")
	}
	h.WriteString("</body></html>\r\n")

	alt := boundary("alt")
	var b bytes.Buffer
	b.WriteString("This is a multi-part message in MIME format.\r\n")
	for _, x := range []struct{ typ, text string }{{"text/plain", plain}, {"text/html", h.String()}} {
		cs, data := encodeText(x.text)
		b.WriteString("\r\n--" + alt + "\r\n")
		b.WriteString("Content-Type: " + x.typ + "; charset=\"" + cs + "\"\r\n")
		b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
		b.WriteString("Content-Disposition: inline\r\n\r\n")
		b.Write(qp(data))
	}
	b.WriteString("\r\n--" + alt + "--")
	return part{header: []string{"Content-Type: multipart/alternative;\r\n\tboundary=\"" + alt + "\""}, body: [][]byte{b.Bytes()}}
}

// encodeText returns the ISO-8859-1 bytes of s when every character fits,
// else UTF-8.
func encodeText(s string) (string, []byte) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 0xFF {
			return "utf-8", []byte(s)
		}
		out = append(out, byte(r))
	}
	return "iso-8859-1", out
}

func qp(data []byte) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(data)
	w.Close()
	out := b.Bytes()
	// quotedprintable writes CRLF for hard line breaks already; make sure
	// the part ends without a dangling line so the delimiter's CRLF follows.
	return bytes.TrimRight(out, "\r\n")
}

var wordDecoder = &mime.WordDecoder{CharsetReader: charset.Reader}

// DecodeSubject decodes RFC 2047 encoded-words for daticert oggetto and the
// human text; on broken words it keeps the raw text (PEC-SPEC §6.7).
// Raw 8-bit bytes are taken as UTF-8 when valid, else as ISO-8859-1.
func DecodeSubject(raw string) string {
	s, err := wordDecoder.DecodeHeader(raw)
	if err != nil {
		s = raw
	}
	if !utf8.ValidString(s) {
		r := make([]rune, len(s))
		for i := 0; i < len(s); i++ {
			r[i] = rune(s[i])
		}
		s = string(r)
	}
	return s
}

// subjectHeader is prefix + the original Subject as received (RFC 2047
// words stay encoded; PEC-SPEC §6.6 rules 9–10: prefixes stack and are
// never stripped). Raw 8-bit text is encoded as RFC 2047 UTF-8 words so the
// header stays 7-bit. The field is folded so that no line is longer than
// 998 octets (RFC 5322 §2.1.1): the words we encode are folded at 78
// octets; the original's own lines only where the prefix would take them
// past 998, and encoded when no white space allows it.
func subjectHeader(prefix, raw string) string {
	const lead = len("Subject: ")
	dec := DecodeSubject(raw)
	control := func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
	// control characters (raw, or inside encoded-words) become spaces:
	// strict out, whatever the original carried (PEC-SPEC §6.7)
	clean := strings.Map(func(r rune) rune {
		if control(r) {
			return ' '
		}
		return r
	}, dec)
	var v string
	if needsEncoding(raw) || clean != dec {
		enc := mime.QEncoding.Encode("utf-8", clean)
		if enc == clean && strings.Contains(clean, "=?") {
			// left as text by mime's encoder (ASCII), it would read as a
			// (broken) encoded-word: encoded, it reads as the text it is
			enc = utf8Words(clean)
		}
		v = fold(lead, len(prefix), prefix+enc, foldWidth, foldWidth)
	} else {
		v = fold(lead, len(prefix), prefix+raw, foldWidth, maxLine)
	}
	if longestValueLine(lead, v) > maxLine {
		// a run without white space too long for one line once prefixed
		// (mime's encoder leaves ASCII as it is): the decoded text, all
		// of it in encoded-words, which fold between them
		v = fold(lead, len(prefix), prefix+utf8Words(clean), foldWidth, foldWidth)
	}
	return v
}

// utf8Words writes s as RFC 2047 "Q" encoded-words in UTF-8 (§4.2), each
// at most 75 octets (§2) and holding whole characters (§5: a word is
// decoded on its own), separated by spaces. A space of the text goes
// inside a word as "_": white space between two encoded-words is dropped
// by a reader (§6.2).
func utf8Words(s string) string {
	const open, end = "=?utf-8?q?", "?="
	var b strings.Builder
	n := 0 // octets of the word being written
	for _, r := range s {
		var enc string
		switch {
		case r == ' ':
			enc = "_"
		case r > 0x20 && r < 0x7f && r != '=' && r != '?' && r != '_':
			enc = string(r)
		default:
			for _, c := range []byte(string(r)) {
				enc += fmt.Sprintf("=%02X", c)
			}
		}
		if n > 0 && n+len(enc)+len(end) > 75 {
			b.WriteString(end + " ")
			n = 0
		}
		if n == 0 {
			b.WriteString(open)
			n = len(open)
		}
		b.WriteString(enc)
		n += len(enc)
	}
	if n > 0 {
		b.WriteString(end)
	}
	return b.String()
}

// Line lengths of a header field, without the CRLF (RFC 5322 §2.1.1).
const (
	foldWidth = 78
	maxLine   = 998
)

// fold breaks value (one line: the values folded here hold no CR or LF),
// written after lead octets of "Name: ", when that line is longer than
// limit octets: before white space (RFC 5322 §2.2.3: folding is a CRLF
// inserted before white space, so a reader that unfolds gets the value
// back), filling lines up to width octets. The first keep octets of the
// value (the PEC prefix, which readers match on the first line) and a run
// without white space are never broken.
func fold(lead, keep int, value string, width, limit int) string {
	if lead+len(value) <= limit {
		return value
	}
	var b strings.Builder
	n := lead // octets on the output line so far
	at := 0   // offset of the token in value
	for j, tok := range foldTokens(value) {
		if j > 0 && at > keep && n+len(tok) > width {
			b.WriteString("\r\n")
			n = 0
		}
		b.WriteString(tok)
		n += len(tok)
		at += len(tok)
	}
	return b.String()
}

// foldTokens cuts a line before each run of white space that follows
// other octets: every token but the first starts with white space.
func foldTokens(l string) []string {
	var out []string
	start := 0
	for i := 1; i < len(l); i++ {
		ws := l[i] == ' ' || l[i] == '\t'
		if ws && l[i-1] != ' ' && l[i-1] != '\t' {
			out = append(out, l[start:i])
			start = i
		}
	}
	return append(out, l[start:])
}

// longestValueLine is the longest line of a field value with lead octets
// before its first line.
func longestValueLine(lead int, value string) int {
	longest := 0
	for i, l := range strings.Split(value, "\r\n") {
		if i == 0 {
			longest = lead + len(l)
		}
		longest = max(longest, len(l))
	}
	return longest
}
