package point

import (
	"strings"

	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
)

// aboutOurEnvelope reports whether the antivirus may skip m: a notice
// (not a transport envelope, not an anomaly envelope) signed by a
// provider of the index about a transport envelope we dispatched, for
// recipients we dispatched it to. RFC 6109 §2.2.2 asks the incoming point
// to check transport envelopes and ordinary mail for viruses; a notice
// carries at most the original we sent (a complete delivery receipt), and
// our access point scanned that before signing it (§3.1.3). Each content
// is then scanned once on its way instead of again in every receipt
// (issue: full-path efficiency). Anything else is scanned: an identifier
// of another domain, a recipient we did not send that envelope to, a log
// that cannot say (fail closed: scanned), no log at all.
func (in *Incoming) aboutOurEnvelope(m *parse.Message) bool {
	if in.History == nil || m.Daticert == nil || m.Kind == kind.PostaCertificata || m.Kind == kind.Anomalia {
		return false
	}
	id := m.Daticert.Identificativo
	if id == "" || !in.issuedHere(id) {
		return false
	}
	rcpts := m.Recipients()
	if len(rcpts) == 0 {
		return false
	}
	sentTo, err := dispatchedTo(in.History, id)
	if err != nil {
		return false
	}
	for _, r := range rcpts {
		if !sentTo(r) {
			return false
		}
	}
	return true
}

// issuedHere reports whether the identifier id is one of ours (its domain
// is our provider's).
func (in *Incoming) issuedHere(id string) bool {
	return strings.HasSuffix(strings.ToLower(id), "@"+strings.ToLower(in.Provider.Domain))
}
