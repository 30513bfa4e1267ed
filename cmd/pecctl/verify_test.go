package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
)

// The committed golden messages (one per kind, signed by a test PKI whose
// root is root.pem) and the kind pecctl must print for each.
var goldenDir = filepath.Join("..", "..", "build", "testdata", "golden")

var goldenKinds = map[string]string{
	"accettazione":                "accettazione",
	"non-accettazione":            "non-accettazione",
	"non-accettazione-virus":      "non-accettazione",
	"posta-certificata":           "posta-certificata",
	"preavviso-12h":               "preavviso-errore-consegna",
	"preavviso-24h":               "preavviso-errore-consegna",
	"presa-in-carico":             "presa-in-carico",
	"anomalia":                    "anomalia",
	"rilevazione-virus":           "rilevazione-virus",
	"errore-consegna-virus":       "errore-consegna",
	"avvenuta-consegna-completa":  "avvenuta-consegna",
	"avvenuta-consegna-breve":     "avvenuta-consegna",
	"avvenuta-consegna-sintetica": "avvenuta-consegna",
	"errore-consegna":             "errore-consegna",
}

func goldenFile(name string) string { return filepath.Join(goldenDir, name+".eml") }

func goldenRoot() string { return filepath.Join(goldenDir, "root.pem") }

func allGolden(t *testing.T) []string {
	t.Helper()
	var files []string
	for name := range goldenKinds {
		f := goldenFile(name)
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("golden file: %v", err)
		}
		files = append(files, f)
	}
	sort.Strings(files)
	return files
}

func runCmd(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// jsonLines decodes the --json output: exactly one object per line.
func jsonLines(t *testing.T, out string) []map[string]json.RawMessage {
	t.Helper()
	var objs []map[string]json.RawMessage
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not one JSON object: %v", sc.Text(), err)
		}
		objs = append(objs, m)
	}
	return objs
}

func keys[V any](m map[string]V) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

func str(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("%s is not a string: %v", raw, err)
	}
	return s
}

// flipSigned returns a copy of the golden file name with one byte of its
// signed part changed, written in dir.
func flipSigned(t *testing.T, dir, name string) string {
	t.Helper()
	raw, err := os.ReadFile(goldenFile(name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := parse.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(raw, m.Content)
	if i < 0 {
		t.Fatal("signed content not found")
	}
	j := i + bytes.Index(m.Content, []byte("Il giorno"))
	raw[j] ^= 0x20 // "Il giorno" -> "il giorno": same length, still text
	out := filepath.Join(dir, name+"-flipped.eml")
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyGoldenWithCA(t *testing.T) {
	files := allGolden(t)
	code, out, errOut := runCmd(append([]string{"verify", "--ca", goldenRoot()}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, f := range files {
		if !strings.Contains(out, f+":\n") {
			t.Errorf("no report for %s", f)
		}
	}
	if strings.Count(out, "  signature:       valid\n") != len(files) || strings.Count(out, "  chain:           valid\n") != len(files) {
		t.Fatalf("not every file valid:\n%s", out)
	}
	if strings.Contains(out, "error:") || errOut != "" {
		t.Fatalf("errors reported:\n%s\n%s", out, errOut)
	}
}

func TestVerifyGoldenWithoutCA(t *testing.T) {
	files := allGolden(t)
	code, out, errOut := runCmd(append([]string{"verify"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out, "chain:") {
		t.Fatalf("chain reported without --ca:\n%s", out)
	}
	// --json: chain_valid is null without --ca
	code, out, _ = runCmd(append([]string{"verify", "--json"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, o := range jsonLines(t, out) {
		if string(o["chain_valid"]) != "null" || string(o["signature_valid"]) != "true" {
			t.Fatalf("chain_valid %s signature_valid %s", o["chain_valid"], o["signature_valid"])
		}
	}
}

// Flags may follow the files; --ca may be repeated.
func TestVerifyFlagsAfterFiles(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(other, testpki.PEM(testpki.New("pec.example.test").Root.Cert), 0o644)
	code, out, errOut := runCmd("verify", goldenFile("accettazione"), "--json", "--ca", other, goldenFile("anomalia"), "--ca", goldenRoot())
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := len(jsonLines(t, out)); n != 2 {
		t.Fatalf("%d JSON lines, want 2", n)
	}
}

func TestVerifyFlippedByte(t *testing.T) {
	bad := flipSigned(t, t.TempDir(), "posta-certificata")
	for _, ca := range [][]string{nil, {"--ca", goldenRoot()}} {
		args := append(append([]string{"verify", "--json"}, ca...), goldenFile("accettazione"), bad)
		code, out, errOut := runCmd(args...)
		if code != 1 {
			t.Fatalf("%v: exit %d, want 1\n%s\n%s", ca, code, out, errOut)
		}
		objs := jsonLines(t, out)
		if len(objs) != 2 || string(objs[0]["signature_valid"]) != "true" || string(objs[1]["signature_valid"]) != "false" {
			t.Fatalf("%v: %s", ca, out)
		}
		if e := str(t, objs[1]["error"]); !strings.Contains(e, "digest mismatch") {
			t.Fatalf("error %q", e)
		}
		if str(t, objs[0]["error"]) != "" {
			t.Fatalf("good file reports %s", objs[0]["error"])
		}
	}
}

// A root that did not issue the chain: signature valid, chain not.
func TestVerifyOtherRoot(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(other, testpki.PEM(testpki.New("pec-a.example.test", "pec-b.example.test").Root.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd("verify", "--json", "--ca", other, goldenFile("avvenuta-consegna-completa"))
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	o := jsonLines(t, out)[0]
	if string(o["signature_valid"]) != "true" || string(o["chain_valid"]) != "false" || !strings.Contains(str(t, o["error"]), "chain") {
		t.Fatalf("%s", out)
	}
	// text form says so too
	code, out, _ = runCmd("verify", "--ca", other, goldenFile("avvenuta-consegna-completa"))
	if code != 1 || !strings.Contains(out, "  chain:           INVALID\n") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func TestVerifyUsageErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	os.WriteFile(notPEM, []byte("no certificate here\n"), 0o644)
	good := goldenFile("accettazione")
	for name, args := range map[string][]string{
		"no command":      {},
		"unknown command": {"frobnicate"},
		"no files":        {"verify"},
		"only flags":      {"verify", "--json", "--ca", goldenRoot()},
		"unknown flag":    {"verify", "--frobnicate", good},
		"ca needs value":  {"verify", good, "--ca"},
		"missing ca":      {"verify", "--ca", filepath.Join(dir, "absent.pem"), good},
		"ca is a dir":     {"verify", "--ca", dir, good},
		"ca without PEM":  {"verify", "--ca", notPEM, good},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runCmd(args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s\n%s", code, out, errOut)
			}
			if errOut == "" {
				t.Fatal("nothing on stderr")
			}
			if out != "" {
				t.Fatalf("stdout %q on a usage error", out)
			}
		})
	}
	if code, out, _ := runCmd("help"); code != 0 || !strings.Contains(out, "verify") {
		t.Fatalf("help: %d %q", code, out)
	}
}

// An unreadable file is reported and makes the exit status 1, the other
// files are still verified.
func TestVerifyUnreadableFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "absent.eml")
	code, out, _ := runCmd("verify", "--json", missing, goldenFile("accettazione"))
	if code != 1 {
		t.Fatalf("exit %d", code)
	}
	objs := jsonLines(t, out)
	if len(objs) != 2 || str(t, objs[0]["error"]) == "" || str(t, objs[0]["kind"]) != "ordinaria" || str(t, objs[1]["error"]) != "" {
		t.Fatalf("%s", out)
	}
}

var (
	fileKeys     = []string{"chain_valid", "daticert", "error", "file", "header_type", "kind", "signature_valid", "signer_sha1", "signer_subject", "signing_time"}
	daticertKeys = []string{"consegna", "destinatari", "errore", "errore_esteso", "gestore_emittente", "giorno", "identificativo", "mittente", "msgid", "oggetto", "ora", "ricevuta", "ricezione", "risposte", "tipo", "zona"}
	sha1RE       = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// The --json output: one object per line with exactly the documented keys.
func TestVerifyJSON(t *testing.T) {
	files := allGolden(t)
	plain := filepath.Join(t.TempDir(), "plain.eml")
	os.WriteFile(plain, []byte("From: someone@mail.example.org\r\nTo: luigi.verdi@pec-b.example.test\r\nSubject: ciao\r\n\r\nposta ordinaria\r\n"), 0o644)
	code, out, errOut := runCmd(append([]string{"verify", "--json", "--ca", goldenRoot()}, append(files, plain)...)...)
	if code != 1 { // the plain message is not PEC
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if n := strings.Count(out, "\n"); n != len(files)+1 {
		t.Fatalf("%d lines for %d files", n, len(files)+1)
	}
	objs := jsonLines(t, out)
	for i, o := range objs {
		if got := keys(o); !equal(got, fileKeys) {
			t.Fatalf("keys %v, want %v", got, fileKeys)
		}
		file := str(t, o["file"])
		if i == len(files) { // the plain message
			if file != plain || str(t, o["kind"]) != "ordinaria" || str(t, o["header_type"]) != "" ||
				string(o["daticert"]) != "null" || string(o["signature_valid"]) != "false" || string(o["chain_valid"]) != "false" ||
				string(o["signing_time"]) != "null" || !strings.Contains(str(t, o["error"]), "not a PEC message") {
				t.Fatalf("plain message: %v", o)
			}
			continue
		}
		if file != files[i] {
			t.Fatalf("file %q, want %q (order of the arguments)", file, files[i])
		}
		name := strings.TrimSuffix(filepath.Base(file), ".eml")
		k := str(t, o["kind"])
		if k != goldenKinds[name] {
			t.Errorf("%s: kind %q, want %q", name, k, goldenKinds[name])
		}
		ht := str(t, o["header_type"])
		switch k {
		case "posta-certificata":
			if ht != "X-Trasporto: posta-certificata" {
				t.Errorf("%s: header_type %q", name, ht)
			}
		case "anomalia":
			if ht != "X-Trasporto: errore" {
				t.Errorf("%s: header_type %q", name, ht)
			}
		default:
			if ht != "X-Ricevuta: "+k {
				t.Errorf("%s: header_type %q", name, ht)
			}
		}
		if string(o["signature_valid"]) != "true" || string(o["chain_valid"]) != "true" || str(t, o["error"]) != "" {
			t.Errorf("%s: not valid: %v", name, o)
		}
		if ts, err := time.Parse(time.RFC3339, str(t, o["signing_time"])); err != nil || ts.Year() != 2026 {
			t.Errorf("%s: signing_time %s", name, o["signing_time"])
		}
		if !strings.Contains(str(t, o["signer_subject"]), "O=Provider ") || !sha1RE.MatchString(str(t, o["signer_sha1"])) {
			t.Errorf("%s: signer %s %s", name, o["signer_subject"], o["signer_sha1"])
		}
		if k == "anomalia" {
			if string(o["daticert"]) != "null" {
				t.Errorf("anomalia with daticert %s", o["daticert"])
			}
			continue
		}
		checkDaticertJSON(t, name, k, o["daticert"])
	}
}

func checkDaticertJSON(t *testing.T, name, kind string, raw json.RawMessage) {
	t.Helper()
	var d map[string]json.RawMessage
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: daticert %s: %v", name, raw, err)
	}
	if got := keys(d); !equal(got, daticertKeys) {
		t.Fatalf("%s: daticert keys %v, want %v", name, got, daticertKeys)
	}
	if tipo := str(t, d["tipo"]); tipo != kind {
		t.Errorf("%s: tipo %q, kind %q", name, tipo, kind)
	}
	var dest []map[string]string
	if err := json.Unmarshal(d["destinatari"], &dest); err != nil || len(dest) != 3 {
		t.Fatalf("%s: destinatari %s: %v", name, d["destinatari"], err)
	}
	for _, x := range dest {
		if len(x) != 2 || x["addr"] == "" || (x["tipo"] != "certificato" && x["tipo"] != "esterno") {
			t.Fatalf("%s: destinatario %v", name, x)
		}
	}
	var ric []string
	if err := json.Unmarshal(d["ricezione"], &ric); err != nil || ric == nil {
		t.Fatalf("%s: ricezione %s is not a list", name, d["ricezione"])
	}
	if kind == "presa-in-carico" && len(ric) != 2 {
		t.Errorf("%s: ricezione %v", name, ric)
	}
	if str(t, d["identificativo"]) != "pec202611231504050001@pec-a.example.test" || str(t, d["msgid"]) != "<20261123150400.abc@client.example.test>" {
		t.Errorf("%s: identificativo %s msgid %s", name, d["identificativo"], d["msgid"])
	}
	wantDay := "23/11/2026"
	if kind == "preavviso-errore-consegna" { // 12 h and 23 h after the envelope
		wantDay = "24/11/2026"
	}
	if str(t, d["zona"]) != "+0100" || str(t, d["giorno"]) != wantDay || !regexp.MustCompile(`^[0-9]{2}:[0-9]{2}:[0-9]{2}$`).MatchString(str(t, d["ora"])) {
		t.Errorf("%s: data %s %s %s", name, d["zona"], d["giorno"], d["ora"])
	}
	if str(t, d["oggetto"]) != "Fattura n. 12 del 2026" || str(t, d["mittente"]) != "mario.rossi@pec-a.example.test" || str(t, d["risposte"]) != "mario.rossi@pec-a.example.test" {
		t.Errorf("%s: intestazione %s %s %s", name, d["oggetto"], d["mittente"], d["risposte"])
	}
	if e := str(t, d["errore"]); e == "" || (name == "errore-consegna" && e != "no-dest") || (strings.HasSuffix(name, "-virus") && e != "virus") {
		t.Errorf("%s: errore %q", name, e)
	}
	if kind == "avvenuta-consegna" && (str(t, d["ricevuta"]) == "" || str(t, d["consegna"]) == "") {
		t.Errorf("%s: ricevuta %s consegna %s", name, d["ricevuta"], d["consegna"])
	}
	if name == "errore-consegna" && !strings.Contains(str(t, d["errore_esteso"]), "5.1.1") {
		t.Errorf("%s: errore_esteso %s", name, d["errore_esteso"])
	}
	_ = str(t, d["gestore_emittente"])
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// A message built at test time with a fresh PKI: valid with its own root,
// the JSON daticert equals the one the builder signed, and a message whose
// signature is good but whose micalg disagrees is not valid (exit 1).
func TestVerifyBuiltAtTestTime(t *testing.T) {
	pki := testpki.New("pec.example.test")
	id := pki.Issue("Test PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	p := &build.Provider{Name: "Test PEC S.p.A.", Domain: "pec.example.test", Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}
	o, err := build.ParseOriginal([]byte("From: mario.rossi@pec.example.test\r\nTo: luigi.verdi@pec.example.test\r\nSubject: prova\r\nMessage-ID: <a1@client.example.org>\r\n\r\nciao\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	tx := o.Tx(p.NewIDAt(at), o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
	m, err := p.Accettazione(at, tx)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root.pem")
	msg := filepath.Join(dir, "accettazione.eml")
	mismatch := filepath.Join(dir, "micalg.eml")
	os.WriteFile(root, testpki.PEM(pki.Root.Cert), 0o644)
	os.WriteFile(msg, m.Bytes(), 0o644)
	os.WriteFile(mismatch, bytes.Replace(m.Bytes(), []byte(`micalg="sha-256"`), []byte(`micalg="sha1"`), 1), 0o644)

	code, out, errOut := runCmd("verify", "--json", "--ca", root, msg)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	var got struct {
		Kind       string       `json:"kind"`
		SignerSHA1 string       `json:"signer_sha1"`
		Daticert   daticertJSON `json:"daticert"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if want := *toJSON(m.Daticert); got.Kind != "accettazione" || got.SignerSHA1 != smime.CertSHA1(id.Cert) || !jsonEqual(t, got.Daticert, want) {
		t.Fatalf("got %+v\nwant daticert %+v", got, want)
	}

	code, out, _ = runCmd("verify", "--json", "--ca", root, mismatch)
	if code != 1 {
		t.Fatalf("micalg mismatch: exit %d\n%s", code, out)
	}
	var mm fileJSON
	json.Unmarshal([]byte(out), &mm)
	if !mm.SignatureValid || mm.ChainValid == nil || !*mm.ChainValid || !strings.Contains(mm.Error, "micalg") {
		t.Fatalf("micalg mismatch: %+v", mm)
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	return bytes.Equal(x, y)
}
