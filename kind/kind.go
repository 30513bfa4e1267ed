// Package kind names the eleven kinds of message a PEC system generates
// (RFC 6109 §3, PEC-SPEC §3) and what identifies each: the Subject prefix,
// the type headers and the daticert tipo.
package kind

import "github.com/pecgo/pec/daticert"

// Kind is a PEC message kind. Ordinaria is any other mail.
type Kind string

// The kinds, in the order of RFC 6109 §3.
const (
	Accettazione            Kind = "accettazione"              // #1 RFC 6109 §3.1.4
	NonAccettazione         Kind = "non-accettazione"          // #2 §3.1.2
	NonAccettazioneVirus    Kind = "non-accettazione-virus"    // #3 §3.1.3
	PostaCertificata        Kind = "posta-certificata"         // #4 transport envelope §3.1.5
	PreavvisoErroreConsegna Kind = "preavviso-errore-consegna" // #5 12 h / 24 h timeout §3.1.6
	PresaInCarico           Kind = "presa-in-carico"           // #6 §3.2.1
	Anomalia                Kind = "anomalia"                  // #7 anomaly envelope §3.2.2
	RilevazioneVirus        Kind = "rilevazione-virus"         // #8 §3.2.3
	ErroreConsegnaVirus     Kind = "errore-consegna-virus"     // #9 §3.2.4
	AvvenutaConsegna        Kind = "avvenuta-consegna"         // #10 §3.3.2
	ErroreConsegna          Kind = "errore-consegna"           // #11 §3.3.3
	Ordinaria               Kind = "ordinaria"                 // not a PEC message
)

// All lists the eleven PEC kinds.
var All = []Kind{Accettazione, NonAccettazione, NonAccettazioneVirus, PostaCertificata, PreavvisoErroreConsegna,
	PresaInCarico, Anomalia, RilevazioneVirus, ErroreConsegnaVirus, AvvenutaConsegna, ErroreConsegna}

type info struct {
	prefix, header, value string
	virus                 bool // X-VerificaSicurezza: errore
	tipo                  daticert.Tipo
}

var table = map[Kind]info{
	Accettazione:            {"ACCETTAZIONE: ", "X-Ricevuta", "accettazione", false, daticert.Accettazione},
	NonAccettazione:         {"AVVISO DI NON ACCETTAZIONE: ", "X-Ricevuta", "non-accettazione", false, daticert.NonAccettazione},
	NonAccettazioneVirus:    {"AVVISO DI NON ACCETTAZIONE PER VIRUS: ", "X-Ricevuta", "non-accettazione", true, daticert.NonAccettazione},
	PostaCertificata:        {"POSTA CERTIFICATA: ", "X-Trasporto", "posta-certificata", false, daticert.PostaCertificata},
	PreavvisoErroreConsegna: {"AVVISO DI MANCATA CONSEGNA PER SUP. TEMPO MASSIMO: ", "X-Ricevuta", "preavviso-errore-consegna", false, daticert.PreavvisoErroreConsegna},
	PresaInCarico:           {"PRESA IN CARICO: ", "X-Ricevuta", "presa-in-carico", false, daticert.PresaInCarico},
	Anomalia:                {"ANOMALIA MESSAGGIO: ", "X-Trasporto", "errore", false, ""},
	RilevazioneVirus:        {"PROBLEMA DI SICUREZZA: ", "X-Ricevuta", "rilevazione-virus", false, daticert.RilevazioneVirus},
	ErroreConsegnaVirus:     {"AVVISO DI MANCATA CONSEGNA PER VIRUS: ", "X-Ricevuta", "errore-consegna", true, daticert.ErroreConsegna},
	AvvenutaConsegna:        {"CONSEGNA: ", "X-Ricevuta", "avvenuta-consegna", false, daticert.AvvenutaConsegna},
	ErroreConsegna:          {"AVVISO DI MANCATA CONSEGNA: ", "X-Ricevuta", "errore-consegna", false, daticert.ErroreConsegna},
}

// SubjectPrefix is the Italian Subject prefix (RFC 6109 Appendix A).
func (k Kind) SubjectPrefix() string { return table[k].prefix }

// TypeHeader returns the identifying header and its value, e.g.
// ("X-Ricevuta", "accettazione") (RFC 6109 §2.1).
func (k Kind) TypeHeader() (name, value string) { return table[k].header, table[k].value }

// VerificaSicurezza reports whether the kind carries X-VerificaSicurezza: errore.
func (k Kind) VerificaSicurezza() bool { return table[k].virus }

// Tipo is the daticert postacert/@tipo; empty for the anomaly envelope.
func (k Kind) Tipo() daticert.Tipo { return table[k].tipo }

// IsEnvelope reports whether the kind is one of the two envelopes.
func (k Kind) IsEnvelope() bool { return k == PostaCertificata || k == Anomalia }

// FromHeaders classifies by the type headers alone (values compared
// case-insensitively by the caller passing them lower-cased). It returns
// Ordinaria when neither header has an RFC 6109 value.
func FromHeaders(xTrasporto, xRicevuta string, verificaErrore bool) Kind {
	switch {
	case xTrasporto != "" && xRicevuta != "":
		return Ordinaria
	case xTrasporto == "posta-certificata":
		return PostaCertificata
	case xTrasporto == "errore":
		return Anomalia
	case xRicevuta == "non-accettazione" && verificaErrore:
		return NonAccettazioneVirus
	case xRicevuta == "errore-consegna" && verificaErrore:
		return ErroreConsegnaVirus
	}
	for k, i := range table {
		if i.header == "X-Ricevuta" && i.value == xRicevuta && !i.virus {
			return k
		}
	}
	return Ordinaria
}
