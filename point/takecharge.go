package point

import (
	"strings"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/kind"
)

// TakeCharge is the take-charge notice for the transport envelope tx
// (RFC 6109 §3.2.1): one per SMTP transaction, to the sending provider's
// mailReceipt, covering exactly the recipients that
//   - this transaction hands over to us (candidates),
//   - the envelope is addressed to (its daticert destinatari, §4.4), and
//   - no earlier take-charge covered (covered, lower case),
//
// each once. It returns the notice and those recipients (lower case), or
// nil and none when no recipient is left (a replay, a non-addressee).
// Both paths use it: the incoming point for other providers' envelopes
// (candidates: the transaction's recipients in our domains; covered: the
// log's take-charges for that PEC id) and the delivery point for our own
// envelopes, which never pass our incoming point (§3.4; candidates: the
// recipients whose delivery this transaction settled; covered: none, the
// deliveries table settles each recipient once).
func TakeCharge(p *build.Provider, now time.Time, tx *build.Tx, mailReceipt string, candidates []string, covered map[string]bool) (*build.Message, []string, error) {
	var charge []string
	seen := map[string]bool{}
	for _, r := range candidates {
		r = strings.ToLower(r)
		if seen[r] || covered[r] || !addressed(tx, r) {
			continue
		}
		seen[r] = true
		charge = append(charge, r)
	}
	if len(charge) == 0 {
		return nil, nil, nil
	}
	n, err := p.Render(build.Evidence{Kind: kind.PresaInCarico, Time: now, Tx: tx, MailReceipt: mailReceipt, Ricezione: charge})
	return n, charge, err
}
