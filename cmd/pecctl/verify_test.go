package main

import (
	"bufio"
	"bytes"
	"crypto"
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
	"github.com/pecgo/pec/internal/pectest"
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
	if strings.Count(out, "  signature:       valid\n") != len(files) || strings.Count(out, "  chain:           valid (roots: --ca "+goldenRoot()+")\n") != len(files) {
		t.Fatalf("not every file valid:\n%s", out)
	}
	if strings.Contains(out, "error:") || errOut != "" {
		t.Fatalf("errors reported:\n%s\n%s", out, errOut)
	}
}

// noSystemRoots hides the system's CA bundle from pecctl verify.
func noSystemRoots(t *testing.T) {
	t.Setenv("SSL_CERT_FILE", filepath.Join(t.TempDir(), "no-such-bundle.pem"))
}

// No --ca, no configuration, no system roots: the chain is not checked,
// and the output says so; exit 0 means the signature only.
func TestVerifyGoldenWithoutCA(t *testing.T) {
	noSystemRoots(t)
	files := allGolden(t)
	missingCfg := filepath.Join(t.TempDir(), "pec.toml")
	code, out, errOut := runCmd(append([]string{"verify"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if n := strings.Count(out, "  chain:           NOT CHECKED: no trusted roots (pass --ca FILE); a valid result means the signature only\n"); n != len(files) {
		t.Fatalf("%d of %d files say the chain was not checked:\n%s", n, len(files), out)
	}
	// --json: chain_valid is null, chain_checked false, roots none
	code, out, _ = runCmd(append([]string{"verify", "--json"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, o := range jsonLines(t, out) {
		if string(o["chain_valid"]) != "null" || string(o["signature_valid"]) != "true" || string(o["chain_checked"]) != "false" || str(t, o["roots"]) != "none" {
			t.Fatalf("chain_valid %s signature_valid %s chain_checked %s roots %s", o["chain_valid"], o["signature_valid"], o["chain_checked"], o["roots"])
		}
	}
	// an explicit -config that does not exist is a usage error
	if code, _, errOut := runCmd("verify", "-config", missingCfg, files[0]); code != 2 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing -config: exit %d %q", code, errOut)
	}
}

// Without --ca: the configuration's trusted_roots, else the system roots.
func TestVerifyDefaultRoots(t *testing.T) {
	file := goldenFile("avvenuta-consegna-completa")
	// the system bundle (SSL_CERT_FILE) holding the test root
	t.Setenv("SSL_CERT_FILE", goldenRoot())
	code, out, errOut := runCmd("verify", "--json", "-config", filepath.Join(t.TempDir(), "absent.toml"), file)
	if code != 2 {
		t.Fatalf("explicit missing config: exit %d %s %s", code, out, errOut)
	}
	code, out, errOut = runCmd("verify", "--json", file)
	o := jsonLines(t, out)
	if code != 0 || len(o) != 1 || string(o[0]["chain_valid"]) != "true" || str(t, o[0]["roots"]) != "system "+goldenRoot() {
		t.Fatalf("system roots: exit %d\n%s\n%s", code, out, errOut)
	}
	// a configuration whose trusted_roots is another root: it wins over the system's
	other := filepath.Join(t.TempDir(), "other.pem")
	os.WriteFile(other, testpki.PEM(testpki.New("pec-b.example.test").Root.Cert), 0o644)
	cfg := writeVerifyConfig(t, other)
	code, out, _ = runCmd("verify", "--json", "-config", cfg, file)
	o = jsonLines(t, out)
	if code != 1 || string(o[0]["chain_valid"]) != "false" || !strings.HasPrefix(str(t, o[0]["roots"]), "configuration "+cfg) {
		t.Fatalf("configuration roots: exit %d\n%s", code, out)
	}
	cfg = writeVerifyConfig(t, goldenRoot())
	code, out, _ = runCmd("verify", "-config", cfg, file)
	if code != 0 || !strings.Contains(out, "  chain:           valid (roots: configuration "+cfg+" [signing] trusted_roots)\n") {
		t.Fatalf("configuration roots: exit %d\n%s", code, out)
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
	noSystemRoots(t)
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
	if code != 1 || !strings.Contains(out, "  chain:           INVALID (roots: --ca "+other+")\n") {
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
	noSystemRoots(t)
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
	fileKeys     = []string{"chain_checked", "chain_valid", "daticert", "error", "file", "header_type", "kind", "roots", "signature_valid", "signer_sha1", "signer_subject", "signing_time", "warnings"}
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

	// a micalg naming another digest is a warning: the CMS signature
	// alone decides (RFC 5751 §3.4.3.2)
	code, out, _ = runCmd("verify", "--json", "--ca", root, mismatch)
	if code != 0 {
		t.Fatalf("micalg mismatch: exit %d\n%s", code, out)
	}
	var mm fileJSON
	json.Unmarshal([]byte(out), &mm)
	if !mm.SignatureValid || mm.ChainValid == nil || !*mm.ChainValid || mm.Error != "" || len(mm.Warnings) != 1 || !strings.Contains(mm.Warnings[0], `micalg="sha1" does not name the CMS digest SHA-256`) {
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

// writeVerifyConfig writes a configuration whose only trust is roots.
func writeVerifyConfig(t *testing.T, roots string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "pec.toml")
	conf := "[provider]\nname = \"Provider A S.p.A.\"\ndomain = \"pec-a.example.test\"\n\n[signing]\ntrusted_roots = [\"" + roots + "\"]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// Messages built the way genuine providers built theirs (PEC-SPEC §6.7),
// through pecctl verify --json: each verifies, with its daticert read and
// the quirk named in warnings or chain_note.
func TestVerifyProviderQuirks(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, raw []byte) string {
		f := filepath.Join(dir, name+".eml")
		if err := os.WriteFile(f, raw, 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	envelopeBy := func(id *testpki.Provider, domain string, h crypto.Hash, at time.Time, subject string) []byte {
		p := &build.Provider{Name: "Old PEC S.p.A.", Domain: domain, Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain, Hash: h}}
		o, err := build.ParseOriginal([]byte("From: mario.rossi@" + domain + "\r\nTo: luigi.verdi@pec-b.example.test\r\nSubject: " + subject + "\r\nMessage-ID: <q1@client.example.org>\r\n\r\nciao\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		tx := o.Tx(p.NewIDAt(at), o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
		m, err := p.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
		if err != nil {
			t.Fatal(err)
		}
		return m.Bytes()
	}
	type result struct {
		fileJSON
		Daticert *daticertJSON `json:"daticert"`
	}
	check := func(t *testing.T, file, root string, wantCode int) result {
		t.Helper()
		code, out, errOut := runCmd("verify", "--json", "--ca", root, file)
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("%v: %s %s", err, out, errOut)
		}
		if code != wantCode {
			t.Fatalf("exit %d, want %d\n%s", code, wantCode, out)
		}
		return r
	}

	t.Run("SHA-1 chain of 2015", func(t *testing.T) {
		old := testpki.NewSHA1(t, testpki.SHA1Options{})
		at := time.Date(2015, 6, 1, 10, 0, 0, 0, time.UTC)
		f := write("sha1", envelopeBy(old.Provider, "pec-old.example.test", crypto.SHA1, at, "prova"))
		root := filepath.Join(old.Dir, "root.pem")
		r := check(t, f, root, 0)
		if !r.SignatureValid || r.ChainValid == nil || !*r.ChainValid || !strings.Contains(r.ChainNote, "SHA-1") || r.Daticert == nil {
			t.Fatalf("%+v", r)
		}
		// the same chain for a message signed after the cut-off: refused
		code, out, _ := runCmd("verify", "--json", "--ca", root, "--sha1-cutoff", "2015-01-01", f)
		if code != 1 || !strings.Contains(out, `"chain_valid":false`) || !strings.Contains(out, "accepted only for messages signed before 2015-01-01") {
			t.Fatalf("cut-off 2015-01-01: exit %d %s", code, out)
		}
	})

	pki := testpki.New("pec-q.example.test")
	id := pki.Issue("Quirky PEC S.p.A.", "posta-certificata@pec-q.example.test", time.Time{}, time.Time{}, false)
	root := filepath.Join(dir, "root.pem")
	os.WriteFile(root, testpki.PEM(pki.Root.Cert), 0o644)
	at := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	plain := envelopeBy(id, "pec-q.example.test", crypto.SHA256, at, "Fattura 7")

	for _, tc := range []struct{ name, oggetto, warn string }{
		{"reference &#18; in oggetto", "Fattura&#18; 7", "&#18;"},
		{"raw U+0016 in oggetto", "Fattura\x16 7", "U+0016"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := pectest.Resign(t, id, plain, at, func(x []byte) []byte {
				return bytes.Replace(x, []byte("<oggetto>Fattura 7</oggetto>"), []byte("<oggetto>"+tc.oggetto+"</oggetto>"), 1)
			}, nil)
			r := check(t, write("ctl", raw), root, 0)
			if r.Daticert == nil || r.Daticert.Oggetto == nil || *r.Daticert.Oggetto != "Fattura\uFFFD 7" || len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], tc.warn) {
				t.Fatalf("%+v", r)
			}
		})
	}
	for _, tc := range []struct{ micalg, warn string }{
		{`micalg=sha256`, ""}, {`micalg="sha-256"`, ""}, {`micalg=SHA-256`, ""},
		{`micalg=sha-1`, `micalg="sha-1" does not name the CMS digest SHA-256`},
	} {
		t.Run(tc.micalg, func(t *testing.T) {
			raw := bytes.Replace(plain, []byte(`micalg="sha-256"`), []byte(tc.micalg), 1)
			r := check(t, write("micalg", raw), root, 0)
			if r.Daticert == nil || (tc.warn == "") != (len(r.Warnings) == 0) || tc.warn != "" && !strings.Contains(r.Warnings[0], tc.warn) {
				t.Fatalf("%+v", r)
			}
		})
	}
	t.Run("Subject edited after signing", func(t *testing.T) {
		raw := bytes.Replace(plain, []byte("Subject: POSTA CERTIFICATA: Fattura 7"), []byte("Subject: POSTA CERTIFICATA: Fattura 8"), 1)
		r := check(t, write("subject", raw), root, 0)
		if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], `oggetto "Fattura 7"`) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("broken signature and broken daticert", func(t *testing.T) {
		raw := pectest.Resign(t, id, plain, at, func(x []byte) []byte {
			return bytes.Replace(x, []byte("<gestore-emittente>"), []byte("<gestore-emittente x=>"), 1)
		}, nil)
		i := bytes.Index(raw, []byte("Content-Type: text/plain"))
		raw[i+len("Content-Type: text/plai")] = 'N'
		r := check(t, write("both", raw), root, 1)
		if !strings.Contains(r.Error, "digest mismatch") {
			t.Fatalf("error %q, want the signature's first", r.Error)
		}
	})
}
