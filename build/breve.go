package build

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"mime"
	"strings"

	"github.com/pecgo/pec/internal/rawmime"
)

// Breve returns the original message in the form a breve delivery receipt
// carries (RFC 6109 §3.3.2.2): every part with a name (Content-Type) or
// filename (Content-Disposition) parameter, and every embedded
// message/rfc822, is replaced by a text/plain part "<name>.hash" holding
// the hex SHA-1 of the part's body as transmitted (the base64 text for
// base64 parts). The signature part of a multipart/signed original is left
// untouched, and an opaque application/pkcs7-mime original is returned
// whole.
//
// Breve never fails: it runs after the message was stored, when a receipt
// is owed. A multipart it cannot split is hashed whole as one part.
func Breve(raw []byte) []byte {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return raw // no header section: nothing named to replace
	}
	mt, _ := rawmime.MediaType(h.Get("Content-Type"))
	if mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime" {
		return raw
	}
	return breveEntity(h, body, true)
}

// breveEntity transforms one entity: a named leaf (or message/rfc822)
// becomes its .hash part, a multipart is transformed part by part. For the
// top-level entity the message's own fields (From, To, Subject, …) stay.
// For a nested entity with nothing to replace it returns nil.
func breveEntity(h rawmime.Header, body []byte, top bool) []byte {
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	_, dparams := rawmime.MediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if name == "" && mt == "message/rfc822" {
		name = "messaggio.eml"
	}
	if name == "" && strings.HasPrefix(mt, "multipart/") {
		if nb, ok := breveMultipart(mt, params["boundary"], body); ok {
			return append(headerBytes(h), nb...)
		}
		name = "parte.bin" // a multipart we cannot split: hashed whole
	}
	if name == "" {
		if !top {
			return nil // nothing to replace: the caller keeps the part as it was
		}
		return append(headerBytes(h), body...)
	}
	if r := []rune(name); len(r) > 100 {
		name = string(r[:100]) // keep the field well under 998 octets (RFC 5322 §2.1.1)
	}
	sum := sha1.Sum(body)
	var b bytes.Buffer
	if top {
		for _, f := range h {
			switch strings.ToLower(f.Name) {
			case "content-type", "content-transfer-encoding", "content-disposition":
			default:
				b.Write(f.Raw)
				b.WriteString("\r\n")
			}
		}
	}
	b.WriteString("Content-Type: " + mime.FormatMediaType("text/plain", map[string]string{"charset": "us-ascii", "name": name + ".hash"}) + "\r\n")
	b.WriteString("Content-Transfer-Encoding: 7bit\r\n")
	b.WriteString("Content-Disposition: " + mime.FormatMediaType("attachment", map[string]string{"filename": name + ".hash"}) + "\r\n\r\n")
	b.WriteString(hex.EncodeToString(sum[:]))
	if top {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// breveMultipart transforms each part; ok is false when the body cannot
// be split at its boundary.
func breveMultipart(mt, boundary string, body []byte) ([]byte, bool) {
	parts, err := rawmime.Parts(body, boundary)
	if err != nil {
		return nil, false
	}
	var b bytes.Buffer
	for i, p := range parts {
		b.WriteString("--" + boundary + "\r\n")
		if mt == "multipart/signed" && i == 1 {
			b.Write(p) // the signature part stays as it was
		} else if ph, pbody, err := rawmime.Split(p); err != nil {
			b.Write(p) // a part with no header section is plain text: nothing named
		} else if out := breveEntity(ph, pbody, false); out == nil {
			b.Write(p) // unchanged, byte for byte
		} else {
			// a nested multipart ends with its closing delimiter's CRLF,
			// which the enclosing delimiter line brings again
			b.Write(bytes.TrimSuffix(out, []byte("\r\n")))
		}
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), true
}

// headerBytes is the header section as received, with the empty line.
func headerBytes(h rawmime.Header) []byte {
	var b bytes.Buffer
	for _, f := range h {
		b.Write(f.Raw)
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}
