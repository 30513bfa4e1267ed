package main

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/logarchive"
)

// sealingFixture is the fixture with a [log] sealing key issued by a CA
// of its own (not the PEC CA); it returns that CA's root file.
func sealingFixture(t *testing.T, withRoots bool) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	dir := filepath.Join(f.dir, "sealing")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pki := testpki.New("pec.example.test")
	seal := pki.Issue(provName+" (registro)", "registro@pec.example.test", f.prov.Cert.NotBefore, f.prov.Cert.NotAfter, true)
	root, cert, key := pki.WriteFiles(dir, seal)
	roots := "[]"
	if withRoots {
		roots = `["` + root + `"]`
	}
	appendConfig(t, f, "\n[log]\ncertificate = \""+cert+"\"\nkey = \""+key+"\"\ntrusted_roots = "+roots+"\n")
	return f, root
}

func appendConfig(t *testing.T, f *fixture, s string) {
	t.Helper()
	fl, err := os.OpenFile(f.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if _, err := fl.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// Aruba §8.1: with a [log] sealing key the daily archive is signed by it,
// not by the PEC key: openssl verifies it against the sealing CA and not
// against the PEC CA; pecctl's own --verify takes [log] trusted_roots.
func TestLogArchiveSealingKey(t *testing.T) {
	openssl := needOpenSSL(t)
	f, sealRoot := sealingFixture(t, true)
	dir := filepath.Join(f.dir, "arch")
	code, out, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir)
	if code != 0 {
		t.Fatalf("archive: exit %d: %s %s", code, out, errOut)
	}
	if strings.Contains(errOut, "warning") {
		t.Errorf("a sealing key is configured, yet: %s", errOut)
	}
	files := logarchive.PathsFor(dir, "2024-03-02")
	verify := func(ca string) error {
		return exec.Command(openssl, "cms", "-verify", "-binary", "-inform", "DER", "-in", files.Signature,
			"-content", files.Data, "-CAfile", ca, "-purpose", "any", "-out", os.DevNull).Run()
	}
	if err := verify(sealRoot); err != nil {
		t.Errorf("openssl cms -verify against the sealing CA: %v", err)
	}
	if err := verify(f.root); err == nil {
		t.Error("the archive verifies against the PEC CA: it was signed with the PEC key")
	}
	code, out, _ = f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir)
	if code != 0 || !strings.Contains(out, "registro") {
		t.Errorf("--verify: exit %d, %q; want valid, signed by the sealing certificate", code, out)
	}

	// the extract for a mailbox holder too
	ext := filepath.Join(f.dir, "extract.eml")
	if code, _, errOut := f.run("log", "export", "--mailbox", mario, "--date", "2024-03-02", "-o", ext); code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("export: exit %d, %q", code, errOut)
	}
	if b, err := exec.Command(openssl, "smime", "-verify", "-in", ext, "-CAfile", sealRoot, "-purpose", "any", "-out", os.DevNull).CombinedOutput(); err != nil {
		t.Errorf("openssl smime -verify of the extract against the sealing CA: %v: %s", err, b)
	}
	if err := exec.Command(openssl, "smime", "-verify", "-in", ext, "-CAfile", f.root, "-purpose", "any", "-out", os.DevNull).Run(); err == nil {
		t.Error("the extract verifies against the PEC CA: it was signed with the PEC key")
	}
}

// Without [log] trusted_roots the sealing CA is unknown: --verify says so
// instead of passing.
func TestLogArchiveSealingRootsNeeded(t *testing.T) {
	f, _ := sealingFixture(t, false)
	dir := filepath.Join(f.dir, "arch")
	if code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir); code != 0 {
		t.Fatalf("archive: %s", errOut)
	}
	if code, out, _ := f.run("log", "archive", "--verify", "--day", "2024-03-02", "--dir", dir); code == 0 {
		t.Errorf("--verify passed with the sealing CA in no trusted_roots: %q", out)
	}
}

// No [log] key: the PEC key signs, and every run says so on stderr.
func TestLogSealingFallbackWarns(t *testing.T) {
	f := newFixture(t)
	var logged bytes.Buffer
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(&logged, nil)))
	dir := filepath.Join(f.dir, "arch")
	code, _, errOut := f.run("log", "archive", "--day", "2024-03-02", "--dir", dir)
	if code != 0 || !strings.Contains(errOut, "warning: no sealing key in [log]") || !strings.Contains(errOut, "Aruba §8.1") {
		t.Errorf("archive without [log] key: exit %d, stderr %q; want the fallback warning", code, errOut)
	}
	if !strings.Contains(logged.String(), "level=WARN") || !strings.Contains(logged.String(), `command="pecctl log archive"`) {
		t.Errorf("no structured warning logged: %q", logged.String())
	}
	rep, err := logarchive.Verify(dir, "2024-03-02", f.pki.Pool())
	if err != nil || !rep.Signer.Equal(f.prov.Cert) {
		t.Errorf("fallback archive: %v, signer %v; want the PEC certificate", err, rep)
	}
	code, _, errOut = f.run("log", "export", "--mailbox", mario, "--date", "2024-03-02", "-o", filepath.Join(f.dir, "x.eml"))
	if code != 0 || !strings.Contains(errOut, "warning: no sealing key in [log]") {
		t.Errorf("export without [log] key: exit %d, stderr %q", code, errOut)
	}
}

// A half-configured [log] is refused with what is missing.
func TestLogSealingConfigErrors(t *testing.T) {
	for _, tc := range []struct{ add, want string }{
		{"\n[log]\ncertificate = \"/nonexistent/seal.pem\"\n", "[log] key or pkcs11_module is required with certificate"},
		{"\n[log]\nkey = \"/nonexistent/seal-key.pem\"\n", "[log] certificate is required"},
		{"\n[log]\npkcs11_token = \"seal\"\n", "[log] pkcs11_* settings given without pkcs11_module"},
	} {
		f := newFixture(t)
		appendConfig(t, f, tc.add)
		if code, _, errOut := f.run("log", "archive", "--day", "2024-03-02"); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, %q; want %q", tc.add, code, errOut, tc.want)
		}
	}
}

// Archives sealed with the [log] key are read back wherever pecctl reads
// archives: purge checks them before it deletes rows, and export reads the
// purged days from them, both against [signing] and [log] trusted_roots.
func TestSealedArchivesPurgedAndExported(t *testing.T) {
	f, _ := sealingFixture(t, true)
	dir := filepath.Join(f.dir, "arch")
	for _, day := range []string{"2021-01-10", "2021-01-11", "2024-03-01", "2024-03-02"} {
		if code, out, errOut := f.run("log", "archive", "--day", day, "--dir", dir); code != 0 {
			t.Fatalf("archive %s: exit %d: %s %s", day, code, out, errOut)
		}
	}
	if code, out, errOut := f.run("log", "purge", "--before", "2024-03-03T00:00:00+01:00", "--force", "--dir", dir); code != 0 {
		t.Fatalf("purge of days sealed with the [log] key: exit %d: %s %s", code, out, errOut)
	}
	ext := filepath.Join(f.dir, "extract.eml")
	code, out, errOut := f.run("log", "export", "--mailbox", mario, "--date", "2024-03-02", "--dir", dir, "-o", ext)
	if code != 0 {
		t.Fatalf("export of a purged day from its sealed archive: exit %d: %s %s", code, out, errOut)
	}
	if b, err := os.ReadFile(ext); err != nil || !bytes.Contains(b, []byte(mario)) {
		t.Fatalf("the extract does not hold the mailbox's rows (%v)", err)
	}
}
