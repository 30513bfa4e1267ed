package build

import (
	"bytes"
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
// header stays 7-bit.
func subjectHeader(prefix, raw string) string {
	dec := DecodeSubject(raw)
	control := func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }
	if needsEncoding(raw) || strings.ContainsFunc(dec, control) {
		// control characters (raw, or inside encoded-words) become
		// spaces: strict out, whatever the original carried (PEC-SPEC §6.7)
		return prefix + mime.QEncoding.Encode("utf-8", strings.Map(func(r rune) rune {
			if control(r) {
				return ' '
			}
			return r
		}, dec))
	}
	return prefix + raw
}
