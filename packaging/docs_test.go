package packaging

import (
	"bytes"
	"compress/gzip"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// checkDocs looks at what the package puts in /usr/share/doc/pec and
// /usr/share/man, unpacked in root.
func checkDocs(t *testing.T, root, version string) {
	t.Helper()
	doc := filepath.Join(root, "usr/share/doc/pec")
	readme, _ := os.ReadFile("../README.md")
	if got, _ := os.ReadFile(filepath.Join(doc, "README.md")); !bytes.Equal(got, readme) {
		t.Error("/usr/share/doc/pec/README.md differs from README.md")
	}

	cl := gunzip(t, filepath.Join(doc, "changelog.gz"))
	lines := strings.Split(strings.TrimSpace(cl), "\n")
	if len(lines) < 3 || lines[0] != "pec ("+version+") unstable; urgency=medium" ||
		!regexp.MustCompile(`^ -- .+ <.+>  [A-Z][a-z]{2}, [ 0-9]?\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$`).MatchString(lines[len(lines)-1]) {
		t.Errorf("changelog.gz is not a Debian changelog entry for %s:\n%s", version, cl)
	}

	cr, err := os.ReadFile(filepath.Join(doc, "copyright"))
	if err != nil {
		t.Fatal(err)
	}
	c := string(cr)
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: *\n",
		// a statically linked module with its license text or reference
		"\nFiles: (linked Go module) github.com/mattn/go-sqlite3 ",
		"\nFiles: (linked Go module) github.com/prometheus/client_golang ",
		"License: Apache-2.0\n On Debian systems the full text of the Apache License 2.0 is in\n /usr/share/common-licenses/Apache-2.0.",
	} {
		if !strings.Contains(c, want) {
			t.Errorf("copyright lacks %q", want)
		}
	}
	for _, m := range []string{"usr/share/man/man8/pecmilter.8.gz", "usr/share/man/man8/pecdeliver.8.gz", "usr/share/man/man1/pecctl.1.gz"} {
		if page := gunzip(t, filepath.Join(root, m)); !strings.HasPrefix(page, ".TH ") {
			t.Errorf("%s is not a manual page", m)
		}
	}
	checkExampleIndex(t, root)
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// checkExampleIndex follows the recipe of the shipped example index:
// placeholders replaced, then "pecctl index hash --ldif" appended; the
// result must be an index that lists the provider with its certificate.
func checkExampleIndex(t *testing.T, root string) {
	t.Helper()
	ex, err := os.ReadFile(filepath.Join(root, "usr/share/doc/pec/examples/providers.ldif"))
	if err != nil {
		t.Fatal(err)
	}
	pki := testpki.New("pec.example.com")
	id := pki.Issue("Example PEC S.p.A.", "posta-certificata@pec.example.com", time.Time{}, time.Time{}, false)
	dir := t.TempDir()
	certPEM := filepath.Join(dir, "signing-cert.pem")
	os.WriteFile(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: id.Cert.Raw}), 0o644)
	out, err := exec.Command(filepath.Join(root, "usr/bin/pecctl"), "index", "hash", "--ldif", certPEM).Output()
	if err != nil {
		t.Fatalf("pecctl index hash --ldif: %v", err)
	}
	ldif := strings.NewReplacer("@PROVIDER_NAME@", "Example PEC S.p.A.", "@PEC_DOMAIN@", "pec.example.com").Replace(string(ex)) + string(out)
	ix, err := index.ParseLDIF(strings.NewReader(ldif))
	if err != nil {
		t.Fatalf("example index after the recipe: %v\n%s", err, ldif)
	}
	p, ok := ix.ByCertHash(smime.CertSHA1(id.Cert))
	if !ok || p.Name != "Example PEC S.p.A." || p.MailReceipt != "posta-certificata@pec.example.com" ||
		len(p.Certificates) != 1 || !p.Certificates[0].Equal(id.Cert) || len(ix.Warnings()) != 0 {
		t.Fatalf("example index: %v %+v %v", ok, p, ix.Warnings())
	}
	if q, ok := ix.ByDomain("pec.example.com"); !ok || q.Name != p.Name {
		t.Error("example index: the domain is not the provider's")
	}
}

// lintianCheck runs lintian on the package: no error or warning, and no
// informational tag that packaging/lintian-explained does not explain.
func lintianCheck(t *testing.T, deb string) {
	t.Helper()
	if _, err := exec.LookPath("lintian"); err != nil {
		t.Log("lintian not installed (scripts/install-deps installs it): package not linted")
		return
	}
	explained := map[string]bool{}
	b, err := os.ReadFile("lintian-explained")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if tag, why, ok := strings.Cut(l, ": "); ok && !strings.HasPrefix(l, "#") && strings.TrimSpace(why) != "" {
			explained[tag] = true
		}
	}
	out, _ := exec.Command("lintian", "--tag-display-limit", "0", "-I", deb).CombinedOutput()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 3 || len(f[0]) != 2 || f[0][1] != ':' {
			continue // "running with root privileges ..." and the like
		}
		severity, tag := f[0][:1], f[2]
		switch {
		case severity == "E" || severity == "W":
			t.Errorf("lintian: %s", l)
		case !explained[tag]:
			t.Errorf("lintian: %s (not explained in packaging/lintian-explained)", l)
		}
	}
}
