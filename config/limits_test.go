package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadString(t *testing.T, s string) (*Config, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pec.toml")
	if err := os.WriteFile(path, []byte("[provider]\nname = \"Example PEC S.p.A.\"\ndomain = \"pec.example.test\"\n"+s), 0o644); err != nil {
		t.Fatal(err)
	}
	return Load(path)
}

// The header limits default to what Postfix carries intact and cannot be
// raised past it: the error names the setting and why.
func TestHeaderLimits(t *testing.T) {
	c, err := loadString(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits.MaxHeaderFields != 1000 || c.Limits.MaxHeaderFieldSize != 50000 {
		t.Errorf("defaults %d fields, %d octets; want 1000, 50000", c.Limits.MaxHeaderFields, c.Limits.MaxHeaderFieldSize)
	}
	if c, err := loadString(t, "[limits]\nmax_header_fields = 5000\nmax_header_field_size = 57000\n"); err != nil ||
		c.Limits.MaxHeaderFields != 5000 || c.Limits.MaxHeaderFieldSize != 57000 {
		t.Errorf("at the caps: %v", err)
	}
	for _, bad := range []struct{ toml, want string }{
		{"[limits]\nmax_header_fields = 10000\n", "max_header_fields = 10000: use 1 to 5000"},
		{"[limits]\nmax_header_field_size = 102400\n", "max_header_field_size = 102400: use 1 to 57000"},
		{"[limits]\nmax_header_fields = -1\n", "max_header_fields = -1"},
	} {
		if _, err := loadString(t, bad.toml); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one containing %q", bad.toml, err, bad.want)
		}
	}
}
