package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestVirusListExtract(t *testing.T) {
	openssl := needOpenSSL(t)
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		f := bf.fixture
		code, out, errOut := f.run("virus", "list")
		if code != 0 || !strings.HasSuffix(out, "3 items\n") || strings.Count(out, "virus=Eicar-Test-Signature") != 3 {
			t.Fatalf("virus list: exit %d %q %q", code, out, errOut)
		}
		code, out, _ = f.run("virus", "list", "--from", "2024-03-02", "--to", "2024-03-02", "--json")
		var l []virusJSON
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l) != 2 ||
			l[0].PECID != "opec-103.20240302@pec.example.test" || l[1].PECID != "opec-vir.20240302@pec.other.test" {
			t.Fatalf("virus list of the 2nd: exit %d %s", code, out)
		}
		data := []byte("infected bytes (test data)")
		sum := sha256.Sum256(data)
		if l[1].Size != len(data) || l[1].SHA256 != hex.EncodeToString(sum[:]) || l[1].Sender != bob || len(l[1].Recipients) != 2 {
			t.Errorf("item %+v", l[1])
		}

		// a signed extract of one transaction's items
		file := filepath.Join(t.TempDir(), "virus.eml")
		if code, _, errOut := f.run("virus", "extract", "--pecid", "opec-vir.20240302@pec.other.test", "-o", file); code != 0 {
			t.Fatalf("virus extract: exit %d %s", code, errOut)
		}
		cmd := exec.Command(openssl, "smime", "-verify", "-in", file, "-CAfile", f.root, "-purpose", "any")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("openssl smime -verify: %v: %s", err, stderr.String())
		}
		att := exportAttachments(t, stdout.Bytes())
		name := fmt.Sprintf("virus-%d.eml.bin", l[1].ID)
		if len(att) != 1 || !bytes.Equal(att[name], data) {
			t.Errorf("attachments %v, want %s holding the item", att, name)
		}
		// the bare item
		rawFile := filepath.Join(t.TempDir(), "item.bin")
		if code, _, errOut := f.run("virus", "extract", "--id", fmt.Sprint(l[0].ID), "--raw", "-o", rawFile); code != 0 {
			t.Fatalf("virus extract --raw: exit %d %s", code, errOut)
		}
		if b, _ := os.ReadFile(rawFile); !bytes.Equal(b, data) {
			t.Errorf("raw item %q", b)
		}
		if fi, err := os.Stat(rawFile); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("raw item mode %v %v", fi, err)
		}
		code, _, errOut = f.run("virus", "extract", "--id", "99999", "-o", rawFile)
		if code != 1 || !strings.Contains(errOut, "no virus store item 99999") {
			t.Errorf("unknown item: exit %d %q", code, errOut)
		}
		for _, args := range [][]string{
			{"virus"}, {"virus", "show"}, {"virus", "extract", "--id", "1"}, {"virus", "extract", "-o", rawFile},
			{"virus", "extract", "--pecid", "x", "--raw", "-o", rawFile}, {"virus", "list", "--from", "2024-03-02"},
		} {
			if code, _, _ := f.run(args...); code != 2 {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
		}
	})
}
