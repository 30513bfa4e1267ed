package docs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// rfcSections reads the section numbers of RFC 6109 from its text: the
// heading lines "3.1.2.  Non-Acceptance ...".
func rfcSections(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join("rfc", "rfc6109.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	heading := regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)*)\.  \S`)
	out := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := heading.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = true
		}
	}
	if len(out) < 80 {
		t.Fatalf("only %d sections read from rfc/rfc6109.txt", len(out))
	}
	return out
}

var citation = regexp.MustCompile(`RFC 6109 §([0-9]+(?:\.[0-9]+)*)`)

// Every "RFC 6109 §x" cited in the code names a section that exists.
func TestCitedSectionsExist(t *testing.T) {
	sections := rfcSections(t)
	n := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && path != "..") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range citation.FindAllStringSubmatch(line, -1) {
				n++
				if !sections[strings.TrimSuffix(m[1], ".")] {
					t.Errorf("%s:%d cites RFC 6109 §%s, which does not exist", path, i+1, m[1])
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Fatalf("only %d citations found: is the walk reading the code?", n)
	}
}

// rule is one row of rules.md.
type rule struct {
	line               int
	section, text      string
	codeFile, codeFunc string
	testFile, testFunc string
}

var row = regexp.MustCompile("^\\| §([0-9.]+) \\| (.+?) \\| `([^`:]+):([A-Za-z0-9_.]+)` \\| `([^`:]+):(Test[A-Za-z0-9_]+|Fuzz[A-Za-z0-9_]+|Example[A-Za-z0-9_]*)` \\|$")

func rules(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile("rules.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []rule
	for i, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| §") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("rules.md:%d: not a row | §x | rule | `file:Func` | `file_test.go:TestName` |: %s", i+1, line)
			continue
		}
		out = append(out, rule{i + 1, m[1], m[2], m[3], m[4], m[5], m[6]})
	}
	return out
}

// declares reports whether the Go file declares function or method name
// (Type.Method for a method).
func declares(t *testing.T, file, name string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		return false
	}
	recv, fn, isMethod := strings.Cut(name, ".")
	var re *regexp.Regexp
	if isMethod {
		re = regexp.MustCompile(`(?m)^func \(\w+ \*?` + regexp.QuoteMeta(recv) + `\) ` + regexp.QuoteMeta(fn) + `\(`)
	} else {
		re = regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(recv) + `\(`)
	}
	return re.Match(b)
}

// Every row of rules.md names an existing section, a function that exists
// where it says, and a test that exists where it says.
func TestRulesIndex(t *testing.T) {
	sections := rfcSections(t)
	rs := rules(t)
	if len(rs) < 25 {
		t.Fatalf("rules.md has %d rules", len(rs))
	}
	for _, r := range rs {
		if !sections[r.section] {
			t.Errorf("rules.md:%d: RFC 6109 §%s does not exist", r.line, r.section)
		}
		if !declares(t, r.codeFile, r.codeFunc) {
			t.Errorf("rules.md:%d: %s does not declare %s", r.line, r.codeFile, r.codeFunc)
		}
		if !strings.HasSuffix(r.testFile, "_test.go") || !declares(t, r.testFile, r.testFunc) {
			t.Errorf("rules.md:%d: %s does not declare test %s", r.line, r.testFile, r.testFunc)
		}
	}
}
