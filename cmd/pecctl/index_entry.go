package main

import (
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/smime"
)

type entryFlags struct {
	sign             bool
	out              string
	certs            []string
	url, description string
}

func (f entryFlags) set() bool {
	return f.sign || f.out != "" || len(f.certs) > 0 || f.url != "" || f.description != ""
}

// indexEntry builds our provider's entry of the providers' index from the
// configuration (RFC 6109 §4.5; PEC-SPEC §8: each provider publishes its
// own signed LDIF, which the registry collects daily).
func indexEntry(cfg *config.Config, f entryFlags, stdout, stderr io.Writer) int {
	const cmd = "index entry"
	if f.url != "" && !strings.HasPrefix(f.url, "https://") {
		return usageErr(stderr, "index", indexUsage, "--url %q: RFC 6109 §4.5.6 wants an https:// URL", f.url)
	}
	certs, err := config.LoadCerts(cfg.Signing.Certificate)
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("[signing] certificate: %w", err))
	}
	listed := []*x509.Certificate{certs[0]} // the leaf; the chain is not listed
	for _, path := range f.certs {
		more, err := config.LoadCerts(path)
		if err != nil {
			return fail(stderr, cmd, fmt.Errorf("--cert: %w", err))
		}
		for _, c := range more[:1] {
			if !c.Equal(certs[0]) {
				listed = append(listed, c)
			}
		}
	}
	for _, c := range listed {
		want := "posta-certificata@" + strings.ToLower(cfg.Provider.Domain)
		ok := false
		for _, e := range c.EmailAddresses {
			ok = ok || strings.EqualFold(e, want)
		}
		if !ok {
			fmt.Fprintf(stderr, "pecctl index entry: warning: certificate %s (%s) does not name %s: other providers' checks of our messages would fail (RFC 6109 §2.1)\n",
				smime.CertSHA1(c), c.Subject, want)
		}
	}
	ldif, err := index.EntryLDIF(index.Entry{Name: cfg.Provider.Name, MailReceipt: cfg.Provider.MailReceipt,
		Domains: cfg.Provider.ManagedDomains, Certificates: listed, LDIFLocationURL: f.url, Description: f.description})
	if err != nil {
		return fail(stderr, cmd, fmt.Errorf("%v: check [provider] name, domain, managed_domains and mail_receipt", err))
	}
	out := ldif
	if f.sign {
		// RFC 6109 §4.5: signed by the provider for its PEC operations,
		// with the key whose certificate the entry lists
		s, err := cfg.Signer()
		if err != nil {
			return fail(stderr, cmd, fmt.Errorf("%v: --sign needs the [signing] key", err))
		}
		if out, err = index.SignLDIF(ldif, s.Key, s.Cert, s.Chain); err != nil {
			return fail(stderr, cmd, err)
		}
	}
	if f.out == "" {
		if _, err := stdout.Write(out); err != nil {
			return fail(stderr, cmd, err)
		}
		return 0
	}
	if err := os.WriteFile(f.out, out, 0o644); err != nil {
		return fail(stderr, cmd, err)
	}
	fmt.Fprintf(stdout, "wrote %s: entry of %s, %d domains, %d certificates", f.out, cfg.Provider.Name, len(cfg.Provider.ManagedDomains), len(listed))
	if f.sign {
		fmt.Fprint(stdout, ", signed")
	}
	fmt.Fprintln(stdout)
	return 0
}
