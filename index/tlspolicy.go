package index

import (
	"bytes"
	"fmt"
	"github.com/pecgo/pec/internal/atomicfile"
	"os"
	"slices"
)

// TLS between providers (RFC 6109 §5.3, Aruba §7.3.3: mail to and from
// the other PEC providers travels encrypted). Postfix enforces it on our
// side with smtp_tls_policy_maps: TLSPolicy renders that table's source
// from the providers' index, one "DOMAIN encrypt" line per managed domain,
// and WriteTLSPolicy keeps a file of it up to date on each index sync.
// The operator then runs postmap on it and reloads Postfix (README,
// postfix-examples/README.md).

// TLSPolicy returns the smtp_tls_policy_maps source for the index: a
// comment, then "DOMAIN encrypt" for every managed domain, sorted and
// without duplicates. Domains that are not plain host names (letters,
// digits, '-', '.', as a Postfix table key must be) are left out and
// returned in skipped.
func (ix *Index) TLSPolicy() (table []byte, skipped []string) {
	var doms []string
	for _, p := range ix.providers {
		for _, d := range p.Domains {
			if !policyDomain(d) {
				skipped = append(skipped, d)
				continue
			}
			doms = append(doms, d)
		}
	}
	slices.Sort(doms)
	doms = slices.Compact(doms)
	var b bytes.Buffer
	b.WriteString("# Postfix smtp_tls_policy_maps: TLS required towards every domain of the\n")
	b.WriteString("# providers' index. Generated on each index sync: do not edit; run\n")
	b.WriteString("# postmap on this file and postfix reload after it changes.\n")
	for _, d := range doms {
		fmt.Fprintf(&b, "%s encrypt\n", d)
	}
	return b.Bytes(), skipped
}

func policyDomain(d string) bool {
	if d == "" || len(d) > 253 || d[0] == '.' || d[0] == '-' {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// WriteTLSPolicy writes ix.TLSPolicy() to path when the file there
// differs, atomically (a temporary file in the same directory renamed
// over it, so Postfix's postmap never reads half a table). changed
// reports whether the file was written.
func WriteTLSPolicy(ix *Index, path string) (changed bool, skipped []string, err error) {
	table, skipped := ix.TLSPolicy()
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, table) {
		return false, skipped, nil
	}
	// postmap runs as root; the table is public
	if err := atomicfile.Write(path, table, 0o644, nil); err != nil {
		return false, skipped, fmt.Errorf("TLS policy map: %w", err)
	}
	return true, skipped, nil
}
