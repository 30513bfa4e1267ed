package parse_test

import (
	"testing"

	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
)

// FuzzParse: Parse never panics on any input, and what it returns without
// error is consistent: a PEC kind other than the anomaly envelope has a
// daticert of the matching tipo, a signed message has its signed content.
// The committed corpus (testdata/fuzz/FuzzParse) holds built messages of
// several kinds and the real-world variants of PEC-SPEC §6.7.
func FuzzParse(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nX-Trasporto: posta-certificata\r\nContent-Type: multipart/signed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b\r\n\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := parse.Parse(raw)
		if m == nil {
			if err == nil {
				t.Fatal("nil message and nil error")
			}
			return
		}
		if err != nil {
			return
		}
		if m.Signed && m.Content == nil {
			t.Fatal("signed message without signed content")
		}
		switch m.Kind {
		case kind.Ordinaria, kind.Anomalia:
		default:
			if m.Daticert == nil || m.Daticert.Tipo != m.Kind.Tipo() {
				t.Fatalf("kind %s with daticert %+v and no error", m.Kind, m.Daticert)
			}
		}
		_ = m.Recipients()
	})
}
