package config

import (
	"strings"
	"testing"
)

// require_tls_from_providers is on by default and reaches the rule
// policy; a value other than on/off is refused with what to write.
func TestRequireTLSFromProviders(t *testing.T) {
	c, err := loadString(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Milter.RequireTLSFromProviders != "on" || !c.RulePolicy().RequireTLSFromProviders {
		t.Errorf("default %q, policy %v: want on", c.Milter.RequireTLSFromProviders, c.RulePolicy().RequireTLSFromProviders)
	}
	c, err = loadString(t, "[milter]\nrequire_tls_from_providers = \"off\"\n")
	if err != nil || c.RulePolicy().RequireTLSFromProviders {
		t.Errorf("off: %v, policy %v", err, c != nil && c.RulePolicy().RequireTLSFromProviders)
	}
	_, err = loadString(t, "[milter]\nrequire_tls_from_providers = \"yes\"\n")
	if err == nil || !strings.Contains(err.Error(), `require_tls_from_providers "yes": use on or off`) {
		t.Errorf("yes: %v", err)
	}
}
