package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
)

// TestService: suspend, status and resume change the row every process
// reads and log each change in the hash chain; repeating one is harmless.
func TestService(t *testing.T) {
	f := newFixture(t)
	if code, out, _ := f.run("service", "status"); code != 0 || strings.TrimSpace(out) != "active" {
		t.Fatalf("status of a new store: %d %q", code, out)
	}
	if code, _, errOut := f.run("service", "suspend"); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Fatalf("suspend without a reason: %d %q", code, errOut)
	}
	code, out, errOut := f.run("service", "suspend", "--reason", "manutenzione  straordinaria")
	if code != 0 || !strings.Contains(out, "suspended since") || !strings.Contains(out, "servizio sospeso (manutenzione straordinaria)") {
		t.Fatalf("suspend: %d %q %q", code, out, errOut)
	}
	if code, out, _ := f.run("service", "suspend", "--reason", "manutenzione straordinaria"); code != 0 || !strings.HasPrefix(out, "already suspended") {
		t.Fatalf("suspend again: %d %q", code, out)
	}
	if code, out, _ := f.run("service", "status"); code != 0 || !strings.Contains(out, "suspended since") || !strings.Contains(out, ": manutenzione straordinaria") {
		t.Fatalf("status while suspended: %d %q", code, out)
	}
	st, err := sqlite.Open(f.db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.ServiceState()
	if err != nil || !s.Suspended || s.Reason != "manutenzione straordinaria" || !strings.Contains(s.By, "@") {
		t.Fatalf("stored state %+v, %v", s, err)
	}
	st.Close()
	if code, out, errOut := f.run("service", "resume"); code != 0 || !strings.Contains(out, "active since") {
		t.Fatalf("resume: %d %q %q", code, out, errOut)
	}
	if code, out, _ := f.run("service", "resume"); code != 0 || !strings.HasPrefix(out, "not suspended") {
		t.Fatalf("resume again: %d %q", code, out)
	}
	st, err = sqlite.Open(f.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev, err := st.Events(store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, e := range ev {
		if e.Point == "service" {
			rows = append(rows, string(e.Type)+":"+e.Subject)
		}
	}
	if strings.Join(rows, ",") != "sospensione-servizio:manutenzione straordinaria,ripresa-servizio:" {
		t.Fatalf("service rows %v", rows)
	}
	if code, out, errOut := f.run("log", "verify"); code != 0 {
		t.Fatalf("log verify after the changes: %d %q %q", code, out, errOut)
	}
}

// config check reports the clock as the daemons judge it: a bound of
// 1 µs is exceeded by any kernel, synchronised or not; "off" is named.
func TestConfigCheckClock(t *testing.T) {
	f := newFixture(t)
	conf, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ bound, want string }{
		{"1us", "warning: clock: "},
		{"off", "warning: clock guard off"},
	} {
		b := bytes.Replace(conf, []byte("[signing]\n"), []byte("[signing]\nclock_max_error = \""+c.bound+"\"\n"), 1)
		if err := os.WriteFile(f.cfg, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, out, _ := f.run("config", "check")
		if !strings.Contains(out, c.want) {
			t.Errorf("clock_max_error %s: no %q in\n%s", c.bound, c.want, out)
		}
	}
}
