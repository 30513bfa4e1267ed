package metrics

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/timer"
)

// Status series: what an operator watches beyond the traffic, read at
// scrape time (PROVIDER-REQUIREMENTS: monitoring 24/7 with alerts; keys,
// Aruba §8.1; one sealed log archive per day):
//
//	pec_signing_certificate_days_left            gauge: days until our PEC signing certificate expires
//	pec_index_certificate_days_left{provider}    gauge: days until the first of a provider's index certificates expires
//	pec_index_last_sync_timestamp_seconds        gauge: when the served index snapshot was fetched (last successful sync)
//	pec_outbox_oldest_age_seconds                gauge: age of the oldest unsent outbox item (0 when empty)
//	pec_timers_due                               gauge: 12 h / 24 h notices due and not yet sent (capped at 10000)
//	pec_log_archive_last_day_timestamp_seconds   gauge: start (UTC) of the last day archived by `pecctl log archive`
//	pec_log_verify_last_run_timestamp_seconds    gauge: when `pecctl log verify` last ran
//	pec_log_verify_ok                            gauge: 1 when that run found the chain intact, else 0
//
// The log results are the store documents StatusLogVerify and
// StatusLogArchive (store.Shared): pecctl writes them, so every node of a
// cluster exports the same values, whichever node ran the command.

// Store documents written by pecctl and read by the exporter.
const (
	StatusLogVerify  = "status/log-verify"
	StatusLogArchive = "status/log-archive"
)

// LogVerifyStatus is the StatusLogVerify document.
type LogVerifyStatus struct {
	At     time.Time `json:"at"`
	OK     bool      `json:"ok"`
	Detail string    `json:"detail"` // the first bad row and what is wrong, or the head
}

// LogArchiveStatus is the StatusLogArchive document.
type LogArchiveStatus struct {
	Day string    `json:"day"` // YYYY-MM-DD in the provider's time zone
	At  time.Time `json:"at"`
}

// RecordLogVerify stores the result of a log verification for the exporter.
func RecordLogVerify(sh store.Shared, s LogVerifyStatus) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := sh.PutShared(StatusLogVerify, b, s.At); err != nil {
		return fmt.Errorf("recording the log verify result for the metrics: %w", err)
	}
	return nil
}

// RecordLogArchive stores the last archived day for the exporter; an
// older day than the one recorded (a re-run of a past day) is ignored.
func RecordLogArchive(sh store.Shared, s LogArchiveStatus) error {
	if b, _, ok, err := sh.GetShared(StatusLogArchive); err == nil && ok {
		var old LogArchiveStatus
		if json.Unmarshal(b, &old) == nil && old.Day > s.Day {
			return nil
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := sh.PutShared(StatusLogArchive, b, s.At); err != nil {
		return fmt.Errorf("recording the archived day for the metrics: %w", err)
	}
	return nil
}

// StatusSource is the part of the store the status series read.
type StatusSource interface {
	store.Shared
	Pending(limit int) ([]store.PendingItem, error)
	timer.OpenTimers
}

// StatusOptions are the sources of the status series; nil fields leave
// their series out.
type StatusOptions struct {
	Store       StatusSource
	SigningCert *x509.Certificate
	Index       IndexView
	// TimerWarn and TimerFinal are the timer runner's delays (defaults
	// 12 h and 23 h, as timer.Runner).
	TimerWarn, TimerFinal time.Duration
	Now                   func() time.Time
}

// maxTimersCounted caps pec_timers_due: beyond it the alert fires anyway.
const maxTimersCounted = 10000

var (
	descSigningDays = prometheus.NewDesc("pec_signing_certificate_days_left",
		"Days until the provider's PEC signing certificate expires (negative: expired; renew it before, Aruba §8.1).", nil, nil)
	descIndexCertDays = prometheus.NewDesc("pec_index_certificate_days_left",
		"Days until the first certificate of a provider's index entry expires (its messages fail the signature check after).", []string{"provider"}, nil)
	descIndexLastSync = prometheus.NewDesc("pec_index_last_sync_timestamp_seconds",
		"Unix time the served providers' index snapshot was fetched from its source (last successful sync).", nil, nil)
	descOutboxOldest = prometheus.NewDesc("pec_outbox_oldest_age_seconds",
		"Seconds since the oldest unsent outbox item was queued (0 when the outbox is empty).", nil, nil)
	descTimersDue = prometheus.NewDesc("pec_timers_due",
		"12 h / 24 h delivery notices due and not sent yet (the runner runs each minute; a lasting value is a backlog).", nil, nil)
	descArchiveDay = prometheus.NewDesc("pec_log_archive_last_day_timestamp_seconds",
		"Unix time of the start (00:00 UTC) of the last day written by pecctl log archive.", nil, nil)
	descVerifyAt = prometheus.NewDesc("pec_log_verify_last_run_timestamp_seconds",
		"Unix time pecctl log verify last ran.", nil, nil)
	descVerifyOK = prometheus.NewDesc("pec_log_verify_ok",
		"1 when the last pecctl log verify found the event log's hash chain intact, 0 when it found damage.", nil, nil)
)

// StatusCollector exports the status series.
type StatusCollector struct{ o StatusOptions }

// NewStatusCollector returns the collector; register it on Registry().
func NewStatusCollector(o StatusOptions) *StatusCollector { return &StatusCollector{o: o} }

// AddStatus registers the status series on m's registry.
func (m *Metrics) AddStatus(o StatusOptions) {
	if o.Now == nil {
		o.Now = m.now
	}
	m.reg.MustRegister(NewStatusCollector(o))
}

func (c *StatusCollector) now() time.Time {
	if c.o.Now != nil {
		return c.o.Now()
	}
	return time.Now()
}

// Describe implements prometheus.Collector.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSigningDays, descIndexCertDays, descIndexLastSync, descOutboxOldest,
		descTimersDue, descArchiveDay, descVerifyAt, descVerifyOK} {
		ch <- d
	}
}

func daysLeft(now, notAfter time.Time) float64 {
	return math.Floor(notAfter.Sub(now).Hours()/24*100) / 100
}

// Collect implements prometheus.Collector.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if cert := c.o.SigningCert; cert != nil {
		gauge(descSigningDays, daysLeft(now, cert.NotAfter))
	}
	if c.o.Index != nil {
		if ix, err := c.o.Index.Snapshot(); err == nil && ix != nil {
			first := map[string]time.Time{}
			for _, p := range ix.Providers() {
				for _, cert := range p.Certificates {
					l := p.Label()
					if t, ok := first[l]; !ok || cert.NotAfter.Before(t) {
						first[l] = cert.NotAfter
					}
				}
			}
			for l, t := range first {
				gauge(descIndexCertDays, daysLeft(now, t), l)
			}
			if at := c.o.Index.SyncedAt(); !at.IsZero() {
				gauge(descIndexLastSync, float64(at.UnixNano())/1e9)
			}
		}
	}
	st := c.o.Store
	if st == nil {
		return
	}
	if p, err := st.Pending(1); err != nil {
		ch <- prometheus.NewInvalidMetric(descOutboxOldest, err)
	} else if len(p) == 0 {
		gauge(descOutboxOldest, 0)
	} else {
		gauge(descOutboxOldest, max(0, now.Sub(p[0].Created).Seconds()))
	}
	if due, err := timer.CountDue(st, now, c.o.TimerWarn, c.o.TimerFinal, maxTimersCounted); err != nil {
		ch <- prometheus.NewInvalidMetric(descTimersDue, err)
	} else {
		gauge(descTimersDue, float64(due))
	}
	if b, _, ok, err := st.GetShared(StatusLogArchive); err != nil {
		ch <- prometheus.NewInvalidMetric(descArchiveDay, err)
	} else if ok {
		var s LogArchiveStatus
		if json.Unmarshal(b, &s) == nil {
			if d, err := time.Parse("2006-01-02", s.Day); err == nil {
				gauge(descArchiveDay, float64(d.Unix()))
			}
		}
	}
	if b, _, ok, err := st.GetShared(StatusLogVerify); err != nil {
		ch <- prometheus.NewInvalidMetric(descVerifyOK, err)
	} else if ok {
		var s LogVerifyStatus
		if json.Unmarshal(b, &s) == nil {
			gauge(descVerifyAt, float64(s.At.UnixNano())/1e9)
			gauge(descVerifyOK, map[bool]float64{true: 1}[s.OK])
		}
	}
}
