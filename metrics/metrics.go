// Package metrics exposes Prometheus metrics and a health check for
// pecmilter and pecdeliver. Each process builds one Metrics with its own
// registry (nothing goes to the global default registry), feeds it from
// the hooks of the milter roles (filter.Milter.Observer), the delivery
// point (lmtp.Server.Observer), the outbox sender (outbox.Sender.OnResult)
// and the antivirus client (clamd.Client.OnError), and serves Handler on
// the configured address: /metrics in the Prometheus text format, /healthz
// for a load balancer or a supervisor.
//
// Series (all prefixed pec_):
//
//	pec_messages_total{point,kind,outcome}   counter: one per message at access/incoming, one per recipient at delivery
//	pec_processing_seconds{point}            histogram: per-message latency
//	pec_receipts_total{kind}                 counter: generated messages committed to the outbox
//	pec_outbox_depth                         gauge: outbox items not yet sent (read at scrape)
//	pec_outbox_sent_total                    counter
//	pec_outbox_failures_total                counter: failed send attempts (each is retried)
//	pec_index_age_seconds                    gauge: now - when the served index snapshot was fetched
//	pec_index_providers                      gauge: providers in the served snapshot
//	pec_clamd_errors_total                   counter: clamd calls that failed (message tempfailed)
//	pec_clamd_up                             gauge: 1 when clamd answered PING at the last scrape or /healthz (pecmilter)
//	pec_clamd_signatures_age_seconds         gauge: age of clamd's signature database (VERSION), when it tells
//	pec_notices_undeliverable_total{stage,kind} counter: generated messages reported undeliverable
//	                                         (stage "reinject": refused by the re-injection listener;
//	                                         "bounce": a bounce reached the service mailbox)
//	pec_clock_synchronized, pec_clock_max_error_seconds, pec_service_suspended
//	                                         gauges of the guards (guard.go)
//
// The status series (certificates, outbox age, timer backlog, log verify
// and archive) are in status.go (Metrics.AddStatus). Alert rules and a
// Grafana dashboard on all of them: packaging/prometheus/pec.rules.yml,
// packaging/grafana/pec.json.
//
// Go runtime and process metrics (go_*, process_*) are on the registry too.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/lmtp"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// Points (the "point" label).
const (
	PointAccess   = "access"
	PointIncoming = "incoming"
	PointDelivery = "delivery"
)

// IndexView is the providers' index as the metrics read it;
// *service.Index implements it.
type IndexView interface {
	// Snapshot returns the index served, or an error when none is loaded.
	Snapshot() (*index.Index, error)
	// SyncedAt is when that snapshot was fetched from the source.
	SyncedAt() time.Time
}

// Options are what Metrics reads at scrape time and for /healthz. Nil
// fields leave their series out and skip their health check.
type Options struct {
	// Store gives pec_outbox_depth; /healthz needs it to answer.
	Store store.Outbox
	// StorePath is the store's SQLite file: /healthz checks that it, its
	// directory and its -wal/-shm files (when present) are writable.
	StorePath string
	// Index gives pec_index_age_seconds and pec_index_providers; /healthz
	// needs a snapshot loaded.
	Index IndexView
	// Clamd, when set, is asked at scrape time and by /healthz (pecmilter:
	// PING and VERSION of its clamd); a failure makes /healthz unhealthy.
	Clamd ClamdView
	Now   func() time.Time // default time.Now
	Log   *slog.Logger     // default slog.Default()
}

// ClamdView is the antivirus as the metrics read it; *clamd.Client
// implements it.
type ClamdView interface {
	Ping(ctx context.Context) error
	Version(ctx context.Context) (string, error)
}

// Metrics is one process's registry and the hooks that feed it. Its
// methods are safe for concurrent use.
type Metrics struct {
	opts Options
	reg  *prometheus.Registry

	clamdMu sync.Mutex
	clamd   ClamdView // Options.Clamd, or set later by SetClamd

	guardMu sync.Mutex
	guard   GuardView // set by SetGuard (guard.go)

	messages       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	receipts       *prometheus.CounterVec
	outboxSent     prometheus.Counter
	outboxFailures prometheus.Counter
	clamdErrors    prometheus.Counter
	undeliverable  *prometheus.CounterVec
}

// latencyBuckets span a quick refusal (milliseconds) to the milter's
// per-message time limit (2 minutes: antivirus and signing).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120}

// New builds the metrics on a new registry.
func New(o Options) *Metrics {
	m := &Metrics{
		opts:  o,
		reg:   prometheus.NewRegistry(),
		clamd: o.Clamd,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pec_messages_total",
			Help: "Messages handled, by point (access, incoming: one per message; delivery: one per recipient), PEC kind and outcome.",
		}, []string{"point", "kind", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pec_processing_seconds",
			Help:    "Time to decide on one message (checks, antivirus, signing, store commit; at delivery the Dovecot transaction too).",
			Buckets: latencyBuckets,
		}, []string{"point"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pec_receipts_total",
			Help: "Generated messages (receipts, notices, forwards) committed to the outbox, by kind.",
		}, []string{"kind"}),
		outboxSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pec_outbox_sent_total",
			Help: "Outbox items sent to the re-injection listener.",
		}),
		outboxFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pec_outbox_failures_total",
			Help: "Failed attempts to send an outbox item (the item is retried).",
		}),
		clamdErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pec_clamd_errors_total",
			Help: "Calls to clamd that failed (the message is tempfailed: fail closed).",
		}),
		undeliverable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pec_notices_undeliverable_total",
			Help: "Generated messages (receipts, notices) reported undeliverable, by stage (reinject: refused by the re-injection listener; bounce: returned to the service mailbox) and kind. Each is also an event-log row of type undeliverable.",
		}, []string{"stage", "kind"}),
	}
	m.reg.MustRegister(m.messages, m.latency, m.receipts, m.outboxSent, m.outboxFailures, m.clamdErrors, m.undeliverable,
		scrapeCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// SetClamd makes the scrapes and /healthz ask c (pecmilter's clamd), as
// Options.Clamd does; for a process whose metrics endpoint is started
// before its antivirus client exists.
func (m *Metrics) SetClamd(c ClamdView) {
	m.clamdMu.Lock()
	m.clamd = c
	m.clamdMu.Unlock()
}

func (m *Metrics) clamdView() ClamdView {
	m.clamdMu.Lock()
	defer m.clamdMu.Unlock()
	return m.clamd
}

// Registry returns the process's registry (to add more collectors).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

func (m *Metrics) now() time.Time {
	if m.opts.Now != nil {
		return m.opts.Now()
	}
	return time.Now()
}

func (m *Metrics) log() *slog.Logger {
	if m.opts.Log != nil {
		return m.opts.Log
	}
	return slog.Default()
}

// ObserveMilter records one milter decision; it has the signature of
// filter.Milter.Observer. role is the point ("access" or "incoming").
func (m *Metrics) ObserveMilter(role string, d point.Decision, elapsed time.Duration) {
	m.messages.WithLabelValues(role, DecisionKind(d), d.Action.String()).Inc()
	m.latency.WithLabelValues(role).Observe(elapsed.Seconds())
	m.countReceipts(d.Txn.Outbox)
}

// ObserveDelivery records one LMTP transaction; it has the signature of
// lmtp.Server.Observer.
func (m *Metrics) ObserveDelivery(r lmtp.Report) {
	k := knownKind(r.Kind)
	for _, rc := range r.Rcpts {
		m.messages.WithLabelValues(PointDelivery, k, rc.Outcome).Inc()
	}
	m.latency.WithLabelValues(PointDelivery).Observe(r.Elapsed.Seconds())
	m.countReceipts(r.Outbox)
}

func (m *Metrics) countReceipts(out []store.Outgoing) {
	for _, o := range out {
		k := string(o.Kind)
		if k == "" {
			k = "unknown"
		}
		m.receipts.WithLabelValues(k).Inc()
	}
}

// OutboxResult counts one send attempt; it has the signature of
// outbox.Sender.OnResult.
func (m *Metrics) OutboxResult(err error) {
	if err == nil {
		m.outboxSent.Inc()
	} else {
		m.outboxFailures.Inc()
	}
}

// ClamdError counts one failed clamd call; it has the signature of
// clamd.Client.OnError.
func (m *Metrics) ClamdError(error) { m.clamdErrors.Inc() }

// NoticeUndeliverable counts one generated message reported undeliverable;
// it has the signature of lmtp.ServiceMailbox.OnUndeliverable and
// outbox.Sender.OnUndeliverable.
func (m *Metrics) NoticeUndeliverable(stage, k string) {
	m.undeliverable.WithLabelValues(stage, knownKind(kind.Kind(k))).Inc()
}

// DecisionKind is the kind label of a milter decision: the kind of the
// message that replaces the original when there is one (the transport
// envelope at the access point, the anomaly envelope at the incoming
// point); else the kind the point recognised (Decision.Kind); else
// "ordinaria".
func DecisionKind(d point.Decision) string {
	if d.Replace != nil && d.Replace.Kind != "" {
		return knownKind(d.Replace.Kind)
	}
	if d.Kind != "" {
		return knownKind(d.Kind)
	}
	return string(kind.Ordinaria)
}

// knownKind keeps the label's values to the known kinds.
func knownKind(k kind.Kind) string {
	for _, x := range kind.All {
		if x == k {
			return string(k)
		}
	}
	return string(kind.Ordinaria)
}

// scrapeCollector reads the store and the index when scraped.
type scrapeCollector struct{ m *Metrics }

var (
	descOutboxDepth = prometheus.NewDesc("pec_outbox_depth",
		"Outbox items not yet sent (receipts and notices waiting for the re-injection listener).", nil, nil)
	descIndexAge = prometheus.NewDesc("pec_index_age_seconds",
		"Seconds since the providers' index snapshot served was fetched from its source (last successful sync, or the time recorded in the cache loaded at start). Absent while no snapshot is loaded.", nil, nil)
	descIndexProviders = prometheus.NewDesc("pec_index_providers",
		"Providers in the providers' index snapshot served (0 while none is loaded).", nil, nil)
	descClamdUp = prometheus.NewDesc("pec_clamd_up",
		"1 when clamd answered PING at this scrape, else 0 (every message is tempfailed while it is down).", nil, nil)
	descClamdAge = prometheus.NewDesc("pec_clamd_signatures_age_seconds",
		"Seconds since clamd's signature database was built (from VERSION); absent when clamd does not tell (no official daily database).", nil, nil)
)

func (c scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	if c.m.opts.Store != nil {
		ch <- descOutboxDepth
	}
	if c.m.opts.Index != nil {
		ch <- descIndexAge
		ch <- descIndexProviders
	}
	ch <- descClamdUp
	ch <- descClamdAge
}

func (c scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	o := c.m.opts
	if cv := c.m.clamdView(); cv != nil {
		up, age, ok := c.m.clamdState(cv)
		ch <- prometheus.MustNewConstMetric(descClamdUp, prometheus.GaugeValue, map[bool]float64{true: 1}[up == nil])
		if ok {
			ch <- prometheus.MustNewConstMetric(descClamdAge, prometheus.GaugeValue, age.Seconds())
		}
	}
	if o.Store != nil {
		if n, err := o.Store.OutboxDepth(); err != nil {
			ch <- prometheus.NewInvalidMetric(descOutboxDepth, err)
		} else {
			ch <- prometheus.MustNewConstMetric(descOutboxDepth, prometheus.GaugeValue, float64(n))
		}
	}
	if o.Index != nil {
		ix, err := o.Index.Snapshot()
		if err != nil || ix == nil {
			ch <- prometheus.MustNewConstMetric(descIndexProviders, prometheus.GaugeValue, 0)
			return
		}
		ch <- prometheus.MustNewConstMetric(descIndexProviders, prometheus.GaugeValue, float64(ix.Len()))
		if at := o.Index.SyncedAt(); !at.IsZero() {
			ch <- prometheus.MustNewConstMetric(descIndexAge, prometheus.GaugeValue, max(0, c.m.now().Sub(at).Seconds()))
		}
	}
}

// clamdState pings clamd and reads its signature age from VERSION.
func (m *Metrics) clamdState(cv ClamdView) (up error, age time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cv.Ping(ctx); err != nil {
		return err, 0, false
	}
	v, err := cv.Version(ctx)
	if err != nil {
		return nil, 0, false
	}
	at, ok := clamd.SignatureDate(v)
	if !ok {
		return nil, 0, false
	}
	return nil, max(0, m.now().Sub(at)), true
}

// Health returns nil when the process can take mail: the store answers
// and is writable, a providers' index snapshot is loaded and, for
// pecmilter, clamd answers PING. Otherwise the error says why (every
// failed check).
func (m *Metrics) Health() error {
	var errs []error
	if cv := m.clamdView(); cv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cv.Ping(ctx)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("clamd not available (every message is tempfailed): %w", err))
		}
	}
	if st := m.opts.Store; st != nil {
		if _, err := st.OutboxDepth(); err != nil {
			errs = append(errs, fmt.Errorf("store not available: %w", err))
		} else if m.opts.StorePath != "" {
			if err := writable(m.opts.StorePath); err != nil {
				errs = append(errs, fmt.Errorf("store not writable: %w", err))
			}
		}
	}
	if ix := m.opts.Index; ix != nil {
		if s, err := ix.Snapshot(); err != nil || s == nil {
			if err == nil {
				err = errors.New("no snapshot")
			}
			errs = append(errs, fmt.Errorf("providers' index not loaded: %w", err))
		}
	}
	gerrs, _ := m.guardHealth() // clock, service state (guard.go)
	return errors.Join(append(errs, gerrs...)...)
}

const wOK = 2 // W_OK of access(2)

// writable checks with access(2) that the SQLite file, its directory (for
// the journal files) and its -wal and -shm files, when present, can be
// written by this process (a read-only mount fails it even for root).
func writable(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for _, p := range []string{filepath.Dir(abs), abs, abs + "-wal", abs + "-shm"} {
		err := syscall.Access(p, wOK)
		if err == nil {
			continue
		}
		if errors.Is(err, fs.ErrNotExist) && (strings.HasSuffix(p, "-wal") || strings.HasSuffix(p, "-shm")) {
			continue
		}
		return &fs.PathError{Op: "access", Path: p, Err: err}
	}
	return nil
}

// Handler serves /metrics and /healthz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      promLogger{m.log()},
		ErrorHandling: promhttp.ContinueOnError, // a failed gauge must not hide the counters
		Registry:      m.reg,                    // promhttp_metric_handler_errors_total
	}))
	mux.HandleFunc("GET /healthz", m.healthz)
	return mux
}

func (m *Metrics) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, note := m.guardHealth() // "service: active|suspended ..." (guard.go)
	if err := m.Health(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "unhealthy\n%s\n%s", err, note)
		return
	}
	fmt.Fprint(w, "ok\n"+note)
}

type promLogger struct{ l *slog.Logger }

func (p promLogger) Println(v ...any) {
	p.l.Warn("metrics: " + strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// Serve serves Handler on ln until ctx is done (then it returns nil) or
// the listener fails.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}
