package filter

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// The confirmation recipient: the access milter adds it to every
// transport envelope whose acceptance it holds (store.HoldUntilQueued);
// Postfix delivers it, from its queue, to the delivery point like any
// local recipient of the provider's domain, and the delivery point then
// makes the acceptance effective (store.ConfirmQueued). It never reaches
// a mailbox nor another provider: recipients of other domains go to their
// own relay, and the To/Cc header fields are not touched (RFC 6109 §3.1.5:
// the envelope goes to the original recipients).
const queuedLocalPart = "pec-queued"

// NewQueuedToken returns a random token naming one held acceptance
// (unguessable: whoever can name it can make an acceptance effective).
func NewQueuedToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// QueuedAddress is the confirmation recipient for token in domain.
func QueuedAddress(domain, token string) string {
	return queuedLocalPart + "+" + token + "@" + domain
}

// QueuedToken returns the token of a confirmation recipient in domain.
func QueuedToken(rcpt, domain string) (string, bool) {
	local, dom, ok := strings.Cut(strings.Trim(rcpt, "<>"), "@")
	if !ok || !strings.EqualFold(dom, domain) {
		return "", false
	}
	tok, ok := strings.CutPrefix(strings.ToLower(local), queuedLocalPart+"+")
	if !ok || len(tok) != 32 || strings.Trim(tok, "0123456789abcdef") != "" {
		return "", false
	}
	return tok, true
}
