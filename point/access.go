package point

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/timer"
)

// Access is the access point (RFC 6109 §2.2.1, §3.1).
type Access struct {
	Provider *build.Provider
	// Limits (defaults 50 recipients, 100 MB size×recipients, 1000/hour).
	MaxRecipients     int
	MaxSizeTimesRcpts int64
	MessagesPerHour   int
	NoticeMaxSize     int64 // beyond this size a refusal gets only the SMTP reply (RFC 6109 §3.1.2)
	Scanner           Scanner
	// Index returns the current providers' index; an error means none is
	// loaded and mail is tempfailed (fail closed).
	Index func() (Directory, error)
	// History is the log the per-mailbox rate limit counts in; nil
	// disables the limit.
	History History
	Log     *slog.Logger
	// Mailboxes, when set, is the mailbox registry: a mailbox that may
	// not send is refused (mailbox.go).
	Mailboxes MailboxRegistry

	// Header limits: what Postfix's cleanup can carry and rewrite intact
	// (see DefaultMaxHeaderFields, DefaultMaxHeaderFieldSize); zero means
	// the default, never "no limit".
	MaxHeaderFields    int
	MaxHeaderFieldSize int // octets of one field, name and line ends included

	// Gate stops signing with a clock out of bound and turns every
	// message into a non-acceptance while the service is suspended
	// (guard.go); nil: no guard.
	Gate Gate
}

// Check applies the access-point rules to one submitted message at now.
func (a *Access) Check(ctx context.Context, env Envelope, raw []byte, now time.Time) Decision {
	now = now.Truncate(time.Second)
	id := a.Provider.NewIDAt(now)
	sender := strings.ToLower(env.MailFrom)
	rcpts := lower(env.Rcpts)
	if env.AuthUser == "" {
		// normally refused at MAIL FROM already: submission needs SASL
		return reply(Reject, 530, "5.7.0", "PEC: authentication required")
	}
	dir, err := a.Index()
	if err != nil {
		return tempfail("4.3.0", "PEC: providers' index not available, try again later")
	}
	classify := func(addr string) daticert.DestTipo {
		if dir.IsCertified(addr) {
			return daticert.Certificato
		}
		return daticert.Esterno
	}
	o, perr := build.ParseOriginal(raw)
	var tx *build.Tx
	if perr != nil {
		tx = &build.Tx{ID: id, Mittente: sender, Risposte: sender}
		for _, r := range rcpts {
			tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Addr: r, Tipo: classify(r)})
		}
	} else {
		tx = o.Tx(id, sender, classify)
		if len(tx.Destinatari) == 0 { // no To/Cc: list the envelope recipients
			for _, r := range rcpts {
				tx.Destinatari = append(tx.Destinatari, daticert.Destinatario{Addr: r, Tipo: classify(r)})
			}
		}
	}
	// A notice goes to the reverse-path (RFC 6109 §2.1); when that is not
	// the authenticated mailbox, to the mailbox that really submitted.
	if !strings.EqualFold(env.AuthUser, sender) {
		tx.Mittente = strings.ToLower(env.AuthUser)
	}
	if d, stop := a.gateAccess(now, env, tx, raw); stop { // clock, suspension (guard.go)
		return d
	}
	if d, refused := a.mailboxGate(now, env, tx, o); refused {
		return d
	}

	sent := 0
	if a.History != nil && a.MessagesPerHour > 0 {
		n, err := acceptedSince(a.History, sender, now.Add(-time.Hour))
		if err != nil {
			a.log().Error("cannot count the mailbox's messages for the rate limit, tempfailing", "sender", sender, "error", err)
			return tempfail("4.3.0", "PEC: store not available, try again later")
		}
		sent = n
	}
	if reason := a.formalCheck(env, o, perr, raw, rcpts, sent); reason != "" {
		return a.refuse(now, env, tx, raw, reason)
	}

	// Antivirus (RFC 6109 §2.2.1): fail closed when clamd cannot answer.
	// The scan runs while the envelope and the acceptance are built and
	// signed: neither depends on the verdict, and both are dropped unless
	// the verdict lets the message through, so the answer waits for the
	// longer of the two rather than their sum (issue 14: the access
	// point's added latency).
	scanned := make(chan scanOutcome, 1)
	go func() {
		res, err := a.Scanner.Scan(ctx, bytes.NewReader(raw))
		scanned <- scanOutcome{res, err}
	}()
	built := a.buildAccepted(now, tx, o, rcpts)
	sc := <-scanned
	res, err := sc.res, sc.err
	if errors.Is(err, clamd.ErrSizeLimit) {
		// it can never be scanned: a formal exception with its notice,
		// not a day of tempfails (see tooLargeToScan)
		a.log().Error("message larger than clamd's StreamMaxLength, refused with a non-acceptance notice; raise StreamMaxLength in clamd.conf to at least [limits] max_size_times_rcpts",
			"queue_id", env.QueueID, "size", len(raw))
		d := a.refuse(now, env, tx, raw, fmt.Sprintf("messaggio troppo grande per il controllo antivirus (%d byte)", len(raw)))
		if d.Action == Reject {
			d.Code, d.Status = 552, "5.3.4"
		}
		return d
	}
	if err != nil {
		a.log().Error("antivirus unavailable, tempfailing", "queue_id", env.QueueID, "error", err)
		return tempfail("4.7.1", "PEC: antivirus not available, try again later")
	}
	if res.Infected {
		n, err := a.Provider.Render(build.Evidence{Kind: kind.NonAccettazioneVirus, Time: now, Tx: tx, Cause: res.Signature})
		if err != nil {
			return tempfail("4.3.0", "PEC: cannot build the notice: "+err.Error())
		}
		d := reply(Reject, 554, "5.7.1", "PEC: message not accepted: virus found ("+res.Signature+")")
		d.Txn = store.Txn{
			Events: []store.Event{a.event(now, env, tx, o, store.TypeNonAccettazione, "virus: "+res.Signature, n.ID)},
			Outbox: []store.Outgoing{outgoing(n)},
			Virus:  []store.Quarantined{{Time: now, PECID: id, Sender: sender, Recipients: rcpts, Signature: res.Signature, Data: raw}},
		}
		return d
	}
	if built.envErr != nil {
		return tempfail("4.3.0", "PEC: cannot build the transport envelope: "+built.envErr.Error())
	}
	if built.accErr != nil {
		return tempfail("4.3.0", "PEC: cannot build the acceptance receipt: "+built.accErr.Error())
	}
	envelope, acc := built.envelope, built.acc
	track, err := timer.Track(tx, rcpts, now)
	if err != nil {
		return tempfail("4.3.0", "PEC: cannot start the delivery timers: "+err.Error())
	}
	d := Decision{Action: Accept, Replace: envelope, Reason: "accepted"}
	d.Txn = store.Txn{
		Events: []store.Event{
			a.event(now, env, tx, o, store.TypeAccettazione, "", acc.ID),
			a.event(now, env, tx, o, store.TypePostaCertificata, "", envelope.ID),
		},
		Outbox: []store.Outgoing{outgoing(acc)},
		Track:  track,
	}
	return d
}

type scanOutcome struct {
	res clamd.Result
	err error
}

// accepted is what the access point issues for a message it accepts.
type accepted struct {
	envelope, acc  *build.Message
	envErr, accErr error
}

// buildAccepted builds and signs the transport envelope and the
// acceptance receipt at once, one on another goroutine: two signatures,
// and at 1 MB the envelope's copy of the original, on separate cores.
// Both read tx and o, neither writes them.
func (a *Access) buildAccepted(now time.Time, tx *build.Tx, o *build.Original, rcpts []string) accepted {
	var b accepted
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.envelope, b.envErr = a.Provider.TransportEnvelope(now, tx, o, rcpts)
	}()
	b.acc, b.accErr = a.Provider.Render(build.Evidence{Kind: kind.Accettazione, Time: now, Tx: tx})
	<-done
	return b
}

// Header limits of the access point, measured with Postfix 3.7 in front
// of this milter (integration/access TestHeaderLimits):
//
//   - Postfix's cleanup applies the envelope (RFC 6109 §3.1.5) in place,
//     deleting each original field the envelope does not keep; a message
//     with 10 005 header fields (10 004 deleted) makes it abort with
//     "too many reverse jump records" (REVERSE_JUMP_LIMIT 10 000) after
//     the acceptance was signed, while 10 004 still pass. 1 000 keeps a
//     tenfold margin and is far above real mail.
//   - With milters, cleanup cuts every header field at 60 000 octets
//     (KLUDGE_HEADER_LIMIT, below header_size_limit's default 102 400)
//     and drops the rest without error: a field of 219 KB reaches the
//     milter as 59 602 octets, and would be certified cut. A cut field
//     cannot be told from an intact one, so fields are refused from
//     50 000 octets on: a cut one keeps more than 60 000 minus one queue
//     file record (line_length_limit, 2 048).
const (
	DefaultMaxHeaderFields    = 1000
	DefaultMaxHeaderFieldSize = 50000
)

// headerLimits returns the effective header limits.
func (a *Access) headerLimits() (fields, size int) {
	fields, size = a.MaxHeaderFields, a.MaxHeaderFieldSize
	if fields <= 0 {
		fields = DefaultMaxHeaderFields
	}
	if size <= 0 {
		size = DefaultMaxHeaderFieldSize
	}
	return fields, size
}

// formalCheck returns the first failed rule as the Italian reason that
// goes into the notice and errore-esteso, or "".
func (a *Access) formalCheck(env Envelope, o *build.Original, perr error, raw []byte, rcpts []string, sentLastHour int) string {
	sender := strings.ToLower(env.MailFrom)
	maxFields, maxFieldSize := a.headerLimits()
	switch {
	case perr != nil:
		return "messaggio non conforme allo standard RFC 5322 (" + perr.Error() + ")"
	case len(o.Header) > maxFields:
		// RFC 6109 §3.1.2 formal checks: a header Postfix cannot rewrite
		// into the transport envelope (see DefaultMaxHeaderFields) is
		// refused before anything is signed
		return fmt.Sprintf("intestazione con troppi campi: %d, superiore al limite di %d", len(o.Header), maxFields)
	case longestField(o.Header) > maxFieldSize:
		// RFC 6109 §3.1.2 formal checks: a field that Postfix may have
		// cut (see DefaultMaxHeaderFieldSize) must not be certified; its
		// size as received may be larger than what reached us
		return fmt.Sprintf("il campo %s dell'intestazione supera il limite di %d byte", longestFieldName(o.Header), maxFieldSize)
	case longestLine(raw) > 998:
		// RFC 5322 §2.1.1; Postfix would also split such a line
		// (line_length_limit) and break the envelope's signature
		return fmt.Sprintf("messaggio non conforme allo standard RFC 5322: una riga supera i 998 caratteri (%d)", longestLine(raw))
	case len(o.MsgID) > build.MaxReferencedMessageID:
		// the envelope's X-Riferimento-Message-ID would not fit on one
		// line (RFC 5322 §2.1.1): refused before anything is signed
		return fmt.Sprintf("il campo Message-ID supera il limite di %d byte (%d)", build.MaxReferencedMessageID, len(o.MsgID))
	case o.AddrErr != nil:
		return "intestazione non conforme: " + o.AddrErr.Error()
	case len(o.From) != 1:
		return fmt.Sprintf("il campo From deve contenere esattamente un indirizzo (ne contiene %d)", len(o.From))
	case len(o.To) == 0:
		return "il campo To deve contenere almeno un destinatario"
	case !strings.EqualFold(env.AuthUser, sender):
		return fmt.Sprintf("il mittente della busta SMTP (%s) non coincide con l'utente autenticato (%s)", sender, strings.ToLower(env.AuthUser))
	case o.From[0] != sender:
		return fmt.Sprintf("il mittente del campo From (%s) non coincide con il mittente della busta SMTP (%s)", o.From[0], sender)
	case len(o.Bcc) > 0:
		return "presenza di destinatari in copia nascosta (Bcc)"
	case !sameSet(rcpts, append(append([]string{}, o.To...), o.Cc...)):
		return "i destinatari della busta SMTP non coincidono con quelli dei campi To e Cc"
	case a.MaxRecipients > 0 && len(rcpts) > a.MaxRecipients:
		return fmt.Sprintf("numero di destinatari (%d) superiore al limite di %d", len(rcpts), a.MaxRecipients)
	case a.MaxSizeTimesRcpts > 0 && int64(len(raw))*int64(len(rcpts)) > a.MaxSizeTimesRcpts:
		return fmt.Sprintf("dimensione del messaggio per numero di destinatari (%d byte) superiore al limite di %d byte",
			int64(len(raw))*int64(len(rcpts)), a.MaxSizeTimesRcpts)
	}
	if a.MessagesPerHour > 0 && sentLastHour >= a.MessagesPerHour {
		return fmt.Sprintf("superato il limite di %d messaggi all'ora per la casella", a.MessagesPerHour)
	}
	return ""
}

// refuse: the message is not relayed and the sender gets the notice of
// non-acceptance (RFC 6109 §3.1.2). We reject at SMTP level too, so the
// client sees the failure at once; the notice is the legal record.
func (a *Access) refuse(now time.Time, env Envelope, tx *build.Tx, raw []byte, reason string) Decision {
	d := reply(Reject, 550, "5.7.1", "PEC: message not accepted: "+reason)
	if a.NoticeMaxSize > 0 && int64(len(raw)) > a.NoticeMaxSize {
		d.Txn.Events = []store.Event{a.event(now, env, tx, nil, store.TypeNonAccettazione, reason+" (solo errore SMTP: messaggio oltre "+fmt.Sprint(a.NoticeMaxSize)+" byte)")}
		return d
	}
	n, err := a.Provider.Render(build.Evidence{Kind: kind.NonAccettazione, Time: now, Tx: tx, Cause: reason})
	if err != nil {
		return tempfail("4.3.0", "PEC: cannot build the notice: "+err.Error())
	}
	d.Txn = store.Txn{
		Events: []store.Event{a.event(now, env, tx, nil, store.TypeNonAccettazione, reason, n.ID)},
		Outbox: []store.Outgoing{outgoing(n)},
	}
	return d
}

func (a *Access) event(now time.Time, env Envelope, tx *build.Tx, o *build.Original, typ store.EventType, errText string, related ...string) store.Event {
	var rc []string
	for _, d := range tx.Destinatari {
		rc = append(rc, d.Addr)
	}
	subj := ""
	if tx.Oggetto != nil {
		subj = *tx.Oggetto
	}
	return store.Event{Time: now, Point: store.AtAccess, Type: typ, PECID: tx.ID, MsgID: tx.MsgID, Sender: strings.ToLower(env.MailFrom),
		Recipients: rc, Subject: subj, Related: related, Provider: a.Provider.Name, Error: errText, QueueID: env.QueueID}
}

func (a *Access) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

func outgoing(m *build.Message) store.Outgoing { return Outgoing(m) }

// Outgoing is a built message as an outbox item.
func Outgoing(m *build.Message) store.Outgoing {
	return store.Outgoing{MailFrom: m.MailFrom, Rcpts: m.Rcpts, Data: m.Bytes(), MessageID: "<" + m.ID + ">", Kind: m.Kind}
}

func sameSet(a, b []string) bool {
	set := func(x []string) []string {
		m := map[string]bool{}
		for _, s := range x {
			m[strings.ToLower(s)] = true
		}
		out := make([]string, 0, len(m))
		for s := range m {
			out = append(out, s)
		}
		sort.Strings(out)
		return out
	}
	sa, sb := set(a), set(b)
	if len(sa) != len(sb) {
		return false
	}
	for i := range sa {
		if sa[i] != sb[i] {
			return false
		}
	}
	return true
}

// longestLine is the length of the longest line, line end excluded.
func longestLine(raw []byte) int {
	longest := 0
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			i = len(raw)
		}
		n := i
		if n > 0 && raw[n-1] == '\r' {
			n--
		}
		longest = max(longest, n)
		if i == len(raw) {
			break
		}
		raw = raw[i+1:]
	}
	return longest
}

// fieldSize is the size of one header field on the wire: name, value and
// folded lines with their line ends, final CRLF included.
func fieldSize(f rawmime.Field) int { return len(f.Raw) + 2 }

// longestField is the size of the largest field of h.
func longestField(h rawmime.Header) int {
	n := 0
	for _, f := range h {
		n = max(n, fieldSize(f))
	}
	return n
}

// longestFieldName names the largest field of h.
func longestFieldName(h rawmime.Header) string {
	n, name := -1, ""
	for _, f := range h {
		if fieldSize(f) > n {
			n, name = fieldSize(f), f.Name
		}
	}
	return name
}
