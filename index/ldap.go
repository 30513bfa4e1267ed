package index

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPConfig says where FetchLDAP reads the directory.
type LDAPConfig struct {
	URL      string // ldap://host:port or ldaps://host:port
	BaseDN   string // default "o=postacert"
	BindDN   string // empty: anonymous
	Password string
	// Timeout bounds the connection and each request; default 30 s.
	Timeout time.Duration
	// TLSConfig is used for ldaps:// URLs; nil means the system roots.
	TLSConfig *tls.Config
}

// ldapAttributes are the attributes FetchLDAP asks for. Certificate syntax
// values are transferred as providerCertificate;binary (RFC 4522).
var ldapAttributes = []string{
	"objectClass", "providerName", "providerUnit", "mailReceipt", "managedDomains",
	"providerCertificateHash", "providerCertificate;binary", "description", "LDIFLocationURL",
}

// FetchLDAP reads every provider entry under the base (and the base entry's
// LDIFLocationURL) from an LDAP server, with an optional simple bind. The
// entries are validated as ParseLDIF does (broken ones skipped and listed in
// Warnings). Cancelling ctx closes the connection.
func FetchLDAP(ctx context.Context, cfg LDAPConfig) (*Index, error) {
	if cfg.URL == "" {
		return nil, errors.New("index: ldap: no URL")
	}
	base := cfg.BaseDN
	if base == "" {
		base = DefaultBaseDN
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("index: ldap %s: %w", cfg.URL, err)
	}
	opts := []ldap.DialOpt{ldap.DialWithDialer(&net.Dialer{Timeout: timeout})}
	if cfg.TLSConfig != nil {
		opts = append(opts, ldap.DialWithTLSConfig(cfg.TLSConfig))
	}
	conn, err := ldap.DialURL(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("index: ldap %s: %v", cfg.URL, err)
	}
	defer conn.Close()
	conn.SetTimeout(timeout)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	fail := func(step string, err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("index: ldap %s: %s: %w", cfg.URL, step, ctx.Err())
		}
		return fmt.Errorf("index: ldap %s: %s: %v", cfg.URL, step, err)
	}
	if cfg.BindDN != "" {
		if err := conn.Bind(cfg.BindDN, cfg.Password); err != nil {
			return nil, fail("bind as "+cfg.BindDN, err)
		}
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, int(timeout/time.Second), false,
		"(|(objectClass=provider)(objectClass=LDIFLocationURLObject))", ldapAttributes, nil)
	res, err := conn.SearchWithPaging(req, 500)
	if err != nil {
		return nil, fail("search under "+base, err)
	}
	recs := make([]record, 0, len(res.Entries))
	for _, e := range res.Entries {
		r := record{dn: e.DN}
		for _, a := range e.Attributes {
			for _, v := range a.ByteValues {
				r.attrs = append(r.attrs, attr{desc: a.Name, typ: attrType(a.Name), value: v})
			}
		}
		recs = append(recs, r)
	}
	ix, err := buildIndex(recs, base)
	if err != nil {
		return nil, fmt.Errorf("index: ldap %s: %w", cfg.URL, err)
	}
	return ix, nil
}
