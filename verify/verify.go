// Package verify decides whether a message is a valid PEC message: it
// parses it (package parse), checks the S/MIME signature and, given trusted
// roots, the signer's chain at the CMS signing time (package smime), that
// micalg names the CMS digest (RFC 5751 §3.4.3.2) and that From is the
// signing certificate's address (RFC 6109 §2.1).
//
// It answers "is this signature good"; whether the signer is a PEC
// provider is the providers' index's question (RFC 6109 §4.5), which the
// incoming point asks with Report.Signature.SignerSHA1.
package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
)

// Report is the outcome for one message.
type Report struct {
	Message   *parse.Message // nil only when the input has no header section
	Signature *smime.Result  // nil when the message is not signed or the CMS is unreadable
	// Err is the first reason the message is not a valid PEC message, nil
	// when it is one. ErrNotPEC for ordinary mail. A signature failure
	// comes before a daticert problem: it decides whether the message is
	// PEC at all (PEC-SPEC §6.7).
	Err error
	// Warnings are quirks of genuine providers' messages that do not make
	// them invalid (PEC-SPEC §6.7): a repaired daticert, a Subject that
	// differs from oggetto, a micalg that names another digest.
	Warnings []string
}

// ErrNotPEC is the Report.Err of a message with no PEC type header.
var ErrNotPEC = errors.New("verify: not a PEC message (no X-Ricevuta or X-Trasporto header)")

// Valid reports whether the message is a valid, well-formed PEC message
// whose signature verified (and whose chain did, when roots were given).
func (r *Report) Valid() bool { return r.Err == nil }

// Message verifies raw against roots; nil roots checks the signature only
// (Signature.ChainErr is then smime.ErrNoRoots and does not count).
func Message(raw []byte, roots *smime.Roots) *Report {
	r := &Report{}
	m, perr := parse.Parse(raw)
	r.Message = m
	if m == nil {
		r.Err = perr
		return r
	}
	r.Warnings = append(r.Warnings, m.Warnings...)
	var serr error
	if m.Signed {
		r.Signature, serr = smime.Verify(raw, roots)
	}
	s := r.Signature
	switch {
	case m.Kind == kind.Ordinaria && perr == nil:
		r.Err = ErrNotPEC
	case serr != nil:
		r.Err = serr
	case s != nil && s.SignatureErr != nil:
		r.Err = s.SignatureErr
	case s != nil && roots != nil && s.ChainErr != nil:
		r.Err = s.ChainErr
	case perr != nil:
		r.Err = perr
	default:
		r.Err = checkFrom(m.Header, s.Signer)
	}
	if s != nil && s.SignatureErr == nil && s.MicalgMismatch {
		// RFC 5751 §3.4.3.2: receivers recover from a wrong micalg; the
		// CMS signature alone decides
		r.Warnings = append(r.Warnings, fmt.Sprintf("micalg=%q does not name the CMS digest %v: verified with the CMS digest (RFC 5751 §3.4.3.2)", s.Micalg, s.Digest))
	}
	if s != nil && s.ChainNote != "" {
		r.Warnings = append(r.Warnings, s.ChainNote)
	}
	return r
}

// checkFrom: the From address must be the certificate's rfc822Name (RFC
// 6109 §2.1), also for the "Per conto di:" envelopes.
func checkFrom(h rawmime.Header, cert *x509.Certificate) error {
	from := h.Get("From")
	a, err := mail.ParseAddress(from)
	if err != nil {
		return fmt.Errorf("verify: From %q is not an address: %v", from, err)
	}
	for _, e := range cert.EmailAddresses {
		if strings.EqualFold(e, a.Address) {
			return nil
		}
	}
	return fmt.Errorf("verify: From %s is not the signing certificate's address %v (RFC 6109 §2.1)", a.Address, cert.EmailAddresses)
}
