package filter

import "github.com/emersion/go-milter"

// mailMacros are the macros the milter asks Postfix for at MAIL FROM
// (SMFIF_SETSYMLIST, which replaces milter_mail_macros for this milter):
// Postfix's default list plus {tls_version} and {cipher}, which Postfix
// otherwise sends only at HELO, a stage the milter skips (SMFIP_NOHELO).
// The incoming point reads TLS from them (point.Envelope.TLS, Aruba
// §7.3.3: mail between providers travels with TLS); {auth_authen} is the
// access point's SASL login.
var mailMacros = []string{"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}", "{mail_host}", "{mail_mailer}",
	"{tls_version}", "{cipher}"}

// symList is the macro list requested in the option negotiation.
func symList() map[milter.Stage][]string {
	return map[milter.Stage][]string{milter.StageMailFrom: mailMacros}
}

// usedTLS reports whether the SMTP client's connection is encrypted:
// Postfix defines {tls_version} only then.
func usedTLS(macros map[string]string) bool { return macros["{tls_version}"] != "" }
