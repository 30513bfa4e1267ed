package index

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// ParseLDIF reads an RFC 2849 LDIF content file (the IGPEC directory):
// folded lines, comments (folded too), "attr:: base64" values, attribute
// options such as ";binary", an optional "version: 1", LF or CRLF line ends,
// any number of entries. Entries without objectClass provider (the
// o=postacert root, organisational entries) are not providers; the root's
// LDIFLocationURL is kept.
//
// Tolerated deviations, both present in the RFC 6109 §4.5.10 example: a
// "dn:" line directly after an entry, without the blank separator line,
// starts a new entry; attribute names and objectClass values are
// case-insensitive.
//
// Syntax errors fail the parse with an error naming the line. A provider
// entry whose values are unusable (bad base64, a certificate that does not
// parse, a mandatory attribute missing) is skipped and recorded in
// Warnings; see the package documentation.
func ParseLDIF(r io.Reader) (*Index, error) {
	recs, err := readLDIF(r)
	if err != nil {
		return nil, err
	}
	return buildIndex(recs, DefaultBaseDN)
}

// logicalLine is an unfolded LDIF line and the physical line it starts on.
type logicalLine struct {
	text string
	line int
}

// readLDIF splits an LDIF stream into records.
func readLDIF(r io.Reader) ([]record, error) {
	br := bufio.NewReader(r)
	var (
		lines   []logicalLine
		cur     *logicalLine
		text    strings.Builder // cur's text: its first line and continuations, joined
		comment bool            // cur is a comment (its continuations are dropped too)
		n       int
	)
	flush := func() {
		if cur != nil && !comment {
			cur.text = text.String()
			lines = append(lines, *cur)
		}
		cur, comment = nil, false
		text.Reset()
	}
	for {
		s, err := br.ReadString('\n')
		if s == "" && err != nil {
			if err != io.EOF {
				return nil, fmt.Errorf("index: ldif: %w", err)
			}
			break
		}
		n++
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
		if n == 1 {
			s = strings.TrimPrefix(s, "\ufeff")
		}
		switch {
		case s == "":
			flush()
			lines = append(lines, logicalLine{line: n}) // separator
		case s[0] == ' ':
			if cur == nil {
				return nil, fmt.Errorf("index: ldif line %d: continuation line (leading space) with no line to continue", n)
			}
			if !comment {
				text.WriteString(s[1:])
			}
		case s[0] == '#':
			flush()
			cur, comment = &logicalLine{line: n}, true
		default:
			flush()
			cur = &logicalLine{line: n}
			text.WriteString(s)
		}
		if err != nil {
			break
		}
	}
	flush()

	var (
		recs []record
		rec  *record
	)
	for i, l := range lines {
		if l.text == "" {
			rec = nil
			continue
		}
		name, value, isB64, err := splitLine(l)
		if err != nil {
			return nil, err
		}
		lname := strings.ToLower(name)
		if lname == "version" && len(recs) == 0 && rec == nil && i == firstContent(lines) {
			if strings.TrimSpace(value) != "1" {
				return nil, fmt.Errorf("index: ldif line %d: unsupported LDIF version %q", l.line, value)
			}
			continue
		}
		if lname == "dn" {
			dn := value
			if isB64 {
				b, err := decodeB64(value)
				if err != nil {
					return nil, fmt.Errorf("index: ldif line %d: dn:: %v", l.line, err)
				}
				dn = string(b)
			}
			recs = append(recs, record{dn: strings.TrimSpace(dn), line: l.line})
			rec = &recs[len(recs)-1]
			continue
		}
		if rec == nil {
			return nil, fmt.Errorf("index: ldif line %d: entry does not start with a dn: line (found %q; a blank line inside an entry?)", l.line, name)
		}
		if lname == "changetype" || lname == "control" {
			return nil, fmt.Errorf("index: ldif line %d: LDIF change records are not supported (%s:)", l.line, name)
		}
		a := attr{desc: name, typ: attrType(name), line: l.line}
		if isB64 {
			a.value, a.err = decodeB64(value)
		} else {
			a.value = []byte(value)
		}
		rec.attrs = append(rec.attrs, a)
	}
	return recs, nil
}

// firstContent is the index of the first non-separator logical line.
func firstContent(lines []logicalLine) int {
	for i, l := range lines {
		if l.text != "" {
			return i
		}
	}
	return -1
}

// splitLine splits "name: value", "name:: base64" (isB64) and refuses
// "name:< URL" (a reference to a local file or a remote resource).
func splitLine(l logicalLine) (name, value string, isB64 bool, err error) {
	i := strings.IndexByte(l.text, ':')
	if i <= 0 {
		return "", "", false, fmt.Errorf("index: ldif line %d: expected \"attribute: value\", got %q", l.line, truncate(l.text, 40))
	}
	name = l.text[:i]
	for j := 0; j < len(name); j++ {
		c := name[j]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == ';' || c == '.') {
			return "", "", false, fmt.Errorf("index: ldif line %d: invalid attribute description %q", l.line, truncate(name, 40))
		}
	}
	rest := l.text[i+1:]
	switch {
	case strings.HasPrefix(rest, ":"):
		return name, strings.TrimSpace(rest[1:]), true, nil
	case strings.HasPrefix(rest, "<"):
		return "", "", false, fmt.Errorf("index: ldif line %d: URL values (%s:<) are not supported", l.line, name)
	}
	return name, strings.TrimLeft(rest, " "), false, nil
}

func decodeB64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64 value: %v", err)
	}
	return b, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// WriteLDIF writes the snapshot as an LDIF content file in the RFC 6109
// schema form: the o=postacert root entry, then one entry per provider with
// providerCertificate;binary:: base64 DER values. The output round-trips
// through ParseLDIF and loads with slapadd. No "version: 1" line is written:
// the RFC 6109 example has none and slapadd refuses it. Entries that were skipped when the
// snapshot was built are not written.
func (ix *Index) WriteLDIF(w io.Writer) error {
	if ix == nil {
		return errors.New("index: WriteLDIF on a nil index")
	}
	return writeLDIF(w, ix.rootURL, ix.rootDescription, ix.providers)
}

func writeLDIF(w io.Writer, rootURL, rootDescription string, providers []Provider) error {
	bw := bufio.NewWriter(w)
	var b bytes.Buffer
	writeAttr(&b, "dn", []byte(DefaultBaseDN))
	writeAttr(&b, "objectClass", []byte("top"))
	writeAttr(&b, "objectClass", []byte("organization"))
	if rootURL != "" {
		writeAttr(&b, "objectClass", []byte("LDIFLocationURLObject"))
	}
	writeAttr(&b, "o", []byte("postacert"))
	if rootURL != "" {
		writeAttr(&b, "LDIFLocationURL", []byte(rootURL))
	}
	if rootDescription != "" {
		writeAttr(&b, "description", []byte(rootDescription))
	}
	for i := range providers {
		p := &providers[i]
		b.WriteString("\n")
		dn := p.DN
		if dn == "" {
			dn = providerDN(p.Name, p.Unit)
		}
		writeAttr(&b, "dn", []byte(dn))
		writeAttr(&b, "objectClass", []byte("top"))
		writeAttr(&b, "objectClass", []byte("provider"))
		writeAttr(&b, "providerName", []byte(p.Name))
		if p.Unit != "" {
			writeAttr(&b, "providerUnit", []byte(p.Unit))
		}
		for _, h := range p.CertHashes {
			writeAttr(&b, "providerCertificateHash", []byte(h))
		}
		for _, c := range p.Certificates {
			writeB64(&b, "providerCertificate;binary", c.Raw)
		}
		writeAttr(&b, "mailReceipt", []byte(p.MailReceipt))
		if p.LDIFLocationURL != "" {
			writeAttr(&b, "LDIFLocationURL", []byte(p.LDIFLocationURL))
		}
		for _, d := range p.Domains {
			writeAttr(&b, "managedDomains", []byte(d))
		}
		if p.Description != "" {
			writeAttr(&b, "description", []byte(p.Description))
		}
		if _, err := bw.Write(b.Bytes()); err != nil {
			return err
		}
		b.Reset()
	}
	if _, err := bw.Write(b.Bytes()); err != nil {
		return err
	}
	return bw.Flush()
}

// providerDN builds providerName=<name>,o=postacert or
// providerUnit=<unit>,providerName=<name>,o=postacert.
func providerDN(name, unit string) string {
	dn := "providerName=" + ldap.EscapeDN(name) + "," + DefaultBaseDN
	if unit != "" {
		dn = "providerUnit=" + ldap.EscapeDN(unit) + "," + dn
	}
	return dn
}

// safeString reports whether v can be written as "attr: v" (RFC 2849
// SAFE-STRING, and no trailing space, which some readers would drop).
func safeString(v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if v[0] == ' ' || v[0] == ':' || v[0] == '<' || v[len(v)-1] == ' ' {
		return false
	}
	for _, c := range v {
		if c == 0 || c == '\n' || c == '\r' || c >= 0x80 {
			return false
		}
	}
	return true
}

func writeAttr(b *bytes.Buffer, name string, v []byte) {
	if !safeString(v) {
		writeB64(b, name, v)
		return
	}
	fold(b, name+": "+string(v))
}

func writeB64(b *bytes.Buffer, name string, v []byte) {
	fold(b, name+":: "+base64.StdEncoding.EncodeToString(v))
}

// fold writes s folded at 76 columns (RFC 2849: continuation lines start
// with one space). s is ASCII, so folding never splits a character.
func fold(b *bytes.Buffer, s string) {
	const width = 76
	if len(s) <= width {
		b.WriteString(s)
		b.WriteByte('\n')
		return
	}
	b.WriteString(s[:width])
	b.WriteByte('\n')
	s = s[width:]
	for len(s) > 0 {
		n := min(len(s), width-1)
		b.WriteByte(' ')
		b.WriteString(s[:n])
		b.WriteByte('\n')
		s = s[n:]
	}
}
