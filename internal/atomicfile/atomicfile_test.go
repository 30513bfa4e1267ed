package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The file is replaced whole with its mode; the hook runs on the
// temporary file while path still holds the old content; a failing hook
// leaves the old file and no temporary file behind.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var seen string
	err := Write(path, []byte("new\n"), 0o640, func(tmp string) error {
		b, _ := os.ReadFile(path)
		seen = string(b)
		if b, err := os.ReadFile(tmp); err != nil || string(b) != "new\n" {
			t.Errorf("temporary file before the rename: %q, %v", b, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != "old\n" {
		t.Errorf("path held %q while the hook ran, want the old content", seen)
	}
	fi, err := os.Stat(path)
	if b, _ := os.ReadFile(path); err != nil || string(b) != "new\n" || fi.Mode().Perm() != 0o640 {
		t.Fatalf("after Write: %q, mode %v, %v", b, fi.Mode(), err)
	}

	boom := errors.New("boom")
	if err := Write(path, []byte("lost\n"), 0o640, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("failing hook: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new\n" {
		t.Errorf("a failed Write replaced the file: %q", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files left in the directory, want only the target", len(ents))
	}
}
