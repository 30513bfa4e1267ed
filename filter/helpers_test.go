// Helpers shared by the incoming point's tests (the access point's moved
// to package point with its rules).
package filter_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// scanner is a scripted antivirus for the pure-core tests; the real clamd
// is exercised by the integration tests.
type scanner struct {
	infected string
	err      error
}

func (s scanner) Scan(ctx context.Context, r io.Reader) (clamd.Result, error) {
	io.Copy(io.Discard, r)
	if s.err != nil {
		return clamd.Result{}, s.err
	}
	return clamd.Result{Infected: s.infected != "", Signature: s.infected}, nil
}

// domains is a Directory over a fixed domain list.
type domains []string

func (d domains) IsCertified(a string) bool {
	for _, x := range d {
		if strings.HasSuffix(strings.ToLower(a), "@"+x) {
			return true
		}
	}
	return false
}

func (d domains) ProviderFor(*x509.Certificate) (string, string, []string, error) {
	return "", "", nil, errors.New("not used")
}

type env struct {
	pki  *testpki.PKI
	prov *build.Provider
}

func newEnv(t testing.TB) *env {
	pki := testpki.New("pec-a.example.test", "pec-b.example.test")
	id := pki.Issue("Provider A S.p.A.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	return &env{pki: pki, prov: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test",
		Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}}
}

func msg(from, to, cc, bcc string) []byte {
	h := "From: " + from + "\r\nTo: " + to + "\r\n"
	if cc != "" {
		h += "Cc: " + cc + "\r\n"
	}
	if bcc != "" {
		h += "Bcc: " + bcc + "\r\n"
	}
	return []byte(h + "Subject: prova\r\nMessage-ID: <m1@client.example.test>\r\nDate: Mon, 23 Nov 2026 16:04:00 +0100\r\n\r\nciao\r\n")
}

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	paolo = "paolo@mail.example.org"
)

func (e *env) access(s scanner) *point.Access {
	return &point.Access{Provider: e.prov, MaxRecipients: 3, MaxSizeTimesRcpts: 4000, Scanner: s,
		Index: func() (filter.Directory, error) { return domains{"pec-a.example.test", "pec-b.example.test"}, nil }}
}
