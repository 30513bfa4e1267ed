package config

import (
	"strings"
	"testing"
	"time"
)

// A retention shorter than 30 months is refused unless the configuration
// says, by name, that it is below the legal minimum.
func TestRetentionLegalMinimum(t *testing.T) {
	c, err := loadString(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Retention.Duration != LegalRetention {
		t.Errorf("default retention %s, want %s", c.Store.Retention.Duration, LegalRetention)
	}
	if c, err := loadString(t, "[store]\nretention = \"26280h\"\n"); err != nil || c.Store.Retention.Duration != 3*365*24*time.Hour {
		t.Errorf("three years: %v", err)
	}
	_, err = loadString(t, "[store]\nretention = \"8760h\"\n")
	if err == nil || !strings.Contains(err.Error(), "retention 8760h0m0s is shorter than the 30 months") ||
		!strings.Contains(err.Error(), "retention_below_legal_minimum") {
		t.Errorf("one year: error %v, want the legal minimum and the override named", err)
	}
	if _, err := loadString(t, "[store]\nretention = \"21959h\"\n"); err == nil {
		t.Error("one hour short of 915 days accepted")
	}
	c, err = loadString(t, "[store]\nretention = \"8760h\"\nretention_below_legal_minimum = true\n")
	if err != nil || c.Store.Retention.Duration != 8760*time.Hour {
		t.Errorf("one year with the override: %v", err)
	}
}
