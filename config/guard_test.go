package config

import (
	"strings"
	"testing"
	"time"
)

// The clock guard is on by default at 1 s; "off" turns it off; anything
// else that is not a positive duration is refused with the fix.
func TestClockMaxError(t *testing.T) {
	c, err := loadString(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d, err := c.Signing.ClockBound(); d != time.Second || err != nil {
		t.Errorf("default bound %v, %v; want 1s", d, err)
	}
	for _, ok := range []struct {
		v    string
		want time.Duration
	}{{"off", 0}, {"500ms", 500 * time.Millisecond}, {"2s", 2 * time.Second}} {
		c, err := loadString(t, "[signing]\nclock_max_error = \""+ok.v+"\"\n")
		if err != nil {
			t.Fatalf("%s: %v", ok.v, err)
		}
		if d, _ := c.Signing.ClockBound(); d != ok.want {
			t.Errorf("%s: bound %v, want %v", ok.v, d, ok.want)
		}
	}
	for _, bad := range []string{"0s", "-1s", "one second", "on"} {
		if _, err := loadString(t, "[signing]\nclock_max_error = \""+bad+"\"\n"); err == nil || !strings.Contains(err.Error(), "clock_max_error") || !strings.Contains(err.Error(), "\"off\"") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}
