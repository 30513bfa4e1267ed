// Package charset converts the character sets met in Italian mail
// (ISO-8859-1, ISO-8859-15, Windows-1252 and whatever else the WHATWG
// index knows) to UTF-8.
package charset

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/encoding/htmlindex"
)

// Reader returns a reader that decodes input in charset label to UTF-8.
// It has the signature mime.WordDecoder.CharsetReader wants.
func Reader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii", "":
		return input, nil
	}
	enc, err := htmlindex.Get(label)
	if err != nil {
		return nil, fmt.Errorf("unknown charset %q", label)
	}
	return enc.NewDecoder().Reader(input), nil
}

// Decode converts b from charset label to a UTF-8 string.
func Decode(label string, b []byte) (string, error) {
	r, err := Reader(label, strings.NewReader(string(b)))
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(r)
	return string(out), err
}
