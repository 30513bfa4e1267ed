package verify_test

import (
	"bytes"
	"crypto"
	"strings"
	"testing"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/verify"
)

// A provider that copies a control character of the sender's Subject into
// oggetto, raw (U+0016) or as a reference (&#18;), signs ill-formed XML
// 1.0: signature and chain are valid, so the message is valid PEC, read
// with the character replaced and a warning (PEC-SPEC §6.7).
func TestQuirkDaticertControlCharacters(t *testing.T) {
	_, ident := identity()
	for _, tc := range []struct{ name, oggetto, subject, warn string }{
		{"raw U+0016", "Fattura\x16 n. 12", "Fattura\x16 n. 12", "U+0016"},
		{"reference &#18;", "Fattura&#18; n. 12", "Fattura\x12 n. 12", "&#18;"},
		{"hex reference &#x1;", "Fattura&#x1; n. 12", "Fattura n. 12", "&#x1;"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := pectest.Resign(t, ident, envelope(t, crypto.SHA256, ""), at, func(x []byte) []byte {
				y := bytes.Replace(x, []byte("<oggetto>Fattura n. 12</oggetto>"), []byte("<oggetto>"+tc.oggetto+"</oggetto>"), 1)
				if bytes.Equal(x, y) {
					t.Fatal("test bug: oggetto not replaced")
				}
				return y
			}, func(h string) string {
				return strings.Replace(h, "Subject: POSTA CERTIFICATA: Fattura n. 12", "Subject: POSTA CERTIFICATA: "+tc.subject, 1)
			})
			r := valid(t, raw)
			if got := *r.Message.Daticert.Oggetto; got != "Fattura\uFFFD n. 12" {
				t.Fatalf("oggetto %q", got)
			}
			if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.warn) || !strings.Contains(r.Warnings[0], "replaced by U+FFFD") {
				t.Fatalf("warnings %q", r.Warnings)
			}
		})
	}
}

// The outer header fields are not signed: a Subject edited after signing
// still verifies, with a warning that it is not the certified oggetto.
// The whole Subject may be one encoded-word, prefix included (no warning).
func TestQuirkSubjectVersusOggetto(t *testing.T) {
	raw := envelope(t, crypto.SHA256, "")
	const subj = "Subject: POSTA CERTIFICATA: Fattura n. 12\r\n"
	if !bytes.Contains(raw, []byte(subj)) {
		t.Fatal("test bug: Subject not found")
	}
	if r := valid(t, raw); len(r.Warnings) != 0 {
		t.Fatalf("unchanged Subject: warnings %q", r.Warnings)
	}
	edited := bytes.Replace(raw, []byte(subj), []byte("Subject: POSTA CERTIFICATA: Fattura n. 13\r\n"), 1)
	r := valid(t, edited)
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `Subject "POSTA CERTIFICATA: Fattura n. 13"`) || !strings.Contains(r.Warnings[0], `oggetto "Fattura n. 12"`) {
		t.Fatalf("edited Subject: warnings %q", r.Warnings)
	}
	for _, s := range []string{
		"Subject: =?UTF-8?Q?POSTA_CERTIFICATA:_Fattura_n._12?=\r\n",
		"Subject: =?iso-8859-1?B?UE9TVEEgQ0VSVElGSUNBVEE6IEZhdHR1cmEgbi4gMTI=?=\r\n",
		"Subject: POSTA CERTIFICATA:\r\n Fattura n. 12\r\n",
	} {
		r := valid(t, bytes.Replace(raw, []byte(subj), []byte(s), 1))
		if len(r.Warnings) != 0 {
			t.Fatalf("%q: warnings %q", s, r.Warnings)
		}
	}
}

// A broken signature is reported before a broken daticert: it decides
// whether the message is PEC at all (PEC-SPEC §6.7).
func TestQuirkSignatureErrorFirst(t *testing.T) {
	p, ident := identity()
	noID := pectest.Resign(t, ident, envelope(t, crypto.SHA256, ""), at, func(x []byte) []byte {
		i, j := bytes.Index(x, []byte("<identificativo>")), bytes.Index(x, []byte("</identificativo>"))
		return append(append([]byte{}, x[:i]...), x[j+len("</identificativo>"):]...)
	}, nil)
	r := verify.Message(noID, p.Pool())
	if r.Valid() || !strings.Contains(r.Err.Error(), "missing <identificativo>") {
		t.Fatalf("signed broken daticert: %v", r.Err)
	}
	// and now the signed text changed too
	i := bytes.Index(noID, []byte("Content-Type: text/plain"))
	if i < 0 {
		t.Fatal("test bug: no text part")
	}
	tampered := append([]byte{}, noID...)
	copy(tampered[i:], "Content-Type: text/plaiN")
	r = verify.Message(tampered, p.Pool())
	if r.Valid() || !strings.Contains(r.Err.Error(), "digest mismatch") {
		t.Fatalf("tampered and broken: error %v, want the signature's", r.Err)
	}
}
