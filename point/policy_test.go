package point_test

import (
	"testing"

	"github.com/pecgo/pec/point"
)

func TestPolicy(t *testing.T) {
	p := &point.Policy{ManagedDomains: []string{"pec-b.example.test"}, ServiceMailbox: "posta-certificata@pec-b.example.test",
		OrdinaryMail: "accept", Mailboxes: map[string]point.MailboxPolicy{
			"anna@pec-b.example.test":  {OrdinaryMail: "refuse"},
			"carla@pec-b.example.test": {ForwardTo: "carla@mail.example.org"}}}
	for _, tc := range []struct {
		addr            string
		managed         bool
		policy, forward string
	}{
		{"Luigi@PEC-B.example.test", true, "accept", ""},
		{"ANNA@pec-b.example.test", true, "refuse", ""},
		{"carla@pec-b.example.test", true, "accept", "carla@mail.example.org"},
		{"x@pec-b.example.test.evil", false, "accept", ""},
		{"pec-b.example.test", false, "accept", ""},
	} {
		if got := p.IsManaged(tc.addr); got != tc.managed {
			t.Errorf("IsManaged(%s) = %v", tc.addr, got)
		}
		if pol, fwd := p.Ordinary(tc.addr); pol != tc.policy || fwd != tc.forward {
			t.Errorf("Ordinary(%s) = %s, %s", tc.addr, pol, fwd)
		}
	}
	if !p.IsServiceMailbox("Posta-Certificata@pec-b.example.test") || p.IsServiceMailbox("luigi@pec-b.example.test") {
		t.Error("IsServiceMailbox")
	}
}
