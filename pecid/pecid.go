// Package pecid makes PEC message identifiers (RFC 6109 §2.2.1): an
// alphanumeric string, then "@", then the provider's mail domain. The
// identifier becomes the Message-ID of the transport envelope and of the
// original inside it, and the <identificativo> of every notice, so it must
// be unique across processes, hosts and restarts: it joins the instant
// (UTC, to the second) with 100 random bits, which needs no shared state.
package pecid

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
	"time"
)

var enc = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// New returns a fresh identifier "pec<yyyymmddhhmmss><20 random base32 chars>@domain".
func New(t time.Time, domain string) string {
	var r [13]byte
	if _, err := rand.Read(r[:]); err != nil {
		panic("pecid: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on Linux ≥ 3.17
	}
	return "pec" + t.UTC().Format("20060102150405") + enc.EncodeToString(r[:])[:20] + "@" + strings.ToLower(domain)
}

// MessageID returns id in angle brackets, as used in the Message-ID header.
func MessageID(id string) string { return "<" + id + ">" }

// Bare strips surrounding blanks and angle brackets from a Message-ID.
func Bare(msgid string) string {
	return strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(msgid), "<"), ">")
}
