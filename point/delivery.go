package point

// The delivery point's rules (RFC 6109 §2.2.3, §3.3): Classify reads the
// message, Plan decides from it, the LMTP envelope, what the store already
// holds and the instant what to hand to the mailbox server (Dovecot) and
// what to answer without it; Decide turns the mailbox server's answers
// into receipts, log rows, store rows and per-recipient answers. The
// adapter is package lmtp.
//
// The delivery point trusts nothing about where a message came from
// (re-injection listener, a local LMTP client): only a valid transport
// envelope gets receipts, only a valid notice or anomaly envelope of a
// provider of the index (or ours) and Postfix's own bounces reach a
// mailbox unchanged; everything else is wrapped in an anomaly envelope or
// refused under the mailbox's ordinary-mail policy, as at the incoming
// point (RFC 6109 §2.2.2, §3.2.2).

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/verify"
)

// Delivery holds the delivery point's rules.
type Delivery struct {
	Provider *build.Provider
	Policy   *Policy // managed domains, service mailbox, ordinary-mail policy (config.RulePolicy)
	Roots    *smime.Roots
	Index    func() (Directory, error)
	// History is the log: the take-charges our incoming point issued
	// (see Classify). nil: none known.
	History History
	// Mailboxes, when set, is the mailbox registry: mail for a mailbox
	// that may not receive is refused (delivery_mailbox.go).
	Mailboxes MailboxRegistry
}

// policy is Policy, or an empty one (every mailbox accepts ordinary
// mail, no domain is managed) when it is not set.
func (d *Delivery) policy() *Policy {
	if d.Policy != nil {
		return d.Policy
	}
	return &Policy{}
}

// Class is what the delivery point makes of a message (RFC 6109 §3.3.1:
// its type, and whether a notice is due).
type Class int

// The classes.
const (
	// ClassEnvelope: a valid transport envelope signed by a provider of
	// the index or by us. Its addressees get it and their receipts.
	ClassEnvelope Class = iota + 1
	// ClassNotice: a valid notice or anomaly envelope signed by a provider
	// of the index or by us: delivered unchanged, no receipt (RFC 6109
	// §3.3.2).
	ClassNotice
	// ClassNotPEC: not from PEC (no signature, a signature that does not
	// verify, a signer outside the index, a PEC look-alike): ordinary mail
	// under the mailbox's policy (RFC 6109 §2.2.2), Postfix's own bounces
	// excepted.
	ClassNotPEC
	// ClassInvalid: signed by a provider of the index (or us) but not a
	// valid PEC message: an anomaly for every recipient (RFC 6109 §3.2.2).
	ClassInvalid
)

func (c Class) String() string {
	switch c {
	case ClassEnvelope:
		return "envelope"
	case ClassNotice:
		return "notice"
	case ClassNotPEC:
		return "not-pec"
	case ClassInvalid:
		return "invalid"
	}
	return "unknown"
}

// Classified is a message classified for delivery.
type Classified struct {
	Kind  kind.Kind
	Class Class
	// Reason says why a ClassNotPEC or ClassInvalid message is not a
	// valid PEC message: the error its anomaly envelope names ("" for
	// plain ordinary mail).
	Reason string
	// UnknownSigner: a good signature by a certificate this copy of the
	// providers' index does not list (the adapter may refresh the index
	// and classify again: the incoming point's copy may be newer).
	UnknownSigner bool
	// Key identifies the message in the store's deliveries: the PEC id of
	// an envelope (a replay has the same one), a hash of the signed content
	// of a notice, a hash of the bytes of anything else.
	Key      string
	Raw      []byte
	Received *build.Original // the message as received; nil when it has no header section
	// For envelopes and notices: the transaction data from the daticert.
	Tx        *build.Tx
	Postacert []byte // the original inside the envelope
	To, Cc    []string
	// Addressees are the envelope's daticert destinatari (lower case):
	// the only recipients it may be delivered to as PEC.
	Addressees []string
	// Ours is set when the envelope is signed by us: it came from our own
	// access point and never passed our incoming point (same-provider
	// traffic, RFC 6109 §3.4), so the delivery point does the incoming
	// point's part for it: the take-charge to our own mailReceipt.
	Ours        bool
	MailReceipt string
	// Provider is the name of the provider that signed the message (ours
	// for Ours), for the log rows.
	Provider string
	Notice   *verify.Report // for valid notices: their daticert (timer correlation)
	// SignerDomains are the managed domains of the notice's signer: a
	// notice counts for a recipient only when its provider manages it.
	SignerDomains []string
}

// Classify reads a message handed over for delivery (RFC 6109 §3.3.1).
// It fails only when the providers' index is not available: the adapter
// tempfails then.
func (d *Delivery) Classify(raw []byte) (*Classified, error) {
	m := &Classified{Kind: kind.Ordinaria, Class: ClassNotPEC, Raw: raw, Key: hashKey(raw)}
	m.Received, _ = build.ParseOriginal(raw)
	r := verify.Message(raw, d.Roots)
	if r.Message == nil {
		m.Reason = "messaggio non leggibile: manca la sezione delle intestazioni"
		return m, nil
	}
	m.Kind = r.Message.Kind
	if m.Kind == kind.Ordinaria {
		return m, nil // plain ordinary mail (or S/MIME mail that is not PEC)
	}
	// RFC 6109 §2.2.2 checks 1–3, as at the incoming point: a PEC
	// look-alike without a signature, a signature that does not verify
	// and a signer that is neither a provider of the index nor us make the
	// message "not from PEC"
	sig := r.Signature
	switch {
	case sig == nil:
		name, value := m.Kind.TypeHeader()
		m.Reason = fmt.Sprintf("intestazione %s: %s su un messaggio senza firma valida", name, value)
		if r.Err != nil {
			m.Reason += " (" + r.Err.Error() + ")"
		}
		return m, nil
	case sig.SignatureErr != nil:
		m.Reason = "firma non valida: il messaggio è stato alterato (" + sig.SignatureErr.Error() + ")"
		return m, nil
	case sig.Signer == nil:
		m.Reason = "firma senza certificato del firmatario"
		return m, nil
	}
	m.Ours = d.Provider.Signer != nil && sig.Signer.Equal(d.Provider.Signer.Cert)
	var domains []string
	// charged: the signer is not in this copy of the providers' index,
	// but our incoming point took the envelope in charge for these
	// recipients under an earlier copy (chargedAtIncoming); nil otherwise
	var charged []string
	if m.Ours {
		m.MailReceipt, domains, m.Provider = d.policy().ServiceMailbox, d.policy().ManagedDomains, d.Provider.Name
		if m.MailReceipt == "" {
			m.MailReceipt = d.Provider.ServiceAddr()
		}
	} else {
		dir, err := d.Index()
		if err != nil {
			return nil, err // fail closed: tempfail, Postfix retries
		}
		name, mr, doms, err := dir.ProviderFor(sig.Signer)
		if err != nil {
			var provider string
			var herr error
			charged, provider, herr = d.chargedAtIncoming(r)
			if herr != nil {
				return nil, herr // fail closed
			}
			if len(charged) == 0 {
				m.Reason = "il certificato di firma (SHA-1 " + sig.SignerSHA1 + ") non appartiene a un gestore dell'indice: " + err.Error()
				m.UnknownSigner = true
				return m, nil
			}
			// the incoming point's verdict stands (chargedAtIncoming)
			name = provider
		}
		m.MailReceipt, domains, m.Provider = mr, doms, name
	}
	// signed by a provider: a failure from here on is an anomaly for every
	// recipient (RFC 6109 §2.2.2 check 4, §3.2.2)
	if r.Err != nil {
		m.Class, m.Reason = ClassInvalid, "messaggio di posta certificata non valido: "+r.Err.Error()
		return m, nil
	}
	m.Key = hashKey(r.Message.Content) // the same signed content under other outer headers is the same message
	if m.Kind == kind.Anomalia {
		m.Class = ClassNotice // another provider's or our incoming point's anomaly envelope: no daticert
		return m, nil
	}
	m.Tx = build.TxFromDaticert(r.Message.Daticert, "")
	if m.Kind != kind.PostaCertificata {
		m.Class, m.Notice, m.SignerDomains = ClassNotice, r, domains
		return m, nil
	}
	if m.Tx.ID == "" {
		m.Class, m.Reason = ClassInvalid, "messaggio di posta certificata non valido: identificativo mancante nei dati di certificazione"
		return m, nil
	}
	m.Class, m.Key = ClassEnvelope, m.Tx.ID
	m.Postacert = r.Message.Original
	for _, x := range m.Tx.Destinatari {
		a := strings.ToLower(x.Addr)
		if charged == nil || slices.Contains(charged, a) {
			m.Addressees = append(m.Addressees, a)
		}
	}
	if o, err := build.ParseOriginal(m.Postacert); err == nil {
		m.To, m.Cc = o.To, o.Cc
		m.Tx.Subject = o.Subject
	}
	return m, nil
}

// chargedAtIncoming settles a disagreement between the incoming point and
// the delivery point. A transport envelope signed by a provider of the
// index gets our take-charge at the incoming point (RFC 6109 §3.2.1): from
// then on we answer for its delivery, and the sender's provider waits for
// a delivery or non-delivery receipt (§3.1.6). If the providers' index
// changes before the delivery point reads the envelope (the signer's
// entry removed or its certificate replaced), the delivery point's copy no
// longer knows the signer. Wrapping the envelope then would deliver it
// without a receipt and let the sender get a 24 h notice for a delivered
// message. So the verdict given at the incoming point stands: a transport
// envelope whose signature verifies, with a valid daticert, that our
// incoming point took in charge is delivered as PEC, with receipts, to
// the recipients that take-charge covered (the others get it wrapped, as
// any non-addressee). It returns those recipients (lower case) and the
// provider named in the take-charge row; none when the message is not
// such an envelope or no take-charge of the incoming point names it.
func (d *Delivery) chargedAtIncoming(r *verify.Report) ([]string, string, error) {
	if d.History == nil || r.Err != nil || r.Message.Kind != kind.PostaCertificata || r.Message.Daticert == nil ||
		r.Message.Daticert.Identificativo == "" {
		return nil, "", nil
	}
	rcpts, provider, err := takeCharges(d.History, r.Message.Daticert.Identificativo, store.AtIncoming)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the take-charges of the incoming point: %w", err)
	}
	return slices.Sorted(maps.Keys(rcpts)), provider, nil
}

func hashKey(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Seen is what the store holds for one recipient of the message
// (store.Deliveries), as the adapter judged it.
type Seen struct {
	State string // a store.Delivery* state
	Owner string // of a pending row
	// Orphaned marks a pending row whose LMTP transaction ended (its
	// process died, or it lost Dovecot's answer) without recording the
	// outcome: the message may or may not be in the mailbox.
	Orphaned bool
	// Known is the outcome that transaction saw but could not record (the
	// store failed after Dovecot answered).
	Known *MailboxResult
}

// Treatment is how a group of recipients gets the message.
type Treatment int

// The treatments.
const (
	// AsPEC: the transport envelope to its addressees, with receipts.
	AsPEC Treatment = iota + 1
	// Unchanged: a valid notice or anomaly envelope, or Postfix's own
	// bounce, delivered as it came.
	Unchanged
	// Wrapped: in our anomaly envelope (DeliveryGroup.Anomaly).
	Wrapped
)

// DeliveryGroup is one Dovecot transaction: one message to some recipients.
type DeliveryGroup struct {
	Treatment Treatment
	Rcpts     []string // to hand to Dovecot
	// Done are outcomes an earlier attempt saw and could not record
	// (Seen.Known): not handed to Dovecot again.
	Done    []MailboxResult
	Data    []byte
	Anomaly *build.Message // Wrapped: our anomaly envelope (Data)
	Reason  string         // Wrapped: the error it names
	Split   OrdinarySplit  // Wrapped ordinary mail: the mailboxes' policy, for their forward_to copies
}

// Orphan is an intent closed without a receipt.
type Orphan struct{ Rcpt, Owner string }

// DeliveryPlan is what to do with one LMTP transaction before Dovecot is asked.
type DeliveryPlan struct {
	Groups []*DeliveryGroup
	// Status answers the recipients that need no Dovecot transaction:
	// duplicates and closed intents (nil: 250), refusals (5xx),
	// deliveries in progress (4xx).
	Status map[string]error
	// Duplicate: already stored (or refused for good) for this message:
	// not stored again, no second receipt.
	Duplicate []string
	// Unknown: intents whose outcome was lost; closed now without a second
	// copy and without a receipt (see Decide).
	Unknown []Orphan
	// Refused: mailboxes that refuse ordinary mail (RFC 6109 §2.2.2).
	Refused []string
}

// ErrDeliveryTemporary is the delivery point's answer when it cannot
// settle a recipient now: Postfix keeps the message and retries.
var ErrDeliveryTemporary = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "PEC delivery point: temporary failure, try again later"}

var (
	errInProgress = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0},
		Message: "PEC delivery point: this message is being delivered to this recipient by another transaction, try again later"}
	errRefuseOrdinary = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: RefuseOrdinaryText}
	errMalformed      = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "malformed message: no header section"}
)

// nonAddressee is the anomaly reason for a valid envelope handed over for
// someone its daticert does not name.
const nonAddressee = "il destinatario non è tra i destinatari indicati nei dati di certificazione del messaggio (daticert.xml): " +
	"messaggio consegnato a un indirizzo diverso da quelli scelti dal mittente"

// Plan decides, for every recipient of the transaction, what it gets.
//
//   - A recipient whose delivery of this message is recorded as settled
//     gets 250 and nothing else: at most one copy and one receipt per
//     (PEC id, recipient) (RFC 6109 §3.3.2), however often Postfix retries
//     or anyone replays the envelope. One whose intent was orphaned is
//     closed the same way (Decide says why without a receipt); one being
//     delivered right now by another transaction gets a 4xx.
//   - A valid transport envelope goes as PEC only to the addressees its
//     daticert names (RFC 6109 §3.3.2: the receipt certifies delivery "to
//     the specified recipient"); anyone else it reaches (a replay, a
//     forged RCPT) gets it wrapped in an anomaly envelope (§3.2.2), no
//     receipt. The provider defines no alias or forward that would rewrite
//     a PEC recipient ([policy.mailboxes] forward_to sends copies of
//     ordinary mail only), so the match is on the address itself.
//   - Valid notices and anomaly envelopes of providers, and Postfix's own
//     bounces, go unchanged (§3.3.2: no receipt).
//   - Mail not from PEC meets the mailbox's ordinary-mail policy as at the
//     incoming point (Policy.SplitOrdinary): wrapped, or refused
//     with 554; a provider-signed message that fails a check is wrapped
//     for every recipient (§2.2.2, §3.2.2).
func (d *Delivery) Plan(now time.Time, m *Classified, env Envelope, seen map[string]Seen) (*DeliveryPlan, error) {
	now = now.Truncate(time.Second)
	p := &DeliveryPlan{Status: map[string]error{}}
	var pec, unchanged, wrapped, ordinary, wrappedBefore []string
	known := map[string]MailboxResult{}
	var nonAddr bool
	for _, rcpt := range env.Rcpts {
		s, ok := seen[strings.ToLower(rcpt)]
		switch {
		case !ok:
		case s.State == store.DeliveryPending && s.Known != nil:
			known[rcpt] = *s.Known
		case s.State == store.DeliveryPending && s.Orphaned:
			p.Unknown = append(p.Unknown, Orphan{Rcpt: rcpt, Owner: s.Owner})
			p.Status[rcpt] = nil
			continue
		case s.State == store.DeliveryPending:
			p.Status[rcpt] = errInProgress
			continue
		default:
			p.Duplicate = append(p.Duplicate, rcpt)
			p.Status[rcpt] = nil
			continue
		}
		switch {
		case m.Class == ClassEnvelope && m.addressee(rcpt):
			pec = append(pec, rcpt)
		case m.Class == ClassEnvelope:
			wrapped, nonAddr = append(wrapped, rcpt), true
		case m.Class == ClassNotice, m.Class == ClassNotPEC && postfixBounce(m, env.MailFrom):
			unchanged = append(unchanged, rcpt)
		case m.Class == ClassNotPEC && known[rcpt].Owner == "":
			ordinary = append(ordinary, rcpt)
		case m.Class == ClassNotPEC: // an earlier attempt wrapped it: its policy accepted it
			wrapped, wrappedBefore = append(wrapped, rcpt), append(wrappedBefore, rcpt)
		default:
			wrapped = append(wrapped, rcpt)
		}
	}
	reason := m.Reason
	var split OrdinarySplit
	if m.Class == ClassNotPEC {
		dsn := m.Received != nil && IsDSN(m.Received, env.MailFrom)
		split = d.policy().SplitOrdinary(ordinary, dsn)
		for _, r := range split.Refuse {
			p.Refused = append(p.Refused, r)
			p.Status[r] = errRefuseOrdinary
		}
		wrapped = append(wrapped, split.Accept...)
		for r, fwd := range d.policy().SplitOrdinary(wrappedBefore, true).Forward {
			split.Forward[r] = fwd
		}
		reason = OrdinaryReason(m.Reason, dsn)
	}
	if nonAddr {
		reason = nonAddressee
	}
	group := func(t Treatment, rcpts []string) *DeliveryGroup {
		g := &DeliveryGroup{Treatment: t, Data: m.Raw}
		for _, r := range rcpts {
			if k, ok := known[r]; ok {
				g.Done = append(g.Done, k)
			} else {
				g.Rcpts = append(g.Rcpts, r)
			}
		}
		p.Groups = append(p.Groups, g)
		return g
	}
	if len(pec) > 0 {
		group(AsPEC, pec)
	}
	if len(unchanged) > 0 {
		group(Unchanged, unchanged)
	}
	if len(wrapped) > 0 && m.Received == nil {
		for _, r := range wrapped {
			p.Status[r] = errMalformed
		}
		wrapped = nil
	}
	if len(wrapped) > 0 {
		a, err := d.Provider.Anomalia(now, m.Received, env.MailFrom, wrapped, reason)
		if err != nil {
			return nil, fmt.Errorf("cannot build the anomaly envelope: %w", err)
		}
		g := group(Wrapped, wrapped)
		g.Data, g.Anomaly, g.Reason, g.Split = a.Bytes(), a, reason, split
	}
	if err := d.holdClosed(now, p); err != nil {
		return nil, err
	}
	return p, nil
}

func (m *Classified) addressee(rcpt string) bool {
	for _, a := range m.Addressees {
		if strings.EqualFold(a, rcpt) {
			return true
		}
	}
	return false
}

// postfixBounce: a bounce or delay notice Postfix itself wrote to one of
// our users or our service mailbox — a DSN (RFC 3464) with the null
// reverse-path, From MAILER-DAEMON and no PEC type header. Those never
// pass a milter and go in as Postfix wrote them; DSNs from other servers
// reach us wrapped by the incoming point (PEC-SPEC §6.6 rule 2).
func postfixBounce(m *Classified, mailFrom string) bool {
	if m.Class != ClassNotPEC || m.Kind != kind.Ordinaria || m.Received == nil || !IsDSN(m.Received, mailFrom) || len(m.Received.From) != 1 {
		return false
	}
	local, _, _ := strings.Cut(m.Received.From[0], "@")
	return strings.EqualFold(local, "mailer-daemon")
}

// MailboxResult is Dovecot's answer for one recipient of a group.
type MailboxResult struct {
	Rcpt string
	Err  error // nil when stored
	// Owner is the intent recorded for this recipient before Dovecot got
	// the end of the message; "" when Dovecot refused it at RCPT or never
	// got the whole message.
	Owner string
	// Unconfirmed: Dovecot got the whole message but its answer for this
	// recipient never came: it may or may not be stored.
	Unconfirmed bool
	At          time.Time // when Dovecot answered: the delivery instant (RFC 6109 §3.3.2); zero means Decide's now
}

// DeliveryOutcome is what the delivery point answers Postfix per recipient and
// what it must commit first.
type DeliveryOutcome struct {
	Status map[string]error // per recipient; nil = 250
	Txn    store.Txn
}

// Decide turns the plan and Dovecot's per-recipient results (results[i] for
// p.Groups[i]) into receipts (RFC 6109 §3.3.2, §3.3.3), log rows, the
// deliveries' new states and the answers for Postfix:
//   - stored → delivery receipt in the requested form (To: the form asked
//     for; Cc: sintetica), 250 to Postfix;
//   - permanent failure → non-delivery notice with the coded cause, and
//     250 to Postfix: the PEC notice is the answer, an SMTP bounce to the
//     sender would duplicate it;
//   - temporary failure → the temporary error to Postfix and no receipt:
//     Postfix retries (RFC 6109 §2.2.2: at most 24 h, maximal_queue_lifetime);
//   - no answer after the whole message → a temporary error, and the
//     intent stays: the retry closes it as unknown;
//   - an intent whose outcome was lost (DeliveryPlan.Unknown) → 250, no second
//     copy and no receipt: a delivery receipt certifies that the message
//     reached the mailbox (§3.3.2) and a non-delivery notice that it did
//     not (§3.3.3); neither is known, and Dovecot may have refused the
//     message after its end (a full mailbox is found only then), so
//     either could be false. The sender's provider sends its 24 h notice
//     for want of a receipt (§3.1.6), which is true; the log row tells the
//     operator to check the mailbox.
//
// For our own envelopes (Classified.Ours) one take-charge to our mailReceipt
// covers the recipients settled in this transaction (§3.2.1, §3.4): each
// recipient's delivery is settled once, so its take-charge is sent once.
func (d *Delivery) Decide(now time.Time, m *Classified, env Envelope, p *DeliveryPlan, results [][]MailboxResult) (DeliveryOutcome, error) {
	now = now.Truncate(time.Second)
	out := DeliveryOutcome{Status: map[string]error{}}
	for r, e := range p.Status {
		out.Status[r] = e
	}
	var (
		taken    []string // Ours: recipients settled here, for the take-charge
		events   []store.Event
		noticeTo []string // recipients a notice reached
	)
	mark := func(rcpt, from, owner, to string) {
		out.Txn.Deliveries = append(out.Txn.Deliveries, store.DeliveryMark{Key: m.Key, Rcpt: strings.ToLower(rcpt), From: from, Owner: owner, To: to, At: now})
	}
	for _, o := range p.Unknown {
		mark(o.Rcpt, store.DeliveryPending, o.Owner, store.DeliveryUnknown)
		switch m.Class {
		case ClassEnvelope:
			if !m.addressee(o.Rcpt) {
				break
			}
			rcpt := strings.ToLower(o.Rcpt)
			taken = append(taken, rcpt)
			events = append(events, d.event(now, m, store.TypeConsegnaNonConfermata,
				"consegna interrotta dopo la trasmissione a Dovecot: esito sconosciuto, nessuna ricevuta emessa; verificare la casella", []string{rcpt}))
		case ClassNotice:
			noticeTo = append(noticeTo, o.Rcpt)
		}
	}
	if len(p.Refused) > 0 {
		events = append(events, d.ordinaryEvent(now, m, env, store.TypeRifiutoPostaOrdinaria, "mailbox refuses ordinary mail", p.Refused))
	}
	for i, g := range p.Groups {
		var stored, settled []string
		for _, r := range results[i] {
			rcpt := strings.ToLower(r.Rcpt)
			at := now
			if !r.At.IsZero() {
				at = r.At.Truncate(time.Second)
			}
			perm := PermanentFailure(r.Err)
			switch {
			case r.Owner != "" && r.Unconfirmed: // the intent stays: the retry closes it
			case r.Owner != "" && r.Err == nil:
				mark(rcpt, store.DeliveryPending, r.Owner, store.DeliveryStored)
			case r.Owner != "" && perm:
				mark(rcpt, store.DeliveryPending, r.Owner, store.DeliveryFailed)
			case r.Owner != "":
				mark(rcpt, store.DeliveryPending, r.Owner, "") // temporary: the retry starts over
			case perm && g.Treatment == AsPEC:
				mark(rcpt, "", "", store.DeliveryFailed) // refused at RCPT: its notice once
			}
			status := r.Err
			if r.Unconfirmed {
				status = ErrDeliveryTemporary
			}
			if g.Treatment != AsPEC {
				out.Status[r.Rcpt] = status
				if r.Err == nil {
					stored = append(stored, r.Rcpt)
				}
				if r.Err == nil || perm {
					settled = append(settled, r.Rcpt)
				}
				continue
			}
			var se *smtp.SMTPError
			switch {
			case r.Err == nil:
				n, err := d.Provider.Render(build.Evidence{Kind: kind.AvvenutaConsegna, Time: at, Tx: m.Tx, Rcpt: rcpt,
					Primary: primary(rcpt, m.To, m.Cc), Original: m.Postacert})
				if err != nil {
					return out, err
				}
				out.Status[r.Rcpt] = nil
				taken = append(taken, rcpt)
				events = append(events, d.event(at, m, store.TypeAvvenutaConsegna, "", []string{rcpt}, n.ID))
				out.Txn.Outbox = append(out.Txn.Outbox, outgoing(n))
			case errors.As(r.Err, &se) && perm:
				errore, esteso := d.cause(rcpt, se)
				n, err := d.Provider.Render(build.Evidence{Kind: kind.ErroreConsegna, Time: at, Tx: m.Tx, Rcpt: rcpt, Errore: errore, Cause: esteso})
				if err != nil {
					return out, err
				}
				out.Status[r.Rcpt] = nil
				taken = append(taken, rcpt)
				events = append(events, d.event(at, m, store.TypeErroreConsegna, esteso, []string{rcpt}, n.ID))
				out.Txn.Outbox = append(out.Txn.Outbox, outgoing(n))
			default:
				out.Status[r.Rcpt] = status // temporary: no receipt, Postfix retries
			}
		}
		switch {
		case g.Treatment == Unchanged:
			noticeTo = append(noticeTo, settled...)
		case g.Treatment == Wrapped && len(stored) > 0:
			events = append(events, d.ordinaryEvent(now, m, env, store.TypeAnomalia, g.Reason, stored, g.Anomaly.ID))
			out.Txn.Outbox = append(out.Txn.Outbox, g.Split.Copies(d.Provider, m.Raw, stored)...)
		}
	}
	if m.Notice != nil && len(noticeTo) > 0 {
		events = append(events, d.noticeEvent(now, m, noticeTo))
		out.Txn.Marks = marks(now, m)
	}
	if m.Ours && len(taken) > 0 {
		// same provider: the take-charge our incoming point would have sent
		// (a temporarily failed recipient is covered by the transaction
		// that settles it)
		pic, taken, err := TakeCharge(d.Provider, now, m.Tx, m.MailReceipt, taken, nil)
		if err != nil {
			return out, err
		}
		if pic != nil {
			events = append([]store.Event{d.event(now, m, store.TypePresaInCarico, "", taken, pic.ID)}, events...)
			out.Txn.Outbox = append([]store.Outgoing{outgoing(pic)}, out.Txn.Outbox...)
		}
	}
	out.Txn.Events = events
	return out, nil
}

// PermanentFailure reports a failure that Postfix will not retry (a 5xx).
func PermanentFailure(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

// primary: To recipients get the requested form; Cc the sintetica one; a
// recipient in neither (cannot tell) counts as primary (RFC 6109 §3.3.2.1).
func primary(rcpt string, to, cc []string) bool {
	for _, a := range to {
		if strings.EqualFold(a, rcpt) {
			return true
		}
	}
	for _, a := range cc {
		if strings.EqualFold(a, rcpt) {
			return false
		}
	}
	return true
}

// cause codes a permanent failure as "<status> - <provider> - <reason>",
// the form real providers use (PEC-SPEC §5.2, NOTA 12), with errore
// no-dest for an unknown mailbox (RFC 6109 §4.4).
func (d *Delivery) cause(rcpt string, se *smtp.SMTPError) (daticert.Errore, string) {
	code := fmt.Sprintf("%d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if se.EnhancedCode == smtp.NoEnhancedCode || se.EnhancedCode[0] == 0 {
		code = fmt.Sprint(se.Code)
	}
	name := d.Provider.Name
	switch {
	case !d.policy().IsManaged(rcpt):
		return daticert.NoDominio, code + " - " + name + " - dominio del destinatario non gestito"
	case se.EnhancedCode == smtp.EnhancedCode{5, 1, 1}:
		return daticert.NoDest, "5.1.1 - " + name + " - casella del destinatario inesistente"
	case se.EnhancedCode == smtp.EnhancedCode{5, 2, 2}:
		return daticert.Altro, "5.2.2 - " + name + " - casella del destinatario piena"
	case se.EnhancedCode == smtp.EnhancedCode{5, 2, 1}:
		return daticert.Altro, "5.2.1 - " + name + " - casella del destinatario disabilitata"
	}
	return daticert.Altro, code + " - " + name + " - " + strings.TrimSpace(se.Message)
}

// event is a log row about the envelope or notice m; Provider names the
// provider that signed it (us for our own envelopes).
func (d *Delivery) event(now time.Time, m *Classified, typ store.EventType, errText string, rcpts []string, related ...string) store.Event {
	tx := m.Tx
	subj := ""
	if tx.Oggetto != nil {
		subj = *tx.Oggetto
	}
	return store.Event{Time: now, Point: store.AtDelivery, Type: typ, PECID: tx.ID, MsgID: tx.MsgID, Sender: tx.Mittente,
		Recipients: rcpts, Subject: subj, Related: related, Provider: m.Provider, Error: errText}
}

// ordinaryEvent logs what the delivery point did with a message it did
// not deliver as it came (PEC-SPEC §6.5): the PEC id only for an envelope
// that reached a non-addressee.
func (d *Delivery) ordinaryEvent(now time.Time, m *Classified, env Envelope, typ store.EventType, errText string, rcpts []string, related ...string) store.Event {
	e := store.Event{Time: now, Point: store.AtDelivery, Type: typ, Sender: env.MailFrom, Recipients: rcpts, Related: related, Error: errText}
	if m.Class == ClassEnvelope {
		e.PECID = m.Tx.ID
	}
	if o := m.Received; o != nil {
		e.MsgID, e.Subject = o.MsgID, build.DecodeSubject(o.Subject)
	}
	return e
}

// noticeEvent logs a notice delivered to one of our users, so the sender's
// provider sees delivery and non-delivery receipts for its timers
// (PEC-SPEC §6.6 rule 4).
func (d *Delivery) noticeEvent(now time.Time, m *Classified, rcpts []string) store.Event {
	p := m.Notice.Message
	var about []string
	about = append(about, p.Recipients()...)
	e := d.event(now, m, store.TypeNotice(m.Kind), "", rcpts)
	e.Related = about
	if n := p.Header.Get("Message-ID"); n != "" {
		e.Related = append(e.Related, n)
	}
	return e
}

// marks correlates a notice arriving for one of our users (or our service
// mailbox) with the envelope we sent, by identificativo and recipient
// (PEC-SPEC §6.6 rule 4), for the 12 h / 24 h timers. Only the provider
// that manages a recipient's domain can speak for that recipient.
func marks(now time.Time, m *Classified) []store.Mark {
	p := m.Notice.Message
	var what store.MarkKind
	switch m.Kind {
	case kind.PresaInCarico:
		what = store.MarkPresa
	case kind.AvvenutaConsegna:
		what = store.MarkConsegna
	case kind.ErroreConsegna, kind.ErroreConsegnaVirus, kind.RilevazioneVirus:
		what = store.MarkErrore
	default:
		return nil
	}
	var out []store.Mark
	for _, rcpt := range p.Recipients() {
		if InDomains(rcpt, m.SignerDomains) {
			out = append(out, store.Mark{PECID: p.Daticert.Identificativo, Rcpt: rcpt, What: what, At: now})
		}
	}
	return out
}
