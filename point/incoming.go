package point

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/revocation"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/verify"
)

// Incoming is the incoming point (RFC 6109 §2.2.2, §3.2): it receives
// mail from other providers and from the Internet on port 25.
type Incoming struct {
	Provider *build.Provider
	Policy   *Policy      // managed domains, ordinary-mail policy, From-domain check
	Roots    *smime.Roots // the PEC CA roots, with the SHA-1 cut-off
	Scanner  Scanner
	Index    func() (Directory, error)
	// History is the log: the take-charges already issued, the envelopes
	// we dispatched (history.go). nil: none recorded, and a notice's id
	// domain alone says the envelope was ours.
	History History
	Log     *slog.Logger
	// Revocation checks the signer's verified chain (leaf first) against
	// the CRLs (RFC 6109 §2.2.2 check 3), as revocation.Checker.Check
	// does: nil, an error matching revocation.ErrRevoked, or another error
	// (the CRL is unavailable). nil Revocation: no check.
	Revocation func(ctx context.Context, chain []*x509.Certificate) error
	// RevocationHard tempfails a message whose CRL is unavailable; when
	// false the failure is logged and the message accepted.
	RevocationHard bool
	// Gate tempfails every message with a clock out of bound or while
	// the service is suspended (guard.go); nil: no guard.
	Gate Gate
}

// Check applies the incoming-point rules to one received message.
func (in *Incoming) Check(ctx context.Context, env Envelope, raw []byte, now time.Time) Decision {
	var k kind.Kind
	d := in.check(ctx, env, raw, now.Truncate(time.Second), &k)
	d.Kind = k
	return d
}

// check is Check; it sets *k to the kind of a message signed by a
// provider of the index.
func (in *Incoming) check(ctx context.Context, env Envelope, raw []byte, now time.Time, k *kind.Kind) Decision {
	if d, stop := in.gateIncoming(env); stop { // clock, suspension (guard.go)
		return d
	}
	dir, err := in.Index()
	if err != nil {
		return tempfail("4.3.0", "PEC: providers' index not available, try again later")
	}
	o, err := build.ParseOriginal(raw)
	if err != nil {
		return reply(Reject, 554, "5.6.0", "malformed message: "+err.Error())
	}
	v := verify.Message(raw, in.Roots)
	if v.Message == nil || v.Message.Kind == kind.Ordinaria || v.Signature == nil {
		// not PEC, or PEC type headers on a message with no signature at
		// all: ordinary mail, under the mailbox's policy (RFC 6109 §2.2.2)
		return in.ordinary(ctx, env, o, raw, now, "")
	}
	m := v.Message
	if len(v.Warnings) > 0 {
		// quirks of genuine providers' messages (PEC-SPEC §6.7): read
		// anyway, never a reason for an anomaly
		in.log().Warn("PEC message read despite quirks", "queue_id", env.QueueID, "signer_sha1", v.Signature.SignerSHA1, "warnings", v.Warnings)
	}
	// RFC 6109 §2.2.2 check 2–3: a signature that does not verify, or a
	// signer that is not a provider, make the message "not from PEC":
	// ordinary mail under the mailbox's policy, wrapped (where accepted)
	// with the precise reason
	if v.Signature.SignatureErr != nil {
		return in.ordinary(ctx, env, o, raw, now, "firma non valida: il messaggio è stato alterato ("+v.Signature.SignatureErr.Error()+")")
	}
	name, mailReceipt, domains, err := dir.ProviderFor(v.Signature.Signer)
	if err != nil {
		return in.ordinary(ctx, env, o, raw, now,
			"il certificato di firma (SHA-1 "+v.Signature.SignerSHA1+") non appartiene a un gestore dell'indice: "+err.Error())
	}
	if d, stop := in.requireTLS(env, o, now, name, v.Signature.SignerSHA1); stop {
		return d
	}
	// signed by a provider of the index: a failure from here on is an
	// anomaly for every recipient (checks 3–4, RFC 6109 §7)
	var reason string
	if v.Err != nil {
		reason = "messaggio di posta certificata non valido: " + v.Err.Error()
	} else if r := signingTimeProblem(v.Signature.SigningTime, now); r != "" {
		reason = r
	} else if r, retry := in.revoked(ctx, env, v.Signature.Chains, v.Signature.SignerSHA1, name); retry {
		return tempfail("4.7.0", "PEC: the signer's certificate revocation list is not available, try again later")
	} else {
		reason = r
	}
	if reason == "" {
		reason = in.fromDomain(o, domains, name)
	}
	if reason != "" {
		return in.anomaly(ctx, env, o, raw, now, reason)
	}
	*k = m.Kind
	var res clamd.Result
	if in.aboutOurEnvelope(m) {
		in.log().Debug("notice about an envelope we dispatched: not scanned again", "queue_id", env.QueueID, "pec_id", m.Daticert.Identificativo)
	} else {
		res, err = in.Scanner.Scan(ctx, bytes.NewReader(raw))
	}
	if errors.Is(err, clamd.ErrSizeLimit) {
		return in.tooLargeToScan(env, len(raw))
	}
	if err != nil {
		in.log().Error("antivirus unavailable, tempfailing", "queue_id", env.QueueID, "error", err)
		return tempfail("4.7.1", "PEC: antivirus not available, try again later")
	}
	if m.Kind == kind.Anomalia {
		// another provider's anomaly envelope (no daticert): delivered unchanged
		if res.Infected {
			return in.refuseInfected(env, o, raw, now, name, res.Signature)
		}
		return Decision{Action: Accept, Reason: "valid anomaly envelope from " + name,
			Txn: store.Txn{Events: []store.Event{in.ordinaryEvent(now, env, o, store.TypeNotice(kind.Anomalia), "", env.Rcpts)}}}
	}
	tx := build.TxFromDaticert(m.Daticert, originalSubject(m.Original))
	ours := in.ours(env.Rcpts)
	switch m.Kind {
	case kind.PostaCertificata:
		if res.Infected {
			return in.virus(env, tx, raw, now, mailReceipt, name, ours, res.Signature)
		}
		// RFC 6109 §3.2.1: one take-charge per SMTP transaction
		// (TakeCharge says for whom; the delivery point wraps what reaches
		// a non-addressee)
		covered, err := chargedRecipients(in.History, tx.ID)
		if err != nil {
			in.log().Error("cannot read the take-charges already issued, tempfailing", "pec_id", tx.ID, "error", err)
			return tempfail("4.3.0", "PEC: store not available, try again later")
		}
		pic, charge, err := TakeCharge(in.Provider, now, tx, mailReceipt, ours, covered)
		if err != nil {
			return tempfail("4.3.0", "PEC: cannot build the take-charge notice: "+err.Error())
		}
		if pic == nil {
			return Decision{Action: Accept, Reason: "valid transport envelope from " + name + ": no recipient left to take in charge (replay, or not addressed)"}
		}
		d := Decision{Action: Accept, Reason: "valid transport envelope from " + name}
		d.Txn = store.Txn{
			Events: []store.Event{in.event(now, env, tx, store.TypePresaInCarico, name, "", charge, pic.ID)},
			Outbox: []store.Outgoing{outgoing(pic)},
		}
		return d
	}
	if res.Infected {
		return in.refuseInfected(env, o, raw, now, name, res.Signature)
	}
	d := Decision{Action: Accept, Reason: "valid " + string(m.Kind) + " from " + name}
	d.Txn.Events = []store.Event{in.event(now, env, tx, store.TypeNotice(m.Kind), name, "", m.Recipients())}
	if m.Kind == kind.RilevazioneVirus && in.toServiceMailbox(env.Rcpts) && in.Policy.IsManaged(tx.Mittente) && in.issuedHere(tx.ID) {
		// RFC 6109 §3.2.4: tell our sender, from the notice's data — only
		// about an envelope we issued and a recipient the notice's
		// provider manages
		var sentTo func(string) bool // read from the log once, when needed
		for _, rcpt := range m.Recipients() {
			if !InDomains(rcpt, domains) {
				in.log().Warn("virus detection notice about a recipient its provider does not manage: ignored", "provider", name, "rcpt", rcpt, "pec_id", tx.ID)
				continue
			}
			if sentTo == nil {
				var err error
				if sentTo, err = dispatchedTo(in.History, tx.ID); err != nil {
					return tempfail("4.3.0", "PEC: store not available, try again later")
				}
			}
			if !sentTo(rcpt) {
				in.log().Warn("virus detection notice about an envelope we did not send to that recipient: ignored", "provider", name, "rcpt", rcpt, "pec_id", tx.ID)
				continue
			}
			n, err := in.Provider.Render(build.Evidence{Kind: kind.ErroreConsegnaVirus, Time: now, Tx: tx, Rcpt: rcpt, Cause: m.Daticert.ErroreEsteso})
			if err != nil {
				return tempfail("4.3.0", "PEC: cannot build the virus non-delivery notice: "+err.Error())
			}
			d.Txn.Events = append(d.Txn.Events, in.event(now, env, tx, store.TypeErroreConsegnaVirus, name, "", []string{rcpt}, n.ID))
			d.Txn.Outbox = append(d.Txn.Outbox, outgoing(n))
		}
	}
	return d
}

// maxSignatureAge bounds how old a live message's CMS signing time may be:
// Postfix keeps mail at most a day (maximal_queue_lifetime = 1d, RFC 6109
// §2.2.2), so anything older was signed for another purpose or backdated
// to fit an expired certificate's validity.
const maxSignatureAge = 25 * time.Hour

// signingTimeProblem rejects a missing, backdated or future signing time:
// the chain is judged at the signing time, so the sender must not choose it.
func signingTimeProblem(st, now time.Time) string {
	switch {
	case st.IsZero():
		return "firma senza ora di firma (signingTime)"
	case now.Sub(st) > maxSignatureAge:
		return fmt.Sprintf("ora di firma %s più vecchia di %v", st.Format(time.RFC3339), maxSignatureAge)
	case st.Sub(now) > 5*time.Minute:
		return fmt.Sprintf("ora di firma %s nel futuro", st.Format(time.RFC3339))
	}
	return ""
}

// revoked checks the signer's chain against the CRLs: it returns the
// anomaly reason when a certificate of the chain is revoked, and retry
// when the CRL is unavailable and RevocationHard is set.
// revocationTimeout bounds the CRL check of one message.
const revocationTimeout = 15 * time.Second

func (in *Incoming) revoked(ctx context.Context, env Envelope, chains [][]*x509.Certificate, sha1, provider string) (reason string, retry bool) {
	if in.Revocation == nil || len(chains) == 0 {
		return "", false
	}
	// its own deadline: a slow CRL server must not eat the antivirus's time
	rctx, cancel := context.WithTimeout(ctx, revocationTimeout)
	defer cancel()
	err := in.Revocation(rctx, chains[0])
	var rev *revocation.RevokedError
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &rev):
		who := "" // the leaf, or a CA above it
		if leaf := chains[0][0]; rev.Serial.Cmp(leaf.SerialNumber) != 0 || rev.Subject != leaf.Subject.String() {
			who = "CA " + rev.Subject + ", "
		}
		return fmt.Sprintf("certificato di firma revocato (%snumero di serie %s, revocato il %s, motivo %s)",
			who, rev.Serial, rev.RevokedAt.UTC().Format(time.RFC3339), revocation.ReasonName(rev.Reason)), false
	case errors.Is(err, revocation.ErrRevoked):
		return "certificato di firma revocato (" + err.Error() + ")", false
	case in.RevocationHard:
		in.log().Error("signer's CRL unavailable, tempfailing", "queue_id", env.QueueID, "provider", provider, "signer_sha1", sha1, "error", err)
		return "", true
	}
	in.log().Warn("signer's CRL unavailable, accepting without a revocation check", "queue_id", env.QueueID, "provider", provider, "signer_sha1", sha1, "error", err)
	return "", false
}

// refuseInfected refuses an infected message that is not a transport
// envelope and keeps it in the virus store (RFC 6109 §2.2.4).
func (in *Incoming) refuseInfected(env Envelope, o *build.Original, raw []byte, now time.Time, provider, sig string) Decision {
	d := reply(Reject, 554, "5.7.1", "virus found ("+sig+")")
	d.Txn = store.Txn{
		Events: []store.Event{in.ordinaryEvent(now, env, o, store.TypeVirusRefused, "virus: "+sig+" (from "+provider+")", env.Rcpts)},
		Virus:  []store.Quarantined{{Time: now, PECID: o.MsgID, Sender: env.MailFrom, Recipients: env.Rcpts, Signature: sig, Data: raw}},
	}
	return d
}

// fromDomain is the RFC 6109 §7 check: the From domain should be one of
// the signing provider's managed domains. Real envelopes come from the
// certificate's domain, often not listed, so by default it only warns.
func (in *Incoming) fromDomain(o *build.Original, domains []string, provider string) string {
	if len(o.From) != 1 {
		return "campo From non valido"
	}
	if InDomains(o.From[0], domains) {
		return ""
	}
	_, dom, _ := strings.Cut(o.From[0], "@")
	if in.Policy.EnforceFromDomain {
		return fmt.Sprintf("il dominio del mittente (%s) non è tra i domini gestiti da %s (RFC 6109 §7)", dom, provider)
	}
	in.log().Warn("From domain not among the signing provider's managed domains (RFC 6109 §7)", "from", o.From[0], "provider", provider)
	return ""
}

// virus: not delivered; one virus-detection notice per affected recipient
// to the sending provider's service mailbox; kept in the virus store
// (RFC 6109 §3.2.3, §2.2.4). We take the message (discard) because the
// notices, not an SMTP error, tell the sending provider.
func (in *Incoming) virus(env Envelope, tx *build.Tx, raw []byte, now time.Time, mailReceipt, provider string, ours []string, sig string) Decision {
	d := Decision{Action: Discard, Reason: "virus in transport envelope: " + sig}
	for _, rcpt := range ours {
		n, err := in.Provider.Render(build.Evidence{Kind: kind.RilevazioneVirus, Time: now, Tx: tx, MailReceipt: mailReceipt, Rcpt: rcpt, Cause: sig})
		if err != nil {
			return tempfail("4.3.0", "PEC: cannot build the virus notice: "+err.Error())
		}
		d.Txn.Events = append(d.Txn.Events, in.event(now, env, tx, store.TypeRilevazioneVirus, provider, "virus: "+sig, []string{rcpt}, n.ID))
		d.Txn.Outbox = append(d.Txn.Outbox, outgoing(n))
	}
	d.Txn.Virus = []store.Quarantined{{Time: now, PECID: tx.ID, Sender: tx.Mittente, Recipients: ours, Signature: sig, Data: raw}}
	return d
}

// ordinary handles mail that is not PEC (RFC 6109 §2.2.2): per mailbox it
// is wrapped in an anomaly envelope (default) or refused; a DSN to a PEC
// sender is always wrapped (PEC-SPEC §6.6 rule 2).
// reason, when not empty, is why a signed message counts as ordinary.
func (in *Incoming) ordinary(ctx context.Context, env Envelope, o *build.Original, raw []byte, now time.Time, reason string) Decision {
	res, err := in.Scanner.Scan(ctx, bytes.NewReader(raw))
	if errors.Is(err, clamd.ErrSizeLimit) {
		return in.tooLargeToScan(env, len(raw))
	}
	if err != nil {
		in.log().Error("antivirus unavailable, tempfailing", "queue_id", env.QueueID, "error", err)
		return tempfail("4.7.1", "antivirus not available, try again later")
	}
	if res.Infected {
		return in.refuseInfected(env, o, raw, now, "", res.Signature)
	}
	dsn := IsDSN(o, env.MailFrom)
	split := in.Policy.SplitOrdinary(env.Rcpts, dsn)
	forwards := split.Copies(in.Provider, raw, split.Accept)
	if len(split.Accept) == 0 {
		d := reply(Reject, 554, "5.7.1", RefuseOrdinaryText)
		d.Txn.Events = []store.Event{in.ordinaryEvent(now, env, o, store.TypeRifiutoPostaOrdinaria, "mailbox refuses ordinary mail", split.Refuse)}
		return d
	}
	return in.wrap(env, o, now, split.Accept, split.Refuse, OrdinaryReason(reason, dsn), forwards)
}

// anomaly wraps a message that claims to be PEC but fails a check.
func (in *Incoming) anomaly(ctx context.Context, env Envelope, o *build.Original, raw []byte, now time.Time, reason string) Decision {
	res, err := in.Scanner.Scan(ctx, bytes.NewReader(raw))
	if errors.Is(err, clamd.ErrSizeLimit) {
		return in.tooLargeToScan(env, len(raw))
	}
	if err != nil {
		return tempfail("4.7.1", "antivirus not available, try again later")
	}
	if res.Infected {
		return in.refuseInfected(env, o, raw, now, "", res.Signature)
	}
	return in.wrap(env, o, now, env.Rcpts, nil, reason, nil)
}

func (in *Incoming) wrap(env Envelope, o *build.Original, now time.Time, accept, refuse []string, reason string, forwards []store.Outgoing) Decision {
	a, err := in.Provider.Anomalia(now, o, env.MailFrom, accept, reason)
	if err != nil {
		return tempfail("4.3.0", "PEC: cannot build the anomaly envelope: "+err.Error())
	}
	d := Decision{Action: Accept, Replace: a, RemoveRcpts: refuse, Reason: "anomalia: " + reason}
	d.Txn = store.Txn{Events: []store.Event{in.ordinaryEvent(now, env, o, store.TypeAnomalia, reason, accept, a.ID)}, Outbox: forwards}
	if len(refuse) > 0 {
		d.Txn.Events = append(d.Txn.Events, in.ordinaryEvent(now, env, o, store.TypeRifiutoPostaOrdinaria, "mailbox refuses ordinary mail", refuse))
	}
	return d
}

// addressed reports whether rcpt is among the envelope's destinatari
// (RFC 6109 §4.4: To and Cc of the original).
func addressed(tx *build.Tx, rcpt string) bool {
	for _, d := range tx.Destinatari {
		if strings.EqualFold(d.Addr, rcpt) {
			return true
		}
	}
	return false
}

// ours are the recipients in our managed domains.
func (in *Incoming) ours(rcpts []string) []string {
	var out []string
	for _, r := range rcpts {
		if in.Policy.IsManaged(r) {
			out = append(out, strings.ToLower(r))
		}
	}
	return out
}

func (in *Incoming) toServiceMailbox(rcpts []string) bool {
	for _, r := range rcpts {
		if in.Policy.IsServiceMailbox(r) {
			return true
		}
	}
	return false
}

func (in *Incoming) event(now time.Time, env Envelope, tx *build.Tx, typ store.EventType, provider, errText string, rcpts []string, related ...string) store.Event {
	subj := ""
	if tx.Oggetto != nil {
		subj = *tx.Oggetto
	}
	return store.Event{Time: now, Point: store.AtIncoming, Type: typ, PECID: tx.ID, MsgID: tx.MsgID, Sender: tx.Mittente,
		Recipients: rcpts, Subject: subj, Related: related, Provider: provider, Error: errText, QueueID: env.QueueID}
}

func (in *Incoming) ordinaryEvent(now time.Time, env Envelope, o *build.Original, typ store.EventType, errText string, rcpts []string, related ...string) store.Event {
	sender := env.MailFrom
	return store.Event{Time: now, Point: store.AtIncoming, Type: typ, MsgID: o.MsgID, Sender: sender, Recipients: rcpts,
		Subject: SubjectOf(o), Related: related, Error: errText, QueueID: env.QueueID}
}

func (in *Incoming) log() *slog.Logger {
	if in.Log != nil {
		return in.Log
	}
	return slog.Default()
}

// originalSubject is the Subject of the carried postacert.eml as received.
func originalSubject(orig []byte) string {
	if orig == nil {
		return ""
	}
	h, _, err := rawmime.Split(rawmime.CRLF(orig))
	if err != nil {
		return ""
	}
	return h.Get("Subject")
}

// tooLargeToScan refuses for good a message bigger than clamd's
// StreamMaxLength: it can never be scanned, and a tempfail would only make
// the sending MTA retry for a day. The sender's provider turns the 552
// into its non-delivery notice.
func (in *Incoming) tooLargeToScan(env Envelope, size int) Decision {
	in.log().Error("message larger than clamd's StreamMaxLength, refused (552 5.3.4); raise StreamMaxLength in clamd.conf to at least Postfix's message_size_limit",
		"queue_id", env.QueueID, "size", size)
	return reply(Reject, 552, "5.3.4", "PEC: message too large for the antivirus check")
}
