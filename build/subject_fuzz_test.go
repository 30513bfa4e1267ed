package build

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzSubjectHeader: whatever the original's Subject, the field we write
// has no line longer than 998 octets (RFC 5322 §2.1.1), no bare CR or LF
// outside a fold, 7-bit octets only, the prefix whole on the first line,
// and it reads back (unfolded, RFC 2047 decoded) as the prefix plus the
// original's decoded Subject with control characters as spaces.
func FuzzSubjectHeader(f *testing.F) {
	for _, s := range []string{
		"Fattura n. 12", "", "=?utf-8?q?caff=C3=A8?= " + strings.Repeat("x", 1000),
		strings.Repeat("è", 700), strings.Repeat("parola ", 140), strings.Repeat("x", 990),
		"=?utf-8?q?a=01b?= " + strings.Repeat("y", 1000), "tab\there", "=?iso-8859-1?q?Citt=E0?=",
		"=?utf-8?b?4oKs?= 100", "a\x7fb", "=?bogus?q?x?=",
	} {
		f.Add(s)
	}
	control := func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return ' '
		}
		return r
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if strings.ContainsAny(raw, "\r\n") {
			return // the parser hands over unfolded values
		}
		const prefix = "POSTA CERTIFICATA: "
		v := subjectHeader(prefix, raw)
		field := "Subject: " + v
		for _, line := range strings.Split(field, "\r\n") {
			if len(line) > maxLine {
				t.Fatalf("line of %d octets for %q", len(line), raw)
			}
			if strings.ContainsAny(line, "\r\n") {
				t.Fatalf("bare CR or LF in %q", field)
			}
		}
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				t.Fatalf("8-bit octet in %q", v)
			}
		}
		if !strings.HasPrefix(v, prefix) {
			t.Fatalf("prefix split: %q", v)
		}
		want := prefix + strings.Map(control, DecodeSubject(raw))
		got := DecodeSubject(strings.ReplaceAll(v, "\r\n", ""))
		if strings.ContainsFunc(got, func(r rune) bool { return control(r) != r }) {
			t.Fatalf("Subject %q reads back with a control character: %q", raw, got)
		}
		if !utf8.ValidString(raw) || strings.Contains(raw, "=?") {
			// raw 8-bit text and encoded-words: compare what a reader sees,
			// with runs of white space as one (RFC 2047 §6.2 drops the
			// space between adjacent encoded-words)
			want, got = strings.Join(strings.Fields(want), " "), strings.Join(strings.Fields(got), " ")
		}
		if got != want {
			t.Fatalf("Subject %q reads back as %q, want %q", raw, got, want)
		}
	})
}
