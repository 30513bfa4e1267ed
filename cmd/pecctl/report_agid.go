package main

import (
	"encoding/csv"
	"fmt"
	"github.com/pecgo/pec/point"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pecgo/pec/store"
)

// periodDays returns the first and last day of a four-month period as
// AgID counts them: YYYY-T1 January to April, T2 May to August, T3
// September to December.
func periodDays(p string) (from, to string, err error) {
	m := regexp.MustCompile(`^(\d{4})-T([123])$`).FindStringSubmatch(p)
	if m == nil {
		return "", "", fmt.Errorf("--period %q: want YYYY-T1, YYYY-T2 or YYYY-T3 (January-April, May-August, September-December)", p)
	}
	y, _ := strconv.Atoi(m[1])
	n, _ := strconv.Atoi(m[2])
	first := time.Date(y, time.Month(4*(n-1)+1), 1, 12, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 4, -1)
	return first.Format("2006-01-02"), last.Format("2006-01-02"), nil
}

// refusalCause is the reason of a non-acceptance without its details:
// "virus" for every virus, the Italian reason up to its first "(" or ":"
// otherwise.
func refusalCause(errText string) string {
	if strings.HasPrefix(errText, "virus") {
		return "virus"
	}
	c := errText
	if i := strings.IndexAny(c, "(:"); i > 0 {
		c = c[:i]
	}
	c = strings.TrimSpace(c)
	if c == "" {
		return "(no reason recorded)"
	}
	return c
}

// ---- mailboxes ----

const (
	mailboxesFromRegistry = "registry"
	mailboxesFromSenders  = "distinct senders at the access point"
)

type mailboxCounts struct {
	Source    string `json:"source"`
	Active    int    `json:"active"`
	Suspended int    `json:"suspended"`
	Closed    int    `json:"closed"`
}

// countMailboxes counts the registry's mailboxes by their state at the
// instant at (the period's end): the registry's log rows (point mailbox,
// one per change, the address as recipient) replayed up to at; a
// mailbox whose rows were purged keeps its state now, when it was created
// by then. Closed counts disabled mailboxes too. A store whose registry
// is empty (mailboxes kept outside it) gives the distinct senders at the
// access point in the period instead, and says so.
func countMailboxes(st store.Store, senders map[string]bool, domains []string, at time.Time) (mailboxCounts, error) {
	list, err := st.ListMailboxes()
	if err != nil {
		return mailboxCounts{}, err
	}
	if len(list) > 0 {
		ev, err := st.Events(store.Query{Point: store.AtMailbox, To: at})
		if err != nil {
			return mailboxCounts{}, err
		}
		state := map[string]store.MailboxState{}
		for _, e := range ev {
			if len(e.Recipients) != 1 {
				continue
			}
			a := strings.ToLower(e.Recipients[0])
			switch e.Type {
			case store.TypeMailboxAdd, store.TypeMailboxReopen:
				state[a] = store.MailboxActive
			case store.TypeMailboxSuspend:
				state[a] = store.MailboxSuspended
			case store.TypeMailboxClose:
				state[a] = store.MailboxClosed
			case store.TypeMailboxDisable:
				state[a] = store.MailboxDisabled
			}
		}
		for _, m := range list {
			if _, ok := state[m.Address]; !ok && !m.Created.After(at) {
				state[m.Address] = m.State
			}
		}
		c := mailboxCounts{Source: mailboxesFromRegistry}
		for _, s := range state {
			switch s {
			case store.MailboxActive:
				c.Active++
			case store.MailboxSuspended:
				c.Suspended++
			default:
				c.Closed++
			}
		}
		return c, nil
	}
	n := 0
	for a := range senders {
		if point.InDomains(a, domains) {
			n++
		}
	}
	return mailboxCounts{Source: mailboxesFromSenders, Active: n}, nil
}

// ---- acceptance-receipt latency ----

// latencyGrace is how long after the period the log is read for the
// receipts of its last acceptances.
const latencyGrace = 48 * time.Hour

type latency struct {
	Measured        int     `json:"measured"` // acceptances whose receipt was sent
	Unsent          int     `json:"unsent"`   // acceptances without a sent receipt
	P50Seconds      float64 `json:"p50_seconds"`
	P99Seconds      float64 `json:"p99_seconds"`
	Under30MinShare float64 `json:"under_30min_share"`
}

type latencyCounter struct {
	accepted map[string]time.Time // receipt Message-ID -> arrival
	sent     map[string]time.Time // receipt Message-ID -> handed to the MTA
}

func newLatencyCounter() *latencyCounter {
	return &latencyCounter{accepted: map[string]time.Time{}, sent: map[string]time.Time{}}
}

// add takes one log row; acceptances count only before end.
func (l *latencyCounter) add(e store.Event, end time.Time) {
	// the access point names the receipt by its id, the outbox by its
	// Message-ID field (in angle brackets)
	switch {
	case e.Point == store.AtAccess && e.Type == store.TypeAccettazione && e.Time.Before(end) && len(e.Related) > 0:
		l.accepted[bareID(e.Related[0])] = e.Time
	case e.Point == store.AtOutbox && e.Type == store.TypeSent && len(e.Related) > 0:
		if _, ok := l.sent[bareID(e.Related[0])]; !ok {
			l.sent[bareID(e.Related[0])] = e.Time
		}
	}
}

// bareID is a message id without its angle brackets.
func bareID(id string) string { return strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">") }

func (l *latencyCounter) result() latency {
	var d []float64
	var r latency
	for id, at := range l.accepted {
		s, ok := l.sent[id]
		if !ok {
			r.Unsent++
			continue
		}
		d = append(d, max(0, s.Sub(at).Seconds()))
	}
	r.Measured = len(d)
	if len(d) == 0 {
		return r
	}
	sort.Float64s(d)
	rank := func(p float64) float64 { // nearest rank
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return d[max(0, min(i, len(d)-1))]
	}
	r.P50Seconds, r.P99Seconds = rank(0.50), rank(0.99)
	under := 0
	for _, x := range d {
		if x < 30*60 {
			under++
		}
	}
	r.Under30MinShare = float64(under) / float64(len(d))
	return r
}

// ---- availability ----

type availability struct {
	Samples     int     `json:"samples"` // health samples in the period (0: not measured)
	Minutes     int     `json:"minutes"` // minutes measured: from the first sample to the end
	DownMinutes int     `json:"down_minutes"`
	Share       float64 `json:"share"` // of the minutes measured with a healthy sample
	Target      float64 `json:"target"`
	MeetsTarget bool    `json:"meets_target"`
}

type incident struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Minutes int       `json:"minutes"`
	What    string    `json:"what"`
}

const availabilityTarget = 0.998

// recordingLookback is how far before a period measureAvailability looks
// for samples to tell "the daemons were down when the period began" from
// "health samples were not recorded yet".
const recordingLookback = 24 * time.Hour

// measureAvailability splits [from, min(to, now)) into minutes: a minute
// is up when a daemon recorded a healthy sample in it. Minutes before the
// first sample of the period are not measured when no sample was recorded
// in the day before the period either (recording had not begun). Incidents
// are the runs of minutes that are not up.
func measureAvailability(st store.Store, from, to, now time.Time) (availability, []incident, error) {
	a := availability{Target: availabilityTarget}
	h, ok := st.(store.Health)
	if !ok {
		return a, []incident{}, nil
	}
	if now.Before(to) {
		to = now
	}
	samples, err := h.HealthSamples(from, to)
	if err != nil || len(samples) == 0 {
		return a, []incident{}, err
	}
	a.Samples = len(samples)
	start := samples[0].At.Truncate(time.Minute)
	// recording had begun before the period: its first minutes count too
	if before, err := h.HealthSamples(from.Add(-recordingLookback), from); err != nil {
		return a, nil, err
	} else if len(before) > 0 {
		start = from
	}
	n := int(to.Sub(start) / time.Minute)
	if to.Sub(start)%time.Minute != 0 {
		n++
	}
	up := make([]bool, n)
	fails := make([]string, n)
	for _, s := range samples {
		i := int(s.At.Sub(start) / time.Minute)
		if i < 0 || i >= n {
			continue
		}
		if s.OK {
			up[i] = true
		} else if fails[i] == "" {
			fails[i] = s.Node + ": " + s.Detail
		}
	}
	incidents := []incident{}
	for i := 0; i < n; {
		if up[i] {
			i++
			continue
		}
		j, what := i, ""
		for j < n && !up[j] {
			if what == "" {
				what = fails[j]
			}
			j++
		}
		if what == "" {
			what = "no health sample from any node (daemons or store down)"
		}
		in := incident{Start: start.Add(time.Duration(i) * time.Minute), End: start.Add(time.Duration(j) * time.Minute), Minutes: j - i, What: what}
		incidents = append(incidents, in)
		a.DownMinutes += j - i
		i = j
	}
	a.Minutes = n
	if n > 0 {
		a.Share = float64(n-a.DownMinutes) / float64(n)
	}
	a.MeetsTarget = a.Share >= availabilityTarget
	return a, incidents, nil
}

// ---- CSV ----

// writeReportCSV writes indicator,value lines (a header first).
func writeReportCSV(w io.Writer, r *report) error {
	cw := csv.NewWriter(w)
	rec := func(k string, v any) { cw.Write([]string{k, fmt.Sprint(v)}) }
	rec("indicator", "value")
	if r.Period != "" {
		rec("period", r.Period)
	}
	rec("from", r.From)
	rec("to", r.To)
	rec("time_zone", r.TimeZone)
	rec("managed_domains", len(r.ManagedDomains))
	rec("managed_domains.list", strings.Join(r.ManagedDomains, " "))
	rec("mailboxes.source", r.Mailboxes.Source)
	rec("mailboxes.active", r.Mailboxes.Active)
	rec("mailboxes.suspended", r.Mailboxes.Suspended)
	rec("mailboxes.closed", r.Mailboxes.Closed)
	rec("accepted", r.Accepted)
	rec("refused", r.Refused)
	rec("refused_virus", r.RefusedVirus)
	for _, c := range sortedKeys(r.RefusedByCause) {
		rec("refused_by_cause."+c, r.RefusedByCause[c])
	}
	rec("delivered", r.Delivered)
	rec("not_delivered", r.NotDelivered)
	rec("transport_envelopes", r.TransportEnvelopes)
	rec("received_from_providers", r.ReceivedFromProviders)
	rec("anomalies", r.Anomalies)
	rec("ordinary_refused", r.OrdinaryRefused)
	for _, k := range sortedKeys(r.ReceiptsIssued) {
		rec("receipts_issued."+k, r.ReceiptsIssued[k])
	}
	rec("viruses.detected", r.Viruses.Detected)
	rec("viruses.access", r.Viruses.Access)
	rec("viruses.incoming_messages", r.Viruses.IncomingMessages)
	rec("viruses.incoming_notices", r.Viruses.IncomingNotices)
	rec("viruses.quarantined", r.Viruses.Quarantined)
	rec("timeout_notices", r.TimeoutNotices)
	rec("outbox_sent", r.OutboxSent)
	rec("events", r.Events)
	l := r.AcceptanceLatency
	rec("acceptance_latency.measured", l.Measured)
	rec("acceptance_latency.unsent", l.Unsent)
	rec("acceptance_latency.p50_seconds", strconv.FormatFloat(l.P50Seconds, 'f', 3, 64))
	rec("acceptance_latency.p99_seconds", strconv.FormatFloat(l.P99Seconds, 'f', 3, 64))
	rec("acceptance_latency.under_30min_share", strconv.FormatFloat(l.Under30MinShare, 'f', 6, 64))
	a := r.Availability
	rec("availability.samples", a.Samples)
	rec("availability.minutes", a.Minutes)
	rec("availability.down_minutes", a.DownMinutes)
	rec("availability.share", strconv.FormatFloat(a.Share, 'f', 6, 64))
	rec("availability.target", a.Target)
	rec("availability.meets_target", a.MeetsTarget)
	rec("incidents", len(r.Incidents))
	for i, in := range r.Incidents {
		rec(fmt.Sprintf("incident.%d", i+1), fmt.Sprintf("%s/%s %d min: %s", in.Start.Format(time.RFC3339), in.End.Format(time.RFC3339), in.Minutes, in.What))
	}
	cw.Flush()
	return cw.Error()
}
