package revocation_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/revocation"
)

// now is the test clock's start: well inside the test certificates' validity.
var now = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// crlServer serves CRLs by path on loopback and counts the requests.
type crlServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    map[string][]byte
	hits    atomic.Int32
	gate    chan struct{} // when set, requests wait for it to close
	started chan struct{} // when set, each request sends on it first
}

func newServer(t *testing.T) *crlServer {
	s := &crlServer{body: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		b, ok := s.body[r.URL.Path]
		gate, started := s.gate, s.started
		s.mu.Unlock()
		if started != nil {
			started <- struct{}{}
		}
		if gate != nil {
			<-gate
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) set(path string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body[path] = b
}

// clock is an adjustable Checker.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	pki   *testpki.PKI
	srv   *crlServer
	clk   *clock
	leaf  *testpki.Provider
	other *testpki.Provider // also issued by the intermediate, never revoked
	chain []*x509.Certificate
	ch    *revocation.Checker
}

func newFixture(t *testing.T) *fixture {
	pki := testpki.New("pec.example.test")
	srv := newServer(t)
	dp := []string{"ldap://ldap.example.test/cn=CA1?certificateRevocationList", srv.URL + "/ca1.crl"}
	f := &fixture{pki: pki, srv: srv, clk: &clock{t: now},
		leaf:  pki.IssueWith("Gestore", "posta-certificata@pec.example.test", testpki.Options{CRLDistributionPoints: dp}),
		other: pki.IssueWith("Gestore", "posta-certificata@pec.example.test", testpki.Options{CRLDistributionPoints: dp, EC: true}),
	}
	f.chain = []*x509.Certificate{f.leaf.Cert, pki.Intermediate.Cert, pki.Root.Cert}
	f.ch = &revocation.Checker{Client: srv.Client(), Now: f.clk.Now}
	return f
}

// publish serves the intermediate's CRL valid from an hour ago for a day.
func (f *fixture) publish(revoked ...x509.RevocationListEntry) {
	t := f.clk.Now()
	f.srv.set("/ca1.crl", f.pki.Intermediate.CRL(t.Add(-time.Hour), t.Add(23*time.Hour), revoked...))
}

func TestNotRevoked(t *testing.T) {
	f := newFixture(t)
	f.publish(testpki.Revoked(f.other.Cert, now.Add(-48*time.Hour), 4))
	if err := f.ch.Check(context.Background(), f.chain); err != nil {
		t.Fatal(err)
	}
	// an empty CRL, PEM-encoded by a careless server, is fine too
	f2 := newFixture(t)
	der := f2.pki.Intermediate.CRL(now.Add(-time.Hour), now.Add(time.Hour))
	f2.srv.set("/ca1.crl", pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	if err := f2.ch.Check(context.Background(), f2.chain); err != nil {
		t.Fatal(err)
	}
}

func TestRevoked(t *testing.T) {
	f := newFixture(t)
	at := now.Add(-3 * time.Hour).Truncate(time.Second)
	f.publish(testpki.Revoked(f.other.Cert, at, 4), testpki.Revoked(f.leaf.Cert, at, 1))
	err := f.ch.Check(context.Background(), f.chain)
	var rev *revocation.RevokedError
	if !errors.Is(err, revocation.ErrRevoked) || !errors.As(err, &rev) || errors.Is(err, revocation.ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	if rev.Serial.Cmp(f.leaf.Cert.SerialNumber) != 0 || !rev.RevokedAt.Equal(at) || rev.Reason != 1 || !strings.HasSuffix(rev.URL, "/ca1.crl") {
		t.Fatalf("%+v", rev)
	}
	if !strings.Contains(err.Error(), "keyCompromise") || !strings.Contains(err.Error(), f.leaf.Cert.SerialNumber.String()) {
		t.Fatalf("error text %q", err)
	}
	// the other certificate of the same CA, listed as superseded: revoked too
	if err := f.ch.Check(context.Background(), []*x509.Certificate{f.other.Cert, f.pki.Intermediate.Cert, f.pki.Root.Cert}); !errors.Is(err, revocation.ErrRevoked) {
		t.Fatalf("other: %v", err)
	}
}

func TestUnavailable(t *testing.T) {
	deltaExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 27}, Critical: true, Value: []byte{2, 1, 1}}
	// issuingDistributionPoint with onlyContainsCACerts [2] TRUE
	caOnlyExt := pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 28}, Critical: true, Value: []byte{0x30, 0x03, 0x82, 0x01, 0xff}}
	for name, c := range map[string]struct {
		setup func(t *testing.T, f *fixture)
		want  string
	}{
		"server down": {func(t *testing.T, f *fixture) { f.srv.Close() }, "connect"},
		"404":         {func(t *testing.T, f *fixture) {}, "404"},
		"garbage":     {func(t *testing.T, f *fixture) { f.srv.set("/ca1.crl", []byte("<html>not a CRL</html>")) }, "x509"},
		"another key": {func(t *testing.T, f *fixture) {
			// an intermediate with the same name and another key
			f.srv.set("/ca1.crl", testpki.New("pec.example.test").Intermediate.CRL(now.Add(-time.Hour), now.Add(time.Hour)))
		}, "signature"},
		"another issuer": {func(t *testing.T, f *fixture) {
			f.srv.set("/ca1.crl", f.pki.Root.CRL(now.Add(-time.Hour), now.Add(time.Hour)))
		}, "not by the certificate's issuer"},
		"expired": {func(t *testing.T, f *fixture) {
			f.srv.set("/ca1.crl", f.pki.Intermediate.CRL(now.Add(-48*time.Hour), now.Add(-time.Minute)))
		}, "expired"},
		"not yet valid": {func(t *testing.T, f *fixture) {
			f.srv.set("/ca1.crl", f.pki.Intermediate.CRL(now.Add(time.Hour), now.Add(25*time.Hour)))
		}, "future"},
		"delta CRL":   {func(t *testing.T, f *fixture) { f.srv.set("/ca1.crl", crlWith(t, f, deltaExt)) }, "delta"},
		"CA-only CRL": {func(t *testing.T, f *fixture) { f.srv.set("/ca1.crl", crlWith(t, f, caOnlyExt)) }, "CA certificates only"},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			c.setup(t, f)
			err := f.ch.Check(context.Background(), f.chain)
			if !errors.Is(err, revocation.ErrUnavailable) || errors.Is(err, revocation.ErrRevoked) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%v (want ErrUnavailable mentioning %q)", err, c.want)
			}
		})
	}
}

// crlWith is the intermediate's CRL with an extra extension.
func crlWith(t *testing.T, f *fixture, ext pkix.Extension) []byte {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
		ExtraExtensions: []pkix.Extension{ext},
	}, f.pki.Intermediate.Cert, f.pki.Intermediate.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// Certificates with no http(s) distribution point have nothing to check.
func TestNoDistributionPoint(t *testing.T) {
	f := newFixture(t)
	plain := f.pki.Issue("Gestore", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	ldap := f.pki.IssueWith("Gestore", "posta-certificata@pec.example.test", testpki.Options{CRLDistributionPoints: []string{"ldap://ldap.example.test/cn=CA1"}})
	for _, c := range []*x509.Certificate{plain.Cert, ldap.Cert} {
		if err := f.ch.Check(context.Background(), []*x509.Certificate{c, f.pki.Intermediate.Cert, f.pki.Root.Cert}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.ch.Check(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := f.srv.hits.Load(); n != 0 {
		t.Fatalf("%d requests", n)
	}
}

// The CRL is cached until its nextUpdate or MaxAge, whichever is first.
func TestCacheAndRefresh(t *testing.T) {
	f := newFixture(t)
	f.publish() // next update in 23 h
	check := func(wantHits int32, wantRevoked bool) {
		t.Helper()
		err := f.ch.Check(context.Background(), f.chain)
		if wantRevoked != errors.Is(err, revocation.ErrRevoked) || (!wantRevoked && err != nil) {
			t.Fatalf("at %v: %v", f.clk.Now(), err)
		}
		if n := f.srv.hits.Load(); n != wantHits {
			t.Fatalf("at %v: %d requests, want %d", f.clk.Now(), n, wantHits)
		}
	}
	check(1, false)
	check(1, false) // cached
	// revoked meanwhile: not seen until the cached CRL's nextUpdate
	f.clk.Add(22 * time.Hour)
	f.publish(testpki.Revoked(f.leaf.Cert, now, 1))
	check(1, false)
	f.clk.Add(time.Hour) // now at the cached CRL's nextUpdate
	check(2, true)
	check(2, true)

	// MaxAge shorter than nextUpdate: refetched after MaxAge
	g := newFixture(t)
	g.ch.MaxAge = time.Hour
	g.publish()
	if err := g.ch.Check(context.Background(), g.chain); err != nil {
		t.Fatal(err)
	}
	g.publish(testpki.Revoked(g.leaf.Cert, now, 1))
	g.clk.Add(59 * time.Minute)
	if err := g.ch.Check(context.Background(), g.chain); err != nil || g.srv.hits.Load() != 1 {
		t.Fatalf("%v, %d requests", err, g.srv.hits.Load())
	}
	g.clk.Add(time.Minute)
	if err := g.ch.Check(context.Background(), g.chain); !errors.Is(err, revocation.ErrRevoked) || g.srv.hits.Load() != 2 {
		t.Fatalf("%v, %d requests", err, g.srv.hits.Load())
	}
}

// A failed refresh keeps using a cached CRL that has not reached its
// nextUpdate; after that, the CRL is unavailable.
func TestStaleFallback(t *testing.T) {
	f := newFixture(t)
	f.ch.MaxAge = time.Hour
	f.publish() // next update in 23 h
	if err := f.ch.Check(context.Background(), f.chain); err != nil {
		t.Fatal(err)
	}
	f.srv.set("/ca1.crl", []byte("broken"))
	f.clk.Add(2 * time.Hour)
	if err := f.ch.Check(context.Background(), f.chain); err != nil {
		t.Fatalf("refresh failed within nextUpdate: %v", err)
	}
	if err := f.ch.Check(context.Background(), f.chain); err != nil || f.srv.hits.Load() != 2 {
		t.Fatalf("%v; %d requests: a failed refresh is retried after a minute, not at once", err, f.srv.hits.Load())
	}
	f.clk.Add(2 * time.Minute)
	if err := f.ch.Check(context.Background(), f.chain); err != nil || f.srv.hits.Load() != 3 {
		t.Fatalf("%v; %d requests", err, f.srv.hits.Load())
	}
	f.clk.Add(21 * time.Hour)
	if err := f.ch.Check(context.Background(), f.chain); !errors.Is(err, revocation.ErrUnavailable) {
		t.Fatalf("past nextUpdate: %v", err)
	}
}

// Concurrent checks of the same CRL share one download.
func TestConcurrentFetchOnce(t *testing.T) {
	f := newFixture(t)
	f.publish()
	gate, started := make(chan struct{}), make(chan struct{}, 100)
	f.srv.mu.Lock()
	f.srv.gate, f.srv.started = gate, started
	f.srv.mu.Unlock()
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() { errs <- f.ch.Check(context.Background(), f.chain) }()
	}
	<-started                          // the first download is under way
	time.Sleep(100 * time.Millisecond) // let the others queue behind it
	close(gate)
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if h := f.srv.hits.Load(); h != 1 {
		t.Fatalf("%d downloads for %d concurrent checks", h, n)
	}
}

// A waiter whose context ends stops waiting; the download goes on.
func TestWaiterContext(t *testing.T) {
	f := newFixture(t)
	f.publish()
	gate, started := make(chan struct{}), make(chan struct{}, 10)
	f.srv.mu.Lock()
	f.srv.gate, f.srv.started = gate, started
	f.srv.mu.Unlock()
	first := make(chan error, 1)
	go func() { first <- f.ch.Check(context.Background(), f.chain) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := f.ch.Check(ctx, f.chain); !errors.Is(err, revocation.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter: %v", err)
	}
	close(gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// A failed download is remembered for a minute: messages meanwhile get
// ErrUnavailable at once instead of each waiting for the same server.
func TestFailureRemembered(t *testing.T) {
	f := newFixture(t) // nothing published: 404
	for i := 0; i < 3; i++ {
		if err := f.ch.Check(context.Background(), f.chain); !errors.Is(err, revocation.ErrUnavailable) {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if n := f.srv.hits.Load(); n != 1 {
		t.Fatalf("%d downloads within the minute, want 1", n)
	}
	f.publish()
	f.clk.Add(61 * time.Second)
	if err := f.ch.Check(context.Background(), f.chain); err != nil {
		t.Fatalf("after the minute the CRL is fetched again: %v", err)
	}
}

// A CRL older than the cached one (a replayed copy that does not list a
// later revocation) is refused.
func TestOlderCRLRefused(t *testing.T) {
	f := newFixture(t)
	older := f.pki.Intermediate.CRL(now.Add(-2*time.Hour), now.Add(72*time.Hour)) // clean, issued earlier
	f.publish(testpki.Revoked(f.leaf.Cert, now.Add(-90*time.Minute), 1))          // issued an hour ago, lists the leaf
	if err := f.ch.Check(context.Background(), f.chain); !errors.Is(err, revocation.ErrRevoked) {
		t.Fatal(err)
	}
	f.clk.Add(25 * time.Hour) // the cached CRL is due for a refresh
	f.srv.set("/ca1.crl", older)
	err := f.ch.Check(context.Background(), f.chain)
	if err == nil {
		t.Fatalf("an older CRL made the revoked certificate pass: %v", err)
	}
	if !strings.Contains(err.Error(), "older than the cached") {
		t.Fatalf("%v", err)
	}
}
