package point_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The rule core depends on no database driver, no cgo outside the standard
// library, no milter library and no configuration reader: it can be read,
// tested and reused without any of them (issue: the rule core as one
// package).
func TestCoreDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command(goBin, "list", "-deps", "-f", "{{.ImportPath}} {{if and .CgoFiles (not .Standard)}}CGO{{end}}", "github.com/pecgo/pec/point").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"database/sql", "github.com/mattn/go-sqlite3", "github.com/jackc/", "github.com/emersion/go-milter",
		"github.com/BurntSushi/toml", "github.com/pecgo/pec/config", "github.com/pecgo/pec/store/",
		"github.com/miekg/pkcs11", "github.com/ThalesGroup/crypto11",
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		n++
		pkg, cgo, _ := strings.Cut(line, " ")
		if cgo == "CGO" {
			t.Errorf("the rule core depends on %s, which uses cgo", pkg)
		}
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f) {
				t.Errorf("the rule core depends on %s", pkg)
			}
		}
	}
	if n < 20 {
		t.Fatalf("go list printed %d packages: not the dependency list", n)
	}
}
