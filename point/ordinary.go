package point

import (
	"strings"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/store"
)

// Mail that is not PEC, as the incoming point and the delivery point both
// take it (RFC 6109 §2.2.2): wrapped in an anomaly envelope or refused,
// per mailbox.

// RefuseOrdinaryText is the SMTP reply to ordinary mail for a mailbox that
// refuses it.
const RefuseOrdinaryText = "this PEC mailbox does not accept ordinary (non certified) mail"

// OrdinarySplit is how the mailboxes of one transaction take mail that is
// not PEC (RFC 6109 §2.2.2).
type OrdinarySplit struct {
	Accept  []string          // wrapped in an anomaly envelope for them
	Refuse  []string          // their mailboxes refuse ordinary mail
	Forward map[string]string // accepting mailbox → its forward_to address
}

// SplitOrdinary applies each mailbox's ordinary-mail policy (RFC 6109
// §2.2.2) to rcpts; a DSN is accepted by every mailbox, since a PEC sender
// must see it (PEC-SPEC §6.6 rule 2). The incoming point and the delivery
// point both decide with it.
func (p *Policy) SplitOrdinary(rcpts []string, dsn bool) OrdinarySplit {
	s := OrdinarySplit{Forward: map[string]string{}}
	for _, r := range rcpts {
		policy, fwd := p.Ordinary(r)
		if policy == "refuse" && !dsn {
			s.Refuse = append(s.Refuse, r)
			continue
		}
		s.Accept = append(s.Accept, r)
		if fwd != "" {
			s.Forward[r] = fwd
		}
	}
	return s
}

// Copies are the forward_to copies of raw for those of rcpts whose
// mailbox has one. They are sent as the provider's posta-certificata@:
// the re-injection listener takes no other sender (it must relay nothing
// for anyone else), and a forwarder's bounces belong to the forwarder.
func (s OrdinarySplit) Copies(prov *build.Provider, raw []byte, rcpts []string) []store.Outgoing {
	var out []store.Outgoing
	for _, r := range rcpts {
		if fwd := s.Forward[r]; fwd != "" {
			out = append(out, store.Outgoing{MailFrom: prov.ServiceAddr(), Rcpts: []string{fwd}, Data: raw, Kind: "inoltro-posta-ordinaria"})
		}
	}
	return out
}

// OrdinaryReason is the error an anomaly envelope names for mail that is
// not PEC: reason when a signed message counts as ordinary for a precise
// reason, else the DSN or the plain ordinary-mail text.
func OrdinaryReason(reason string, dsn bool) string {
	switch {
	case reason != "":
		return reason
	case dsn:
		return "notifica di mancata consegna (DSN) da un server di posta ordinaria"
	}
	return "il messaggio non è un messaggio di posta certificata"
}

// IsDSN reports a delivery status notification (RFC 3464): it comes with
// the null reverse-path (RFC 5321 §4.5.5); without it the content type
// alone would let anyone past a mailbox that refuses ordinary mail.
func IsDSN(o *build.Original, mailFrom string) bool {
	mt, params := rawmime.MediaType(o.Header.Get("Content-Type"))
	if mailFrom != "" || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") {
		return false
	}
	// and it must carry the machine-readable status part (RFC 3464 §2)
	parts, err := rawmime.Parts(o.Body, params["boundary"])
	if err != nil {
		return false
	}
	for _, p := range parts {
		if h, _, err := rawmime.Split(p); err == nil {
			if pmt, _ := rawmime.MediaType(h.Get("Content-Type")); pmt == "message/delivery-status" {
				return true
			}
		}
	}
	return false
}
