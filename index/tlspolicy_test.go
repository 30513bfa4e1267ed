package index

import (
	"strings"
	"testing"
)

// Each domain once, sorted, lower-case; a domain that is not a plain host
// name (it would break the Postfix table's line format) is left out and
// reported.
func TestTLSPolicyTable(t *testing.T) {
	ix := &Index{providers: []Provider{
		{Name: "B", Domains: []string{"pec.b.example.test", "legal.b.example.test"}},
		{Name: "A", Domains: []string{"pec.a.example.test", "pec.b.example.test"}},
		{Name: "C", Domains: []string{"evil.example.test encrypt\nexample.org none", ".dot.example.test"}},
	}}
	table, skipped := ix.TLSPolicy()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(table)), "\n") {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	want := "legal.b.example.test encrypt\npec.a.example.test encrypt\npec.b.example.test encrypt"
	if strings.Join(lines, "\n") != want {
		t.Errorf("table:\n%s\nwant:\n%s", table, want)
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %q, want the two malformed domains", skipped)
	}
}
