package point

import (
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/store"
)

// requireTLS applies Policy.RequireTLSFromProviders (RFC 6109 §5.3, Aruba
// §7.3.3: mail between PEC providers travels with TLS) to a message whose
// signer is a provider of the index: without TLS it is tempfailed, so the sending MTA
// keeps it and retries (over TLS, once its smtp_tls_policy_maps is right),
// and nothing is taken in charge. stop is false when the message may go on.
func (in *Incoming) requireTLS(env Envelope, o *build.Original, now time.Time, provider, signerSHA1 string) (d Decision, stop bool) {
	if in.Policy == nil || !in.Policy.RequireTLSFromProviders || env.TLS {
		return Decision{}, false
	}
	why := "message signed by provider " + provider + " received without TLS"
	in.log().Warn("PEC message from a provider without TLS: tempfailed (require_tls_from_providers)",
		"queue_id", env.QueueID, "provider", provider, "signer_sha1", signerSHA1, "mail_from", env.MailFrom)
	d = tempfail("4.7.0", "PEC: "+why+"; providers must send with TLS (STARTTLS), try again with TLS")
	d.Reason = why
	e := in.ordinaryEvent(now, env, o, store.TypeTLSRequired, why, env.Rcpts)
	e.Provider = provider
	d.Txn = store.Txn{Events: []store.Event{e}}
	return d, true
}
