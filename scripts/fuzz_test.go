// Package scripts holds the tests of the shell scripts beside it.
package scripts

import (
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// isFuzzName reports whether name is the name of a fuzz target as the go
// tool sees it: "Fuzz", then nothing or a rune that is not lower-case.
func isFuzzName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Fuzz")
	if !ok {
		return false
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return rest == "" || !unicode.IsLower(r)
}

// fuzzTargets parses every _test.go file of the module at root (skipping
// testdata, hidden and "_" directories, as the go tool does) and returns
// "./DIR NAME" for each top-level func FuzzXxx. A file that holds a fuzz
// target but that a default build leaves out (a build constraint) is an
// error: its targets would never run.
func fuzzTargets(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(d.Name(), "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		var names []string
		for _, decl := range f.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && isFuzzName(fn.Name.Name) {
				names = append(names, fn.Name.Name)
			}
		}
		if len(names) == 0 {
			return nil
		}
		if ok, err := build.Default.MatchFile(filepath.Dir(path), d.Name()); err != nil || !ok {
			t.Errorf("%s: fuzz targets %v are in a file a default build leaves out (%v): make fuzz cannot run them", path, names, err)
		}
		for _, n := range names {
			out = append(out, "./"+filepath.ToSlash(rel)+" "+n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestFuzzAllRunsEveryTarget: make fuzz runs scripts/fuzz-all, and the
// script's list of targets is every fuzz target in the module, so a new
// target cannot be forgotten.
func TestFuzzAllRunsEveryTarget(t *testing.T) {
	want := fuzzTargets(t, "..")
	if len(want) == 0 {
		t.Fatal("no fuzz target found in the module")
	}

	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^fuzz:\n(\t.*\n)*\t.*scripts/fuzz-all\b`).Match(mk) {
		t.Error("the Makefile's fuzz target does not run scripts/fuzz-all")
	}

	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	out, err := exec.Command("bash", "fuzz-all", "-list").Output()
	if err != nil {
		t.Fatalf("fuzz-all -list: %v", err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("fuzz-all would not run %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("fuzz-all lists %q, which is not a fuzz target", g)
		}
	}
}
