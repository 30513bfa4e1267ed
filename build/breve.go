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
func Breve(raw []byte) ([]byte, error) {
	raw = rawmime.CRLF(raw)
	h, body, err := rawmime.Split(raw)
	if err != nil {
		return nil, err
	}
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	if mt == "application/pkcs7-mime" || mt == "application/x-pkcs7-mime" || !strings.HasPrefix(mt, "multipart/") {
		return raw, nil
	}
	nb, err := breveMultipart(mt, params["boundary"], body)
	if err != nil {
		return nil, err
	}
	return append(headerBytes(h), nb...), nil
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

func breveMultipart(mt, boundary string, body []byte) ([]byte, error) {
	parts, err := rawmime.Parts(body, boundary)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for i, p := range parts {
		b.WriteString("--" + boundary + "\r\n")
		if mt == "multipart/signed" && i == 1 {
			b.Write(p) // the signature part stays as it was
		} else if np, err := brevePart(p); err != nil {
			return nil, err
		} else {
			b.Write(np)
		}
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

func brevePart(p []byte) ([]byte, error) {
	h, body, err := rawmime.Split(p)
	if err != nil {
		// a part with no header section is plain text: nothing to hash
		return p, nil
	}
	mt, params := rawmime.MediaType(h.Get("Content-Type"))
	_, dparams := rawmime.MediaType(h.Get("Content-Disposition"))
	name := dparams["filename"]
	if name == "" {
		name = params["name"]
	}
	if name == "" && mt == "message/rfc822" {
		name = "messaggio.eml"
	}
	if name != "" {
		sum := sha1.Sum(body)
		var b bytes.Buffer
		b.WriteString("Content-Type: " + mime.FormatMediaType("text/plain", map[string]string{"charset": "us-ascii", "name": name + ".hash"}) + "\r\n")
		b.WriteString("Content-Transfer-Encoding: 7bit\r\n")
		b.WriteString("Content-Disposition: " + mime.FormatMediaType("attachment", map[string]string{"filename": name + ".hash"}) + "\r\n\r\n")
		b.WriteString(hex.EncodeToString(sum[:]))
		return b.Bytes(), nil
	}
	if !strings.HasPrefix(mt, "multipart/") {
		return p, nil
	}
	nb, err := breveMultipart(mt, params["boundary"], body)
	if err != nil {
		return nil, err
	}
	return append(headerBytes(h), bytes.TrimSuffix(nb, []byte("\r\n"))...), nil
}
