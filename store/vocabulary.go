package store

import "github.com/pecgo/pec/kind"

// The event log's vocabulary (RFC 6109 §2.3: the log records each
// transaction at each point). The values are what the rows hold, so they
// never change once written: the hash chain covers them.

// EventPoint is where an event row was written.
type EventPoint string

// The points.
const (
	AtAccess   EventPoint = "access"   // access point (RFC 6109 §2.2.1)
	AtIncoming EventPoint = "incoming" // incoming point (§2.2.2)
	AtDelivery EventPoint = "delivery" // delivery point (§2.2.3)
	AtTimer    EventPoint = "timer"    // 12 h / 24 h notices (§3.1.6)
	AtOutbox   EventPoint = "outbox"   // generated messages handed to the MTA
	AtService  EventPoint = "service"  // the provider's service state (pecctl service)
)

// EventType is what happened. The types named after a message kind are
// that kind's value (kind.Kind), so a row says which message it is about.
type EventType string

// The types.
const (
	TypeAccettazione                    = EventType(kind.Accettazione)            // acceptance issued (§3.1.4)
	TypeNonAccettazione                 = EventType(kind.NonAccettazione)         // non-acceptance issued (§3.1.2, §3.1.3)
	TypePostaCertificata                = EventType(kind.PostaCertificata)        // transport envelope made (§3.1.5)
	TypePreavviso                       = EventType(kind.PreavvisoErroreConsegna) // 12 h / 24 h notice issued (§3.1.6)
	TypePresaInCarico                   = EventType(kind.PresaInCarico)           // take-charge issued (§3.2.1)
	TypeAnomalia                        = EventType(kind.Anomalia)                // anomaly envelope made (§3.2.2)
	TypeRilevazioneVirus                = EventType(kind.RilevazioneVirus)        // virus notice issued (§3.2.3)
	TypeErroreConsegnaVirus             = EventType(kind.ErroreConsegnaVirus)     // non-delivery for virus issued (§3.2.4)
	TypeAvvenutaConsegna                = EventType(kind.AvvenutaConsegna)        // delivery receipt issued (§3.3.2)
	TypeErroreConsegna                  = EventType(kind.ErroreConsegna)          // non-delivery notice issued (§3.3.3)
	TypeRifiutoPostaOrdinaria EventType = "rifiuto-posta-ordinaria"               // ordinary mail refused by a mailbox's policy (§2.2.2)
	TypeVirusRefused          EventType = "virus"                                 // infected message refused at the incoming point before any envelope was judged
	// TypeConsegnaNonConfermata: Dovecot's answer for a recipient was lost
	// (the connection broke after the end of data); no receipt is issued
	// until a retry settles it.
	TypeConsegnaNonConfermata EventType = "consegna-non-confermata"
	TypeSent                  EventType = "sent"                 // a generated message was handed to the MTA (outbox)
	TypeUndeliverable         EventType = "undeliverable"        // a generated message could not be delivered: the cause is in Error
	TypeTLSRequired           EventType = "tls-required"         // a provider's message tempfailed for arriving without TLS (RFC 6109 §5.3)
	TypeSuspended             EventType = "sospensione-servizio" // the service was suspended (Aruba §9.7.7): the reason in Subject
	TypeResumed               EventType = "ripresa-servizio"     // the service was resumed
)

// noticePrefix starts the type of a row recording a notice passing a
// point: "ricevuta-" and the notice's kind.
const noticePrefix = "ricevuta-"

// TypeNotice is the type of a row recording a notice of kind k that a
// point received and passed on (RFC 6109 §3.3.2: notices are delivered,
// not acknowledged).
func TypeNotice(k kind.Kind) EventType { return EventType(noticePrefix + string(k)) }

// MarkKind is what happened to a tracked recipient (timer.Track).
type MarkKind string

// Mark kinds.
const (
	MarkPresa    MarkKind = "presa-in-carico"   // a take-charge covering the recipient arrived
	MarkConsegna MarkKind = "avvenuta-consegna" // delivery receipt arrived: tracking ends
	MarkErrore   MarkKind = "errore-consegna"   // non-delivery notice arrived: tracking ends (our choice, PEC-SPEC §6.6 rule 4)
	MarkNotice12 MarkKind = "notice-12h"        // the 12 h notice was queued
	MarkNotice24 MarkKind = "notice-24h"        // the 24 h notice was queued: tracking ends
)
