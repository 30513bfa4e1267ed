package build_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pythonEmailCheck parses each file named on the command line with
// Python's email package (the modern policy), and fails when any entity,
// or any of its header fields, has a defect, or when a leaf part cannot
// be decoded (transfer encoding, then charset). Decoding comes first: a
// bad base64 body is registered as a defect only when it is decoded.
const pythonEmailCheck = `import sys, email, email.policy

failed = False
parts = 0
for path in sys.argv[1:]:
    with open(path, 'rb') as fp:
        msg = email.message_from_bytes(fp.read(), policy=email.policy.default)
    leaves = 0
    for i, part in enumerate(msg.walk()):
        where = '%s: part %d %s' % (path, i, part.get_content_type())
        if not part.is_multipart():
            leaves += 1
            try:
                if part.get_payload(decode=True) is None:
                    raise ValueError('get_payload(decode=True) returned None')
                part.get_content()
            except Exception as e:
                print('%s: cannot decode: %r' % (where, e))
                failed = True
        for d in part.defects:
            print('%s: defect %s: %s' % (where, type(d).__name__, d))
            failed = True
        for name, value in part.items():
            for d in getattr(value, 'defects', ()):
                print('%s: field %s: defect %s: %s' % (where, name, type(d).__name__, d))
                failed = True
    if leaves == 0:
        print('%s: no leaf part' % path)
        failed = True
    parts += leaves
print('checked %d messages, %d leaf parts' % (len(sys.argv) - 1, parts))
sys.exit(1 if failed else 0)
`

// runPythonEmail writes the messages to a temporary folder, runs
// pythonEmailCheck over them with the golden files, and returns its output
// and whether it passed.
func runPythonEmail(t *testing.T, msgs map[string][]byte, files ...string) (string, bool) {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (run scripts/install-deps)")
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "check.py")
	if err := os.WriteFile(script, []byte(pythonEmailCheck), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{script}
	for _, name := range sortedKeys(msgs) {
		file := filepath.Join(dir, strings.ReplaceAll(name, "/", "-")+".eml")
		if err := os.WriteFile(file, msgs[name], 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, file)
	}
	args = append(args, files...)
	out, err := exec.Command(python, args...).CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	return string(out), err == nil
}

// TestPythonEmailReadsEveryMessage: Python's email package parses every
// message we emit, and every golden message, with no defect, and decodes
// every part.
func TestPythonEmailReadsEveryMessage(t *testing.T) {
	msgs := every(t)
	raws := map[string][]byte{}
	for k, e := range msgs {
		raws[k] = e.raw
	}
	golden, err := filepath.Glob(filepath.Join("testdata", "golden", "*.eml"))
	if err != nil || len(golden) == 0 {
		t.Fatalf("no golden messages: %v", err)
	}
	out, ok := runPythonEmail(t, raws, golden...)
	if !ok {
		t.Fatalf("Python's email package finds defects:\n%s", out)
	}
	if want := fmt.Sprintf("checked %d messages,", len(raws)+len(golden)); !strings.Contains(out, want) {
		t.Fatalf("python3 output %q, want %q", out, want)
	}
	t.Log(strings.TrimSpace(out))
}

// TestPythonEmailCheckCatches: the script fails on a missing closing
// delimiter and on base64 that does not decode.
func TestPythonEmailCheckCatches(t *testing.T) {
	msgs := every(t)
	raw := msgs["golden/accettazione"].raw
	closing := regexp.MustCompile(`\r\n--(----=_PEC_mixed_[0-9a-f]+)--\r\n`)
	for _, c := range []struct {
		name   string
		broken []byte
		want   string
	}{
		{"no closing delimiter", closing.ReplaceAll(raw, []byte("\r\n")), "CloseBoundaryNotFoundDefect"},
		{"bad base64", textEdit("filename=\"daticert.xml\"\r\n\r\n", "filename=\"daticert.xml\"\r\n\r\nA")(raw), "InvalidBase64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if bytes.Equal(c.broken, raw) {
				t.Fatal("the edit changed nothing")
			}
			out, ok := runPythonEmail(t, map[string][]byte{"broken": c.broken})
			if ok || !strings.Contains(out, c.want) {
				t.Fatalf("passed %v, want a failure naming %s:\n%s", ok, c.want, out)
			}
		})
	}
}
