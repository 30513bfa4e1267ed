package packaging

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/pecgo/pec/config"
)

const examplePath = "../pec.toml.example"

// tomlKey is one key of config.Config as written in the file
// ("provider", "provider.name", ...), in struct order.
type tomlKey struct {
	path  string
	index []int // reflect field index path
	table bool  // a [table] rather than a value
	isMap bool  // map[string]struct: tables chosen by the user
}

// isTable reports whether t is a struct whose fields carry toml tags
// (config.Duration is a struct too, but a value).
func isTable(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Tag.Get("toml") != "" {
			return true
		}
	}
	return false
}

func configKeys(t reflect.Type, prefix string, index []int) []tomlKey {
	var out []tomlKey
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		path := tag
		if prefix != "" {
			path = prefix + "." + tag
		}
		idx := append(append([]int(nil), index...), i)
		switch {
		case isTable(f.Type):
			out = append(out, tomlKey{path: path, index: idx, table: true})
			out = append(out, configKeys(f.Type, path, idx)...)
		case f.Type.Kind() == reflect.Map && isTable(f.Type.Elem()):
			out = append(out, tomlKey{path: path, index: idx, isMap: true})
		default:
			out = append(out, tomlKey{path: path, index: idx})
		}
	}
	return out
}

func load(t *testing.T, path string) *config.Config {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return c
}

// TestExampleConfigLoads: pec.toml.example parses with config.Load (no
// unknown keys, checks pass; the paths in it need not exist).
func TestExampleConfigLoads(t *testing.T) {
	c := load(t, examplePath)
	if c.Provider.Domain == "" || c.Store.Path == "" || c.Milter.Access == "" || c.Deliver.Listen == "" || c.Reinject.Address == "" {
		t.Errorf("example leaves an essential setting empty: %+v", c)
	}
	if !strings.HasPrefix(c.Store.Path, "/var/lib/pec/") {
		t.Errorf("[store] path %q is outside /var/lib/pec, the only directory the systemd units let the services write", c.Store.Path)
	}
}

// TestExampleConfigEveryKey: every key of config.Config is in the example,
// in the order of the structs, and nothing else is.
func TestExampleConfigEveryKey(t *testing.T) {
	var c config.Config
	md, err := toml.DecodeFile(examplePath, &c)
	if err != nil {
		t.Fatal(err)
	}
	var want, maps []string
	for _, k := range configKeys(reflect.TypeOf(c), "", nil) {
		if k.isMap {
			maps = append(maps, k.path)
			continue
		}
		want = append(want, k.path)
	}
	var got []string
	for _, k := range md.Keys() {
		got = append(got, k.String())
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("keys of pec.toml.example differ from config.Config (struct order).\n got: %v\nwant: %v\nmissing: %v\nextra: %v",
			got, want, minus(want, got), minus(got, want))
	}
	if len(maps) != 1 || maps[0] != "policy.mailboxes" {
		t.Errorf("map tables in config.Config: %v; the test knows policy.mailboxes only", maps)
	}
}

// TestExampleConfigDefaults: where config.Load fills a default, the example
// shows exactly that default.
func TestExampleConfigDefaults(t *testing.T) {
	ex := load(t, examplePath)
	minimal := filepath.Join(t.TempDir(), "min.toml")
	// only what has no default; the same domain so derived defaults agree
	src := "[provider]\nname = " + quote(ex.Provider.Name) + "\ndomain = " + quote(ex.Provider.Domain) + "\n" +
		"[store]\npath = " + quote(ex.Store.Path) + "\n" // [deliver] service_maildir derives from it
	if err := os.WriteFile(minimal, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	def := load(t, minimal)
	ve, vd := reflect.ValueOf(*ex), reflect.ValueOf(*def)
	n := 0
	for _, k := range configKeys(ve.Type(), "", nil) {
		if k.table || k.isMap {
			continue
		}
		d := vd.FieldByIndex(k.index)
		if d.IsZero() {
			continue // no default
		}
		n++
		if e := ve.FieldByIndex(k.index); !reflect.DeepEqual(e.Interface(), d.Interface()) {
			t.Errorf("%s = %v in the example, but the default is %v", k.path, e.Interface(), d.Interface())
		}
	}
	if n < 10 {
		t.Errorf("only %d defaulted settings compared", n)
	}
}

// TestExampleConfigMailboxes: the commented-out per-mailbox table is valid
// once uncommented and sets every Mailbox key.
func TestExampleConfigMailboxes(t *testing.T) {
	b, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#[policy.mailboxes."):
			in = true
		case in && !strings.HasPrefix(l, "#"):
			in = false
		}
		if in {
			block = append(block, strings.TrimPrefix(l, "#"))
		}
	}
	if len(block) == 0 {
		t.Fatal("no commented [policy.mailboxes.\"ADDR\"] example in pec.toml.example")
	}
	p := filepath.Join(t.TempDir(), "mb.toml")
	if err := os.WriteFile(p, []byte(string(b)+"\n"+strings.Join(block, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := load(t, p)
	if len(c.Policy.Mailboxes) != 1 {
		t.Fatalf("mailboxes: %+v", c.Policy.Mailboxes)
	}
	for addr, m := range c.Policy.Mailboxes {
		v := reflect.ValueOf(m)
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).IsZero() {
				t.Errorf("the example for mailbox %s does not show %s", addr, v.Type().Field(i).Tag.Get("toml"))
			}
		}
	}
}

func minus(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
