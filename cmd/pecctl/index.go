package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/smime"
)

const indexUsage = `usage: pecctl index sync|show|domain DOMAIN|cert SHA1|hash [--ldif] CERT.pem [-config FILE]
       pecctl index entry [--sign] [--out FILE] [--cert NEXT.pem] [--url URL] [--description TEXT] [-config FILE]

The providers' index (RFC 6109 §4.5) from the [index] source of the
configuration (ldif, signed_ldif or ldap_url), kept in the cache the
services read ([index] cache_dir, default "index" next to the store).

  sync          fetch from the source now, update the cache, print the changes;
                also writes the Postfix TLS policy map ([index] tls_policy_map)
  show          list the cached providers: name, mailReceipt, domains, certificates
  domain DOMAIN the provider managing DOMAIN (an address is accepted too)
  cert SHA1     the provider listing that certificate SHA-1 (hex, colons allowed)
  hash CERT.pem the providerCertificateHash of each certificate in the PEM file:
                hex SHA-1 of its DER encoding (RFC 6109 §4.5.2); with --ldif,
                the providerCertificateHash and providerCertificate;binary
                lines of an index entry (no configuration needed)
  entry         our provider's entry for the registry (RFC 6109 §4.5), built
                from the configuration: providerName ([provider] name),
                mailReceipt, managedDomains, and the [signing] certificate
                with its providerCertificateHash; as LDIF (root entry
                o=postacert and ours), checked by reading it back
    --cert NEXT.pem  also list these certificates (a renewal: the new
                     certificate next to the current one, validity overlapping)
    --url URL        LDIFLocationURL: where the signed file is published (https://)
    --description TEXT
    --sign           wrap it in CMS signed-data (DER, .p7m) signed with the
                     [signing] key, as the registry collects it
    --out FILE       write there (default: standard output)

Exit status: 0 found / synced, 1 not found or error, 2 usage error.
Default -config: ` + config.DefaultPath + `
`

func cmdIndex(args []string, stdout, stderr io.Writer) int {
	const cmd = "index"
	fset, cfgPath := newFlags(cmd, indexUsage, stderr)
	asLDIF := fset.Bool("ldif", false, "")
	var ef entryFlags
	fset.BoolVar(&ef.sign, "sign", false, "")
	fset.StringVar(&ef.out, "out", "", "")
	fset.Func("cert", "", func(v string) error { ef.certs = append(ef.certs, v); return nil })
	fset.StringVar(&ef.url, "url", "", "")
	fset.StringVar(&ef.description, "description", "", "")
	pos, err := parseArgs(fset, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) == 0 {
		fmt.Fprint(stderr, indexUsage)
		return 2
	}
	want := map[string]int{"sync": 1, "show": 1, "domain": 2, "cert": 2, "hash": 2, "entry": 1}
	n, ok := want[pos[0]]
	if !ok {
		return usageErr(stderr, cmd, indexUsage, "unknown subcommand %q", pos[0])
	}
	if len(pos) != n {
		if n == 2 {
			return usageErr(stderr, cmd, indexUsage, "%s takes one argument", pos[0])
		}
		return usageErr(stderr, cmd, indexUsage, "%s takes no argument", pos[0])
	}
	if pos[0] != "entry" && ef.set() {
		return usageErr(stderr, cmd, indexUsage, "--sign, --out, --cert, --url and --description go with entry only")
	}
	if pos[0] == "hash" {
		return indexHash(pos[1], *asLDIF, stdout, stderr)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	if pos[0] == "entry" {
		return indexEntry(cfg, ef, stdout, stderr)
	}
	syncer := &index.Syncer{CacheDir: service.IndexCacheDir(cfg)}
	if pos[0] == "sync" {
		src, err := service.IndexSource(cfg)
		if err != nil {
			return fail(stderr, cmd+" sync", err)
		}
		syncer.Source = src
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		ix, diff, err := syncer.Sync(ctx)
		if err != nil {
			return fail(stderr, cmd+" sync", fmt.Errorf("%v: the cached index (if any) was left unchanged", err))
		}
		for _, l := range diff {
			fmt.Fprintln(stdout, l)
		}
		for _, w := range ix.Warnings() {
			fmt.Fprintf(stderr, "pecctl index sync: warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "synced: %d providers, %d changes; cache %s\n", ix.Len(), len(diff), syncer.CachePath())
		if p := service.TLSPolicyPath(cfg); p != "" {
			changed, skipped, err := index.WriteTLSPolicy(ix, p)
			if err != nil {
				return fail(stderr, cmd+" sync", fmt.Errorf("%v: the index is synced; fix [index] tls_policy_map or its directory's permissions", err))
			}
			for _, d := range skipped {
				fmt.Fprintf(stderr, "pecctl index sync: warning: domain %q left out of the TLS policy map: not a plain host name\n", d)
			}
			if changed {
				fmt.Fprintf(stdout, "TLS policy map %s updated: run postmap hash:%s && postfix reload\n", p, p)
			}
		}
		if cfg.Store.URL != "" {
			// a cluster: every node takes this copy at its next hourly look
			if err := publishIndex(cfg, ix); err != nil {
				return fail(stderr, cmd+" sync", fmt.Errorf("%v: this node's cache is updated, the cluster's copy is not", err))
			}
			fmt.Fprintf(stdout, "published to the cluster's store (%s)\n", service.SharedIndexName)
		}
		if c, at := ix.SignedBy(); c != nil {
			fmt.Fprintf(stdout, "signed by %s at %s\n", c.Subject.String(), at.Format(time.RFC3339))
		}
		return 0
	}
	ix, at, err := syncer.Load()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(stderr, cmd, fmt.Errorf("no cached index in %s: run pecctl index sync first", syncer.CacheDir))
		}
		return fail(stderr, cmd, err)
	}
	switch pos[0] {
	case "show":
		fmt.Fprintf(stdout, "providers' index: %d providers, fetched %s (%s)\n", ix.Len(), at.In(cfg.Location()).Format(time.RFC3339), syncer.CachePath())
		for _, p := range ix.Providers() {
			fmt.Fprintln(stdout)
			printProvider(stdout, &p, cfg)
		}
	case "domain":
		p, ok := ix.ByDomain(pos[1])
		if !ok {
			fmt.Fprintf(stdout, "%s: not in the providers' index (an ordinary, non-certified domain)\n", pos[1])
			return 1
		}
		printProvider(stdout, p, cfg)
	case "cert":
		p, ok := ix.ByCertHash(pos[1])
		if !ok {
			fmt.Fprintf(stdout, "%s: no provider lists this certificate hash\n", pos[1])
			return 1
		}
		printProvider(stdout, p, cfg)
	}
	return 0
}

func printProvider(w io.Writer, p *index.Provider, cfg *config.Config) {
	fmt.Fprintf(w, "%s\n", p.Label())
	fmt.Fprintf(w, "  mailReceipt: %s\n", p.MailReceipt)
	fmt.Fprintf(w, "  domains:     %s\n", strings.Join(p.Domains, ", "))
	certs := map[string]string{}
	for _, c := range p.Certificates {
		certs[smime.CertSHA1(c)] = fmt.Sprintf("%s, valid %s to %s", c.Subject.String(),
			c.NotBefore.In(cfg.Location()).Format("2006-01-02"), c.NotAfter.In(cfg.Location()).Format("2006-01-02"))
	}
	for _, h := range p.CertHashes {
		if d, ok := certs[h]; ok {
			fmt.Fprintf(w, "  certificate: %s (%s)\n", h, d)
		} else {
			fmt.Fprintf(w, "  certificate: %s (hash listed, certificate not in the entry)\n", h)
		}
	}
}

// publishIndex puts ix into the cluster's store as the nodes' shared copy.
func publishIndex(cfg *config.Config, ix *index.Index) error {
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	var buf bytes.Buffer
	if err := ix.WriteLDIF(&buf); err != nil {
		return err
	}
	return st.PutShared(service.SharedIndexName, buf.Bytes(), time.Now())
}

// indexHash prints the providerCertificateHash of every certificate in a
// PEM file, or with asLDIF the two attribute lines of an index entry.
func indexHash(path string, asLDIF bool, stdout, stderr io.Writer) int {
	certs, err := config.LoadCerts(path)
	if err != nil {
		return fail(stderr, "index hash", err)
	}
	for _, c := range certs {
		if !asLDIF {
			fmt.Fprintln(stdout, smime.CertSHA1(c))
			continue
		}
		fmt.Fprintf(stdout, "providerCertificateHash: %s\n", smime.CertSHA1(c))
		// RFC 2849: base64 value, folded at 76 columns with a leading space
		b64 := base64.StdEncoding.EncodeToString(c.Raw)
		line := "providerCertificate;binary:: " + b64
		for len(line) > 76 {
			fmt.Fprintln(stdout, line[:76])
			line = " " + line[76:]
		}
		fmt.Fprintln(stdout, line)
	}
	return 0
}
