// Package conformance checks emitted messages with tools that share no
// code with this project: openssl (S/MIME signature and chain at the
// signing time), xmllint (daticert.xml against the DTD of RFC 6109 §4.4)
// and pec-lint (RFC 6109 rules), from the shared spec folder that sits
// beside the repository (../shared, or $PEC_SHARED).
package conformance

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pecgo/pec/parse"
)

// SharedDir returns the shared spec/tools folder or fails the test.
func SharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("PEC_SHARED"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			s := filepath.Join(dir, "..", "shared")
			if _, err := os.Stat(filepath.Join(s, "spec", "daticert.dtd")); err != nil {
				t.Fatalf("the shared spec folder is not at %s (set PEC_SHARED)", s)
			}
			return s
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// Need skips when a tool is missing; scripts/install-deps installs them all.
func need(t testing.TB, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed (run scripts/install-deps)", c)
		}
	}
}

// Check runs every external check on one emitted message: openssl smime
// -verify against rootPEM at the CMS signing time, xmllint --dtdvalid on
// its daticert (when it has one) and pec-lint --ca with no ERROR.
func Check(t testing.TB, name string, raw, rootPEM []byte) {
	t.Helper()
	need(t, "openssl", "xmllint", "python3")
	shared := SharedDir(t)
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	file := filepath.Join(dir, safe(name)+".eml")
	must(t, os.WriteFile(root, rootPEM, 0o644))
	must(t, os.WriteFile(file, raw, 0o644))
	OpenSSL(t, file, root)
	m, err := parse.Parse(raw)
	if err != nil {
		t.Fatalf("%s: parse: %v", name, err)
	}
	if m.DaticertRaw != nil {
		xml := filepath.Join(dir, safe(name)+"-daticert.xml")
		must(t, os.WriteFile(xml, m.DaticertRaw, 0o644))
		if out, err := exec.Command("xmllint", "--noout", "--dtdvalid", filepath.Join(shared, "spec", "daticert.dtd"), xml).CombinedOutput(); err != nil {
			t.Errorf("%s: xmllint --dtdvalid: %v\n%s", name, err, out)
		}
	}
	Lint(t, root, file)
}

// OpenSSL runs openssl smime -verify at the CMS signing time.
func OpenSSL(t testing.TB, file, root string) {
	t.Helper()
	need(t, "openssl")
	p7, err := exec.Command("openssl", "smime", "-pk7out", "-in", file).Output()
	if err != nil {
		t.Fatalf("%s: openssl smime -pk7out: %v", file, err)
	}
	cmd := exec.Command("openssl", "cms", "-cmsout", "-print", "-inform", "PEM")
	cmd.Stdin = strings.NewReader(string(p7))
	printed, _ := cmd.Output()
	args := []string{"smime", "-verify", "-in", file, "-CAfile", root, "-purpose", "any", "-out", os.DevNull}
	if at := signingTime(string(printed)); at != "" {
		args = append(args, "-attime", at)
	}
	if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
		t.Errorf("%s: openssl smime -verify: %v\n%s", file, err, out)
	}
}

// Lint runs pec-lint --ca root over files, fails on any ERROR line and
// returns pec-lint's summary line.
func Lint(t testing.TB, root string, files ...string) string {
	t.Helper()
	need(t, "python3", "openssl", "xmllint")
	lint := filepath.Join(SharedDir(t), "tools", "pec-lint")
	out, err := exec.Command(lint, append([]string{"--ca", root}, files...)...).CombinedOutput()
	if err != nil {
		t.Errorf("pec-lint: %v\n%s", err, out)
	}
	summary := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, " ERROR ") {
			t.Errorf("pec-lint: %s", l)
		}
		if strings.HasPrefix(l, "pec-lint: ") {
			summary = l
		}
	}
	return summary
}

// signingTime finds the UTCTime of the signingTime attribute in
// `openssl cms -print` output and returns it as Unix seconds.
func signingTime(printed string) string {
	i := strings.Index(printed, "signingTime")
	if i < 0 {
		return ""
	}
	rest := printed[i:]
	j := strings.Index(rest, "UTCTIME:")
	if j < 0 {
		return ""
	}
	line := strings.TrimSpace(strings.SplitN(rest[j+len("UTCTIME:"):], "\n", 2)[0])
	out, err := exec.Command("date", "-u", "-d", strings.TrimSuffix(line, " GMT")+" UTC", "+%s").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func safe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
