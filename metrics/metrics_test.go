package metrics

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/pecgo/pec/store/sqlite"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-milter"
	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/filter"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/outbox"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

var quiet = slog.New(slog.DiscardHandler)

// ---- helpers ----

func openStore(t *testing.T) (*sqlite.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pec.db")
	st, err := sqlite.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the exposition text of m's /metrics.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	code, body := get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	return body
}

// expect checks that each line is a whole line of the exposition text.
func expect(t *testing.T, body string, lines ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		have[l] = true
	}
	for _, l := range lines {
		if !have[l] {
			t.Errorf("missing series line %q", l)
		}
	}
	if t.Failed() {
		t.Logf("exposition (pec_ only):\n%s", pecLines(body))
	}
}

func absent(t *testing.T, body string, prefixes ...string) {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				t.Errorf("unexpected series %q", l)
			}
		}
	}
}

// value is the value of the series named exactly series (with its labels).
func value(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s in:\n%s", series, pecLines(body))
	return 0
}

func pecLines(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "pec_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func outgoing(k kind.Kind, n int) store.Outgoing {
	id := fmt.Sprintf("<%s-%d@pec.example.test>", k, n)
	return store.Outgoing{MailFrom: "posta-certificata@pec.example.test", Rcpts: []string{"user@pec.example.test"},
		Data: []byte("Message-ID: " + id + "\r\nSubject: test\r\n\r\nbody\r\n"), MessageID: id, Kind: k}
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func event(point store.EventPoint, typ store.EventType) store.Event {
	return store.Event{Time: t0, Point: point, Type: typ, PECID: "opec.1@pec.example.test"}
}

type fakeIndex struct {
	ix *index.Index
	at time.Time
}

func (f fakeIndex) Snapshot() (*index.Index, error) {
	if f.ix == nil {
		return nil, service.ErrNoIndex
	}
	return f.ix, nil
}
func (f fakeIndex) SyncedAt() time.Time { return f.at }

var pki = sync.OnceValue(func() *testpki.PKI { return testpki.New("example.test") })

// testProviders are n providers of the index, each with a signing certificate.
func testProviders(n int) []index.TestProvider {
	var ps []index.TestProvider
	for i := range n {
		dom := fmt.Sprintf("pec%d.example.test", i)
		p := pki().Issue(fmt.Sprintf("Provider %d", i), "posta-certificata@"+dom, time.Time{}, time.Time{}, true)
		ps = append(ps, index.TestProvider{Name: fmt.Sprintf("Provider %d", i), Domains: []string{dom}, Certs: []*x509.Certificate{p.Cert}})
	}
	return ps
}

func testIndex(t *testing.T, n int) *index.Index {
	t.Helper()
	ix, err := index.ParseLDIF(strings.NewReader(string(index.TestLDIF(testProviders(n)...))))
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

// ---- observers ----

func TestObserversExposition(t *testing.T) {
	m := New(Options{Log: quiet})
	envelope := &build.Message{Kind: kind.PostaCertificata}
	anomaly := &build.Message{Kind: kind.Anomalia}

	m.ObserveMilter("access", point.Decision{Action: point.Accept, Replace: envelope, Txn: store.Txn{
		Events: []store.Event{event("access", "accettazione"), event("access", "posta-certificata")},
		Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1)}}}, 31250*time.Microsecond)
	m.ObserveMilter("access", point.Decision{Action: point.Accept, Replace: envelope, Txn: store.Txn{
		Outbox: []store.Outgoing{outgoing(kind.Accettazione, 2)}}}, 46875*time.Microsecond)
	m.ObserveMilter("access", point.Decision{Action: point.Reject, Code: 550, Txn: store.Txn{
		Events: []store.Event{event("access", "non-accettazione")},
		Outbox: []store.Outgoing{outgoing(kind.NonAccettazione, 3)}}}, 3*time.Second)
	m.ObserveMilter("access", point.Decision{Action: point.TempFail, Code: 451}, 3906250*time.Nanosecond)
	// incoming: a transport envelope taken in charge, a virus in one, a
	// notice, an anomaly envelope for ordinary mail
	m.ObserveMilter("incoming", point.Decision{Action: point.Accept, Kind: kind.PostaCertificata, Txn: store.Txn{
		Events: []store.Event{event("incoming", "presa-in-carico")},
		Outbox: []store.Outgoing{outgoing(kind.PresaInCarico, 4)}}}, 10*time.Millisecond)
	m.ObserveMilter("incoming", point.Decision{Action: point.Discard, Kind: kind.PostaCertificata, Txn: store.Txn{
		Events: []store.Event{event("incoming", "rilevazione-virus"), event("incoming", "rilevazione-virus")},
		Outbox: []store.Outgoing{outgoing(kind.RilevazioneVirus, 5), outgoing(kind.RilevazioneVirus, 6)}}}, 10*time.Millisecond)
	m.ObserveMilter("incoming", point.Decision{Action: point.Accept, Kind: kind.AvvenutaConsegna, Txn: store.Txn{
		Events: []store.Event{event("incoming", "ricevuta-avvenuta-consegna")}}}, 10*time.Millisecond)
	m.ObserveMilter("incoming", point.Decision{Action: point.Accept, Replace: anomaly, Txn: store.Txn{
		Events: []store.Event{event("incoming", "anomalia")},
		Outbox: []store.Outgoing{{Kind: "inoltro-posta-ordinaria"}}}}, 10*time.Millisecond)
	m.ObserveMilter("incoming", point.Decision{Action: point.Reject, Code: 554}, 10*time.Millisecond)

	m.ObserveDelivery(lmtp.Report{Kind: kind.PostaCertificata, Elapsed: 200 * time.Millisecond,
		Rcpts:  []lmtp.RcptReport{{Rcpt: "a@x", Outcome: lmtp.Delivered}, {Rcpt: "b@x", Outcome: lmtp.Delivered}, {Rcpt: "c@x", Outcome: lmtp.Failed}, {Rcpt: "d@x", Outcome: lmtp.Deferred}},
		Outbox: []store.Outgoing{outgoing(kind.AvvenutaConsegna, 7), outgoing(kind.AvvenutaConsegna, 8), outgoing(kind.ErroreConsegna, 9)}})
	m.ObserveDelivery(lmtp.Report{Kind: "strange", Elapsed: time.Millisecond,
		Rcpts: []lmtp.RcptReport{{Rcpt: "a@x", Outcome: lmtp.Deferred}}})

	m.OutboxResult(nil)
	m.OutboxResult(nil)
	m.OutboxResult(errors.New("451 try later"))
	m.ClamdError(errors.New("clamd unreachable"))

	body := scrape(t, m)
	expect(t, body,
		`pec_messages_total{kind="posta-certificata",outcome="accept",point="access"} 2`,
		`pec_messages_total{kind="ordinaria",outcome="reject",point="access"} 1`,
		`pec_messages_total{kind="ordinaria",outcome="tempfail",point="access"} 1`,
		`pec_messages_total{kind="posta-certificata",outcome="accept",point="incoming"} 1`,
		`pec_messages_total{kind="posta-certificata",outcome="discard",point="incoming"} 1`,
		`pec_messages_total{kind="avvenuta-consegna",outcome="accept",point="incoming"} 1`,
		`pec_messages_total{kind="anomalia",outcome="accept",point="incoming"} 1`,
		`pec_messages_total{kind="ordinaria",outcome="reject",point="incoming"} 1`,
		`pec_messages_total{kind="posta-certificata",outcome="delivered",point="delivery"} 2`,
		`pec_messages_total{kind="posta-certificata",outcome="failed",point="delivery"} 1`,
		`pec_messages_total{kind="posta-certificata",outcome="deferred",point="delivery"} 1`,
		`pec_messages_total{kind="ordinaria",outcome="deferred",point="delivery"} 1`,
		`pec_processing_seconds_count{point="access"} 4`,
		`pec_processing_seconds_bucket{point="access",le="0.005"} 1`,
		`pec_processing_seconds_bucket{point="access",le="0.05"} 3`,
		`pec_processing_seconds_bucket{point="access",le="5"} 4`,
		`pec_processing_seconds_sum{point="access"} 3.08203125`,
		`pec_processing_seconds_count{point="incoming"} 5`,
		`pec_processing_seconds_count{point="delivery"} 2`,
		`pec_receipts_total{kind="accettazione"} 2`,
		`pec_receipts_total{kind="non-accettazione"} 1`,
		`pec_receipts_total{kind="presa-in-carico"} 1`,
		`pec_receipts_total{kind="rilevazione-virus"} 2`,
		`pec_receipts_total{kind="inoltro-posta-ordinaria"} 1`,
		`pec_receipts_total{kind="avvenuta-consegna"} 2`,
		`pec_receipts_total{kind="errore-consegna"} 1`,
		`pec_outbox_sent_total 2`,
		`pec_outbox_failures_total 1`,
		`pec_clamd_errors_total 1`,
		`# TYPE pec_processing_seconds histogram`,
		`# TYPE pec_messages_total counter`,
	)
	// no store, no index: their gauges are left out
	absent(t, body, "pec_outbox_depth", "pec_index_")
	if !strings.Contains(body, "\ngo_goroutines ") || !strings.Contains(body, "\nprocess_") {
		t.Error("Go runtime and process collectors missing")
	}
}

func TestDecisionKind(t *testing.T) {
	for _, c := range []struct {
		d    point.Decision
		want string
	}{
		{point.Decision{}, "ordinaria"},
		{point.Decision{Replace: &build.Message{Kind: kind.Anomalia}}, "anomalia"},
		{point.Decision{Kind: kind.RilevazioneVirus}, "rilevazione-virus"},
		{point.Decision{Kind: kind.PostaCertificata}, "posta-certificata"},
		{point.Decision{Kind: "nonsense"}, "ordinaria"},
		// the kind comes from the decision, never from its log rows
		{point.Decision{Txn: store.Txn{Events: []store.Event{{Type: "rilevazione-virus"}}}}, "ordinaria"},
		{point.Decision{Replace: &build.Message{Kind: kind.Anomalia}, Kind: kind.PostaCertificata}, "anomalia"},
	} {
		if got := DecisionKind(c.d); got != c.want {
			t.Errorf("%+v: kind %q, want %q", c.d, got, c.want)
		}
	}
}

// ---- scrape-time gauges ----

func TestOutboxDepthAndIndexGauges(t *testing.T) {
	st, path := openStore(t)
	if err := st.Commit(store.Txn{Events: []store.Event{event("access", "accettazione")},
		Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1), outgoing(kind.Accettazione, 2), outgoing(kind.PresaInCarico, 3)}}); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	m := New(Options{Store: st, StorePath: path, Index: fakeIndex{ix: testIndex(t, 3), at: now.Add(-90 * time.Second)},
		Now: func() time.Time { return now }, Log: quiet})
	expect(t, scrape(t, m),
		"pec_outbox_depth 3",
		"pec_index_providers 3",
		"pec_index_age_seconds 90",
		"# TYPE pec_outbox_depth gauge",
		"# TYPE pec_index_age_seconds gauge",
	)

	// no snapshot: providers 0, age left out
	m = New(Options{Store: st, Index: fakeIndex{}, Log: quiet})
	body := scrape(t, m)
	expect(t, body, "pec_outbox_depth 3", "pec_index_providers 0")
	absent(t, body, "pec_index_age_seconds ")

	// a store that fails: the depth is an error, the other series are still served
	st.Close()
	m = New(Options{Store: st, Index: fakeIndex{ix: testIndex(t, 1), at: time.Now()}, Log: quiet})
	m.ClamdError(nil)
	body = scrape(t, m)
	expect(t, body, "pec_index_providers 1", "pec_clamd_errors_total 1")
	absent(t, body, "pec_outbox_depth ")
}

// The real service.Index: its SyncedAt feeds pec_index_age_seconds.
func TestServiceIndexGauges(t *testing.T) {
	dir := t.TempDir()
	ldif := filepath.Join(dir, "providers.ldif")
	if err := os.WriteFile(ldif, index.TestLDIF(testProviders(2)...), 0o644); err != nil {
		t.Fatal(err)
	}
	st, path := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := &config.Config{Index: config.Index{LDIF: ldif, CacheDir: filepath.Join(dir, "cache")}, Store: config.Store{Path: path}}
	ix, err := service.OpenIndex(ctx, cfg, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if at := ix.SyncedAt(); at.IsZero() || time.Since(at) > time.Minute {
		t.Fatalf("SyncedAt %v after a successful sync", at)
	}
	now := ix.SyncedAt().Add(42 * time.Second)
	m := New(Options{Store: st, StorePath: path, Index: ix, Now: func() time.Time { return now }, Log: quiet})
	body := scrape(t, m)
	expect(t, body, "pec_index_providers 2")
	// the index's own syncer may sync again meanwhile: about 42 s, not exactly
	if v := value(t, body, "pec_index_age_seconds"); v < 40 || v > 42 {
		t.Errorf("pec_index_age_seconds %v, want about 42", v)
	}
	if err := m.Health(); err != nil {
		t.Fatalf("health: %v", err)
	}

	// source gone, cache kept: a new process serves the cached copy, aged
	// from when it was fetched (recorded in the cache), not from the load
	cancel()
	fetched := ix.SyncedAt()
	if err := os.Remove(ldif); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	ix2, err := service.OpenIndex(ctx2, cfg, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	// (the cache records the Syncer's clock at the write, the service its
	// own just after: they differ by the write's duration)
	if at := ix2.SyncedAt(); at.Sub(fetched).Abs() > time.Second {
		t.Fatalf("SyncedAt of the cached copy %v, want the fetch time %v", at, fetched)
	}

	// neither source nor cache: no snapshot, unhealthy
	cfg.Index.CacheDir = filepath.Join(dir, "empty-cache")
	ix3, err := service.OpenIndex(ctx2, cfg, time.Hour, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if !ix3.SyncedAt().IsZero() {
		t.Fatal("SyncedAt set without a snapshot")
	}
	m = New(Options{Store: st, StorePath: path, Index: ix3, Log: quiet})
	body = scrape(t, m)
	expect(t, body, "pec_index_providers 0")
	absent(t, body, "pec_index_age_seconds ")
}

// ---- /healthz ----

func TestHealthz(t *testing.T) {
	st, path := openStore(t)
	loaded := fakeIndex{ix: testIndex(t, 1), at: time.Now()}
	check := func(name string, o Options, wantCode int, wantBody ...string) {
		t.Helper()
		o.Log = quiet
		srv := httptest.NewServer(New(o).Handler())
		defer srv.Close()
		code, body := get(t, srv.URL+"/healthz")
		if code != wantCode {
			t.Errorf("%s: /healthz %d, want %d\n%s", name, code, wantCode, body)
		}
		for _, w := range wantBody {
			if !strings.Contains(body, w) {
				t.Errorf("%s: body %q lacks %q", name, body, w)
			}
		}
	}
	check("healthy", Options{Store: st, StorePath: path, Index: loaded}, 200, "ok")
	check("no index", Options{Store: st, StorePath: path, Index: fakeIndex{}}, 503,
		"unhealthy", "providers' index not loaded", service.ErrNoIndex.Error())
	check("store file missing", Options{Store: st, StorePath: filepath.Join(t.TempDir(), "gone.db"), Index: loaded}, 503,
		"store not writable", "gone.db")
	check("both", Options{Store: st, StorePath: filepath.Join(t.TempDir(), "gone.db"), Index: fakeIndex{}}, 503,
		"store not writable", "providers' index not loaded")

	closed, cpath := openStore(t)
	closed.Close()
	check("store closed", Options{Store: closed, StorePath: cpath, Index: loaded}, 503, "store not available")

	// only GET
	srv := httptest.NewServer(New(Options{Log: quiet}).Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz: %d", resp.StatusCode)
	}
}

// ---- end to end: go-milter client → filter.Milter → store; scrape over HTTP ----

// scripted is a Role answering by envelope sender.
type scripted map[string]point.Decision

func (s scripted) Check(ctx context.Context, env point.Envelope, raw []byte, now time.Time) point.Decision {
	d, ok := s[env.MailFrom]
	if !ok {
		return point.Decision{Action: point.TempFail, Code: 451, Status: "4.3.0", Text: "unscripted"}
	}
	return d
}

func serveMilter(t *testing.T, m *filter.Milter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := m.Server()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// send runs one SMTP transaction through the milter at addr and returns
// the final action.
func send(t *testing.T, addr, from, rcpt string) (*milter.Action, []milter.ModifyAction) {
	t.Helper()
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		// v2 masks: go-milter's server advertises protocol version 2
		ActionMask:   milter.OptAddHeader | milter.OptChangeBody | milter.OptRemoveRcpt | milter.OptChangeHeader,
		ProtocolMask: 0,
		ReadTimeout:  10 * time.Second,
		WriteTimeout: 10 * time.Second,
	})
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []func() (*milter.Action, error){
		func() (*milter.Action, error) {
			return s.Conn("client.example.test", milter.FamilyInet, 40000, "127.0.0.1")
		},
		func() (*milter.Action, error) { return s.Helo("client.example.test") },
		func() (*milter.Action, error) { return s.Mail("<"+from+">", nil) },
		func() (*milter.Action, error) { return s.Rcpt("<"+rcpt+">", nil) },
		func() (*milter.Action, error) { return s.HeaderField("From", " "+from) },
		func() (*milter.Action, error) { return s.HeaderField("To", " "+rcpt) },
		func() (*milter.Action, error) { return s.HeaderField("Subject", " hello") },
		func() (*milter.Action, error) { return s.HeaderEnd() },
	}
	for i, step := range steps {
		act, err := step()
		if err != nil {
			t.Fatalf("%s: step %d: %v", from, i, err)
		}
		if act.Code != milter.ActContinue {
			t.Fatalf("%s: step %d: action %c", from, i, act.Code)
		}
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader("Hello.\r\n"))
	if err != nil {
		t.Fatalf("%s: body: %v", from, err)
	}
	return act, mods
}

func TestMilterEndToEnd(t *testing.T) {
	st, path := openStore(t)
	m := New(Options{Store: st, StorePath: path, Index: fakeIndex{ix: testIndex(t, 2), at: time.Now().Add(-time.Minute)}, Log: quiet})

	envelope := &build.Message{Kind: kind.PostaCertificata, ID: "opec.1@pec.example.test",
		Header:     []build.Field{{Name: "Subject", Value: "POSTA CERTIFICATA: hello"}, {Name: "To", Value: "b@pec.example.test", Copied: true}},
		BodyPieces: [][]byte{[]byte("signed body\r\n")}}
	access := scripted{
		"ok@pec.example.test": {Action: point.Accept, Replace: envelope, Reason: "accepted", Txn: store.Txn{
			Events: []store.Event{event("access", "accettazione"), event("access", "posta-certificata")},
			Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1)}}},
		"bad@pec.example.test": {Action: point.Reject, Code: 550, Status: "5.7.1", Text: "PEC: message not accepted", Txn: store.Txn{
			Events: []store.Event{event("access", "non-accettazione")},
			Outbox: []store.Outgoing{outgoing(kind.NonAccettazione, 2)}}},
		// a transaction the store refuses (zero event time): the milter
		// tempfails and nothing is queued, so no receipt may be counted
		"broken@pec.example.test": {Action: point.Accept, Replace: envelope, Txn: store.Txn{
			Events: []store.Event{{Point: "access", Type: "accettazione"}},
			Outbox: []store.Outgoing{outgoing(kind.Accettazione, 3)}}},
	}
	incoming := scripted{
		"posta-certificata@pec.other.test": {Action: point.Discard, Reason: "virus", Kind: kind.PostaCertificata, Txn: store.Txn{
			Events: []store.Event{event("incoming", "rilevazione-virus")},
			Outbox: []store.Outgoing{outgoing(kind.RilevazioneVirus, 4)}}},
		"someone@internet.test": {Action: point.Accept, Replace: &build.Message{Kind: kind.Anomalia, ID: "x@pec.example.test", BodyPieces: [][]byte{[]byte("wrapped\r\n")}},
			Txn: store.Txn{Events: []store.Event{event("incoming", "anomalia")}}},
	}
	var kicks atomic.Int32
	accessAddr := serveMilter(t, &filter.Milter{Name: "access", Role: access, Store: st, Log: quiet, Observer: m.ObserveMilter, Kick: func() { kicks.Add(1) }})
	incomingAddr := serveMilter(t, &filter.Milter{Name: "incoming", Role: incoming, Store: st, Log: quiet, Observer: m.ObserveMilter})

	act, mods := send(t, accessAddr, "ok@pec.example.test", "b@pec.example.test")
	if act.Code != milter.ActAccept || len(mods) == 0 {
		t.Errorf("accepted message: action %c, %d modifications", act.Code, len(mods))
	}
	act, _ = send(t, accessAddr, "bad@pec.example.test", "b@pec.example.test")
	if act.Code != milter.ActReplyCode || act.SMTPCode != 550 {
		t.Errorf("refused message: action %c %d", act.Code, act.SMTPCode)
	}
	act, _ = send(t, accessAddr, "broken@pec.example.test", "b@pec.example.test")
	if act.Code != milter.ActReplyCode || act.SMTPCode != 451 {
		t.Errorf("store failure: action %c %d %q", act.Code, act.SMTPCode, act.SMTPText)
	}
	act, _ = send(t, incomingAddr, "posta-certificata@pec.other.test", "b@pec.example.test")
	if act.Code != milter.ActDiscard {
		t.Errorf("virus: action %c", act.Code)
	}
	act, _ = send(t, incomingAddr, "someone@internet.test", "b@pec.example.test")
	if act.Code != milter.ActAccept {
		t.Errorf("anomaly: action %c", act.Code)
	}

	// scrape the real endpoint on loopback
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	expect(t, body,
		`pec_messages_total{kind="posta-certificata",outcome="accept",point="access"} 1`,
		`pec_messages_total{kind="ordinaria",outcome="reject",point="access"} 1`,
		`pec_messages_total{kind="ordinaria",outcome="tempfail",point="access"} 1`,
		`pec_messages_total{kind="posta-certificata",outcome="discard",point="incoming"} 1`,
		`pec_messages_total{kind="anomalia",outcome="accept",point="incoming"} 1`,
		`pec_processing_seconds_count{point="access"} 3`,
		`pec_processing_seconds_count{point="incoming"} 2`,
		`pec_receipts_total{kind="accettazione"} 1`, // the broken transaction's is not counted
		`pec_receipts_total{kind="non-accettazione"} 1`,
		`pec_receipts_total{kind="rilevazione-virus"} 1`,
		`pec_outbox_depth 3`,
		`pec_index_providers 2`,
	)
	if v := value(t, body, "pec_index_age_seconds"); v < 60 || v > 70 {
		t.Errorf("pec_index_age_seconds %v, want about 60", v)
	}
	if n := kicks.Load(); n != 2 { // accepted and refused: both queued a notice
		t.Errorf("kicks %d", n)
	}
	code, body = get(t, base+"/healthz")
	if code != 200 || body != "ok\n" {
		t.Errorf("/healthz %d %q", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not stop")
	}
}

// ---- the delivery point's hook, through a real LMTP exchange ----

// fakeDovecot is an LMTP server answering per recipient by local part:
// ok… stored, bad… 550 at RCPT, full… 452 at RCPT, late… 552 after DATA.
type fakeDovecot struct{ from string }

func (fakeDovecot) NewSession(*smtp.Conn) (smtp.Session, error) { return &doveSession{}, nil }

type doveSession struct{ rcpts []string }

func (d *doveSession) Reset()                               { d.rcpts = nil }
func (d *doveSession) Logout() error                        { return nil }
func (d *doveSession) Mail(string, *smtp.MailOptions) error { return nil }
func (d *doveSession) Data(io.Reader) error                 { return errors.New("LMTP only") }
func (d *doveSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	switch {
	case strings.HasPrefix(to, "bad"):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "<" + to + "> User doesn't exist"}
	case strings.HasPrefix(to, "full"):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "<" + to + "> Mailbox is full"}
	}
	d.rcpts = append(d.rcpts, to)
	return nil
}
func (d *doveSession) LMTPData(r io.Reader, status smtp.StatusCollector) error {
	io.Copy(io.Discard, r)
	for _, to := range d.rcpts {
		var err error
		if strings.HasPrefix(to, "late") {
			err = &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "<" + to + "> Quota exceeded"}
		}
		status.SetStatus(to, err)
	}
	return nil
}

func listenSMTP(t *testing.T, be smtp.Backend, lmtpMode bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := smtp.NewServer(be)
	srv.LMTP = lmtpMode
	srv.Domain = "localhost"
	srv.ErrorLog = nopLogger{}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// deliver sends one message over LMTP to addr and returns the answers per recipient.
func deliver(t *testing.T, addr string, rcpts ...string) map[string]int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("mx.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("sender@internet.test", nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "From: sender@internet.test\r\nTo: x@pec.example.test\r\nSubject: plain\r\n\r\nordinary mail\r\n")
	codes := map[string]int{}
	_, err = w.CloseWithLMTPResponse()
	for _, r := range rcpts {
		codes[r] = 250
	}
	var lerr smtp.LMTPDataError
	if errors.As(err, &lerr) {
		for r, se := range lerr {
			codes[r] = se.Code
		}
	} else if err != nil {
		var se *smtp.SMTPError
		if !errors.As(err, &se) {
			t.Fatal(err)
		}
		for _, r := range rcpts {
			codes[r] = se.Code
		}
	}
	c.Quit()
	return codes
}

func TestDeliveryObserver(t *testing.T) {
	st, path := openStore(t)
	m := New(Options{Store: st, StorePath: path, Log: quiet})
	dovecot := listenSMTP(t, fakeDovecot{}, true)
	// ordinary mail reaches a mailbox wrapped in our anomaly envelope: a
	// signing provider; Dovecot's answers still pass through
	id := pki().Issue("Example", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	prov := &build.Provider{Name: "Example", Domain: "pec.example.test", Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}
	srv := &lmtp.Server{
		Delivery: &point.Delivery{Provider: prov},
		Store:    st, Dovecot: "inet:" + dovecot, Log: quiet, Observer: m.ObserveDelivery,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close() })

	codes := deliver(t, ln.Addr().String(), "ok1@pec.example.test", "ok2@pec.example.test", "bad@pec.example.test", "full@pec.example.test", "late@pec.example.test")
	want := map[string]int{"ok1@pec.example.test": 250, "ok2@pec.example.test": 250, "bad@pec.example.test": 550, "full@pec.example.test": 452, "late@pec.example.test": 552}
	for r, c := range want {
		if codes[r] != c {
			t.Errorf("%s: %d, want %d (the hook must not change the answers)", r, codes[r], c)
		}
	}
	// Dovecot down: every recipient deferred
	srv.Dovecot = "inet:127.0.0.1:1"
	codes = deliver(t, ln.Addr().String(), "ok3@pec.example.test")
	if codes["ok3@pec.example.test"] != 451 {
		t.Errorf("Dovecot down: %v", codes)
	}
	expect(t, scrape(t, m),
		`pec_messages_total{kind="ordinaria",outcome="delivered",point="delivery"} 2`,
		`pec_messages_total{kind="ordinaria",outcome="failed",point="delivery"} 2`,
		`pec_messages_total{kind="ordinaria",outcome="deferred",point="delivery"} 2`,
		`pec_processing_seconds_count{point="delivery"} 2`,
		`pec_outbox_depth 0`,
	)
}

// ---- outbox and clamd hooks ----

type sinkBackend struct{}

func (sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{}, nil }

type sinkSession struct{ refuse bool }

func (s *sinkSession) Reset()                               { s.refuse = false }
func (s *sinkSession) Logout() error                        { return nil }
func (s *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "refused") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	return nil
}
func (s *sinkSession) Data(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }

func TestOutboxAndClamdHooks(t *testing.T) {
	st, path := openStore(t)
	m := New(Options{Store: st, StorePath: path, Log: quiet})
	refused := outgoing(kind.Accettazione, 2)
	refused.Rcpts = []string{"refused@pec.example.test"}
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{outgoing(kind.Accettazione, 1), refused, outgoing(kind.PresaInCarico, 3)}}); err != nil {
		t.Fatal(err)
	}
	sender := &outbox.Sender{Store: st, Addr: listenSMTP(t, sinkBackend{}, false), Logger: quiet, OnResult: m.OutboxResult}
	sent, err := sender.DrainOnce(context.Background())
	if err != nil || sent != 2 {
		t.Fatalf("drain: %d sent, %v", sent, err)
	}
	// listener down: one failed attempt for the due item... none is due
	// now (backoff), so make a new one
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{outgoing(kind.Accettazione, 4)}}); err != nil {
		t.Fatal(err)
	}
	sender.Addr = "127.0.0.1:1"
	if _, err := sender.DrainOnce(context.Background()); err == nil {
		t.Fatal("drain to a closed port succeeded")
	}

	cl := &clamd.Client{Network: "tcp", Addr: "127.0.0.1:1", Timeout: 2 * time.Second, OnError: m.ClamdError}
	if _, err := cl.Scan(context.Background(), strings.NewReader("data")); err == nil {
		t.Fatal("scan with clamd down succeeded")
	}
	if err := cl.Ping(context.Background()); err == nil {
		t.Fatal("ping with clamd down succeeded")
	}
	expect(t, scrape(t, m),
		"pec_outbox_sent_total 2",
		"pec_outbox_failures_total 2",
		"pec_outbox_depth 2",
		"pec_clamd_errors_total 2",
	)
}
