package build_test

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/pecgo/pec/build"
)

func sha1hex(s string) string { h := sha1.Sum([]byte(s)); return hex.EncodeToString(h[:]) }

func TestBreveForms(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     []string // substrings of the output
		not      []string
	}{
		{"nested", "Subject: x\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nciao\r\n\r\n--b--\r\n--a\r\nContent-Type: application/pdf; name=f.pdf\r\n\r\nPDFDATA\r\n--a--\r\n",
			[]string{"--b\r\nContent-Type: text/plain\r\n\r\nciao\r\n\r\n--b--\r\n--a", "name=f.pdf.hash", sha1hex("PDFDATA")}, []string{"PDFDATA\r\n"}},
		{"top-level-named", "From: a@b\r\nSubject: x\r\nContent-Type: application/pdf; name=\"solo.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n",
			[]string{"From: a@b\r\nSubject: x\r\n", "solo.pdf.hash", sha1hex("QUJD\r\n")}, []string{"application/pdf"}},
		{"unterminated", "Subject: x\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: application/pdf; name=f.pdf\r\n\r\nPDFDATA\r\n",
			[]string{"parte.bin.hash"}, []string{"PDFDATA"}},
		{"no-boundary-nested", "Subject: x\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/related\r\n\r\nsecret\r\n--a--\r\n",
			[]string{"parte.bin.hash"}, []string{"secret"}},
		{"plain", "Subject: x\r\n\r\nciao\r\n", []string{"Subject: x\r\n\r\nciao\r\n"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := string(build.Breve([]byte(c.in)))
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("missing %q in\n%s", w, out)
				}
			}
			for _, n := range c.not {
				if strings.Contains(out, n) {
					t.Errorf("still has %q in\n%s", n, out)
				}
			}
		})
	}
}

func FuzzBreve(f *testing.F) {
	f.Add([]byte(original))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n--a--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		out := build.Breve(raw)
		if len(raw) > 0 && len(out) == 0 {
			t.Fatal("empty output")
		}
	})
}
