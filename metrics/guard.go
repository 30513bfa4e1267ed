package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// The guards' series (internal/guard), registered by SetGuard:
//
//	pec_clock_synchronized       gauge: 1 when the kernel clock is synchronised (adjtimex: STA_UNSYNC clear, not TIME_ERROR)
//	pec_clock_max_error_seconds  gauge: the kernel's maximum error of the clock (adjtimex maxerror)
//	pec_service_suspended        gauge: 1 while the provider's service is suspended (pecctl service suspend)

// GuardView is the provider-wide guards as the metrics read them;
// *guard.Guard implements it.
type GuardView interface {
	// ClockState is the kernel's clock state last read.
	ClockState() (point.ClockState, error)
	// ClockProblem says why the points refuse to sign, "" when they sign.
	ClockProblem() string
	// ServiceState is the service state (suspended or active).
	ServiceState() (store.ServiceState, error)
}

var (
	descClockSynced = prometheus.NewDesc("pec_clock_synchronized",
		"1 when the kernel reports the clock synchronised to UTC (adjtimex: STA_UNSYNC clear, state not TIME_ERROR), else 0. Absent when the state cannot be read.", nil, nil)
	descClockMaxError = prometheus.NewDesc("pec_clock_max_error_seconds",
		"The kernel's maximum error of the clock (adjtimex maxerror). Above [signing] clock_max_error (default 1 s) the points refuse to sign.", nil, nil)
	descSuspended = prometheus.NewDesc("pec_service_suspended",
		"1 while the provider's service is suspended (pecctl service suspend): the access point issues only non-acceptances, the incoming point tempfails every message.", nil, nil)
)

type guardCollector struct{ g GuardView }

func (c guardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descClockSynced
	ch <- descClockMaxError
	ch <- descSuspended
}

func (c guardCollector) Collect(ch chan<- prometheus.Metric) {
	if st, err := c.g.ClockState(); err != nil {
		ch <- prometheus.NewInvalidMetric(descClockSynced, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descClockSynced, prometheus.GaugeValue, map[bool]float64{true: 1}[st.Synchronized])
		ch <- prometheus.MustNewConstMetric(descClockMaxError, prometheus.GaugeValue, st.MaxError.Seconds())
	}
	if st, err := c.g.ServiceState(); err != nil {
		ch <- prometheus.NewInvalidMetric(descSuspended, err)
	} else {
		ch <- prometheus.MustNewConstMetric(descSuspended, prometheus.GaugeValue, map[bool]float64{true: 1}[st.Suspended])
	}
}

// SetGuard exports g's series and makes /healthz read it: a clock out of
// bound fails the check (the process signs nothing); a suspension does
// not (see guardHealth).
func (m *Metrics) SetGuard(g GuardView) {
	m.guardMu.Lock()
	m.guard = g
	m.guardMu.Unlock()
	m.reg.MustRegister(guardCollector{g})
}

func (m *Metrics) guardView() GuardView {
	m.guardMu.Lock()
	defer m.guardMu.Unlock()
	return m.guard
}

// guardHealth is the guards' part of /healthz: the failures and a note
// line on the service state.
//
// A suspension keeps /healthz at 200, with "service: suspended ..." in
// the body: it is provider-wide, and a 503 on every node would make load
// balancers and supervisors take all of them out, so no one would issue
// the formal non-acceptances the suspension requires (Aruba §9.7.7). The
// metric pec_service_suspended is the one to alert on.
func (m *Metrics) guardHealth() (errs []error, note string) {
	g := m.guardView()
	if g == nil {
		return nil, ""
	}
	if p := g.ClockProblem(); p != "" {
		errs = append(errs, fmt.Errorf("clock out of bound, the points refuse to sign: %s", p))
	}
	st, err := g.ServiceState()
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("service state not readable (every message is tempfailed): %w", err))
	case st.Suspended:
		note = fmt.Sprintf("service: suspended since %s by %s: %s\n", st.Since.Format(time.RFC3339), st.By, st.Reason)
	default:
		note = "service: active\n"
	}
	return errs, note
}
