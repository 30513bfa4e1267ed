package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/store"
)

const reportUsage = `usage: pecctl report (--period YYYY-TN | --from YYYY-MM-DD --to YYYY-MM-DD) [--json | --csv] [-config FILE]

Quality indicators for the regulator (AgID), counted from the event log over
the whole days --from to --to inclusive, or over a four-month period
(--period 2026-T1 is January to April, T2 May to August, T3 September to
December), in the provider's time zone. Text by default, --json or --csv
(indicator,value lines) for tools.

  managed_domains            [provider] managed_domains
  mailboxes                  active, suspended, closed (disabled included) at
                             the period's end, from the mailbox registry and
                             its log rows; while the registry is empty, the
                             distinct senders seen at the access point in the
                             period (source says which)
  refused_by_cause           non-acceptances by reason (the log's error
                             text without its details; "virus" for viruses)
  delivered, not_delivered   delivery point outcomes, one per recipient:
                             avvenuta-consegna, and errore-consegna plus
                             errore-consegna-virus of the incoming point
  acceptance_latency         from the transaction's arrival (the time of
                             its accettazione row) to the acceptance receipt
                             handed to the MTA (the outbox "sent" row of the
                             receipt named in the accettazione row): p50,
                             p99 and the share under 30 minutes; receipts
                             not sent within 48 hours of the period's end
                             are counted as unsent
  availability               from the health samples the daemons record in
                             the store (see README): the share of minutes of
                             the period with a healthy sample, against the
                             99.8 % target (minutes before the first sample
                             are left out unless samples were recorded in
                             the day before the period); incidents are the
                             runs of minutes without one

  accepted                   access point acceptances (accettazione)
  refused                    access point non-acceptances (non-accettazione);
    refused_virus            of which for a virus
  transport_envelopes        transport envelopes sent (posta-certificata)
  received_from_providers    envelopes taken in charge from other providers
                             (incoming point presa-in-carico, one per transaction)
  anomalies                  anomaly envelopes made at the incoming point (anomalia)
  ordinary_refused           ordinary mail refused (rifiuto-posta-ordinaria)
  receipts_issued            receipts by type: avvenuta-consegna and
                             errore-consegna (delivery point), errore-consegna-virus
                             (incoming point)
  viruses                    detected: access (refused at the access point),
                             incoming_messages (envelopes with a virus, by PEC id),
                             incoming_notices (rilevazione-virus notices, one per
                             recipient), quarantined (virus store items), and
                             detected = access + incoming_messages
  timeout_notices            preavviso-errore-consegna notices (any point)
  outbox_sent                generated messages handed to the MTA (outbox sent)
  events                     log rows in the period

Default -config: ` + config.DefaultPath + `
`

type virusCounts struct {
	Detected         int `json:"detected"`
	Access           int `json:"access"`
	IncomingMessages int `json:"incoming_messages"`
	IncomingNotices  int `json:"incoming_notices"`
	Quarantined      int `json:"quarantined"`
}

type report struct {
	Period                string         `json:"period,omitempty"`
	From                  string         `json:"from"`
	To                    string         `json:"to"`
	TimeZone              string         `json:"time_zone"`
	ManagedDomains        []string       `json:"managed_domains"`
	Mailboxes             mailboxCounts  `json:"mailboxes"`
	RefusedByCause        map[string]int `json:"refused_by_cause"`
	Delivered             int            `json:"delivered"`
	NotDelivered          int            `json:"not_delivered"`
	AcceptanceLatency     latency        `json:"acceptance_latency"`
	Availability          availability   `json:"availability"`
	Incidents             []incident     `json:"incidents"`
	Accepted              int            `json:"accepted"`
	Refused               int            `json:"refused"`
	RefusedVirus          int            `json:"refused_virus"`
	TransportEnvelopes    int            `json:"transport_envelopes"`
	ReceivedFromProviders int            `json:"received_from_providers"`
	Anomalies             int            `json:"anomalies"`
	OrdinaryRefused       int            `json:"ordinary_refused"`
	ReceiptsIssued        map[string]int `json:"receipts_issued"`
	Viruses               virusCounts    `json:"viruses"`
	TimeoutNotices        int            `json:"timeout_notices"`
	OutboxSent            int            `json:"outbox_sent"`
	Events                int            `json:"events"`
}

// countEvent adds one log row to the indicators; virusIDs collects the PEC
// ids of envelopes found infected at the incoming point.
func (r *report) countEvent(e store.Event, virusIDs map[string]bool) {
	r.Events++
	switch {
	case e.Point == store.AtAccess && e.Type == store.TypeAccettazione:
		r.Accepted++
	case e.Point == store.AtAccess && e.Type == store.TypeNonAccettazione:
		r.Refused++
		if strings.HasPrefix(e.Error, "virus") {
			r.RefusedVirus++
		}
		r.RefusedByCause[refusalCause(e.Error)]++
	case e.Point == store.AtAccess && e.Type == store.TypePostaCertificata:
		r.TransportEnvelopes++
	case e.Point == store.AtIncoming && e.Type == store.TypePresaInCarico:
		r.ReceivedFromProviders++
	case e.Point == store.AtIncoming && e.Type == store.TypeAnomalia:
		r.Anomalies++
	case e.Point == store.AtIncoming && e.Type == store.TypeRifiutoPostaOrdinaria:
		r.OrdinaryRefused++
	case e.Point == store.AtDelivery && (e.Type == store.TypeAvvenutaConsegna || e.Type == store.TypeErroreConsegna),
		e.Point == store.AtIncoming && e.Type == store.TypeErroreConsegnaVirus:
		r.ReceiptsIssued[string(e.Type)]++
		if e.Type == store.TypeAvvenutaConsegna {
			r.Delivered += max(1, len(e.Recipients))
		} else {
			r.NotDelivered += max(1, len(e.Recipients))
		}
	case e.Point == store.AtIncoming && e.Type == store.TypeRilevazioneVirus:
		r.Viruses.IncomingNotices++
		key := e.PECID
		if key == "" {
			key = fmt.Sprintf("row %d", e.ID)
		}
		virusIDs[key] = true
	case e.Point == store.AtOutbox && e.Type == store.TypeSent:
		r.OutboxSent++
	}
	if e.Type == store.TypePreavviso {
		r.TimeoutNotices++
	}
}

func cmdReport(args []string, stdout, stderr io.Writer) int {
	const cmd = "report"
	fs, cfgPath := newFlags(cmd, reportUsage, stderr)
	fromS := fs.String("from", "", "")
	toS := fs.String("to", "", "")
	period := fs.String("period", "", "")
	asJSON := fs.Bool("json", false, "")
	asCSV := fs.Bool("csv", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, reportUsage, "unexpected argument %q", pos[0])
	}
	if *asJSON && *asCSV {
		return usageErr(stderr, cmd, reportUsage, "--json and --csv exclude each other")
	}
	if *period != "" {
		if *fromS != "" || *toS != "" {
			return usageErr(stderr, cmd, reportUsage, "--period excludes --from and --to")
		}
		if *fromS, *toS, err = periodDays(*period); err != nil {
			return usageErr(stderr, cmd, reportUsage, "%v", err)
		}
	}
	if *fromS == "" || *toS == "" {
		return usageErr(stderr, cmd, reportUsage, "--period, or --from and --to, are required")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	loc := cfg.Location()
	from, to, err := parseDayRange(*fromS, *toS, loc)
	if err != nil {
		return usageErr(stderr, cmd, reportUsage, "%v", err)
	}
	st, err := openStore(cfg)
	if err != nil {
		return fail(stderr, cmd, err)
	}
	defer st.Close()
	r := report{Period: *period, From: *fromS, To: *toS, TimeZone: loc.String(),
		ManagedDomains: append([]string{}, cfg.Provider.ManagedDomains...), RefusedByCause: map[string]int{},
		ReceiptsIssued: map[string]int{"avvenuta-consegna": 0, "errore-consegna": 0, "errore-consegna-virus": 0},
		Incidents:      []incident{}}
	virusIDs := map[string]bool{}
	lat := newLatencyCounter()
	senders := map[string]bool{}
	// the receipts of the period's last acceptances may be sent after it
	err = st.EachLinkedEvent(from, to.Add(latencyGrace), func(le store.LinkedEvent) error {
		lat.add(le.Event, to)
		if le.Time.Before(to) {
			r.countEvent(le.Event, virusIDs)
			if le.Point == store.AtAccess && le.Sender != "" {
				senders[strings.ToLower(le.Sender)] = true
			}
		}
		return nil
	})
	if err != nil {
		return fail(stderr, cmd, err)
	}
	r.AcceptanceLatency = lat.result()
	r.Viruses.Access = r.RefusedVirus
	r.Viruses.IncomingMessages = len(virusIDs)
	r.Viruses.Detected = r.Viruses.Access + r.Viruses.IncomingMessages
	if r.Viruses.Quarantined, err = st.CountVirus(from, to); err != nil {
		return fail(stderr, cmd, err)
	}
	if r.Mailboxes, err = countMailboxes(st, senders, cfg.Provider.ManagedDomains, to); err != nil {
		return fail(stderr, cmd, err)
	}
	if r.Availability, r.Incidents, err = measureAvailability(st, from, to, time.Now()); err != nil {
		return fail(stderr, cmd, err)
	}
	if anchor, _, err := st.LogAnchor(); err == nil && anchor > 0 {
		if first, err := st.Events(store.Query{Limit: 1}); err == nil && (len(first) == 0 || first[0].Time.After(from)) {
			fmt.Fprintf(stderr, "pecctl report: warning: rows before %s were purged; the period may be incomplete\n",
				firstTime(first, loc))
		}
	}
	switch {
	case *asJSON:
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fail(stderr, cmd, err)
		}
	case *asCSV:
		if err := writeReportCSV(stdout, &r); err != nil {
			return fail(stderr, cmd, err)
		}
	default:
		writeReportText(stdout, &r, from, to)
	}
	return 0
}

func writeReportText(stdout io.Writer, r *report, from, to time.Time) {
	title := r.From + " .. " + r.To
	if r.Period != "" {
		title = r.Period + " (" + title + ")"
	}
	fmt.Fprintf(stdout, "PEC quality indicators %s (%s, %s .. %s)\n", title, r.TimeZone,
		from.Format(time.RFC3339), to.Format(time.RFC3339))
	line := func(label string, n int) { fmt.Fprintf(stdout, "  %-52s %8d\n", label, n) }
	text := func(label, v string) { fmt.Fprintf(stdout, "  %-52s %8s\n", label, v) }
	line("managed domains", len(r.ManagedDomains))
	fmt.Fprintf(stdout, "    %s\n", strings.Join(r.ManagedDomains, ", "))
	if r.Mailboxes.Source == mailboxesFromSenders {
		line("mailboxes (distinct senders at the access point)", r.Mailboxes.Active)
		fmt.Fprintln(stdout, "    the mailbox registry is empty: active mailboxes are counted as the distinct")
		fmt.Fprintln(stdout, "    senders of the period; suspended and closed ones cannot be counted")
	} else {
		line("mailboxes active", r.Mailboxes.Active)
		line("mailboxes suspended", r.Mailboxes.Suspended)
		line("mailboxes closed", r.Mailboxes.Closed)
	}
	line("messages accepted (accettazione)", r.Accepted)
	line("messages refused (non-accettazione)", r.Refused)
	line("  of which for a virus", r.RefusedVirus)
	for _, c := range sortedKeys(r.RefusedByCause) {
		line("  cause: "+c, r.RefusedByCause[c])
	}
	line("delivered (avvenuta-consegna, per recipient)", r.Delivered)
	line("not delivered (errore-consegna, per recipient)", r.NotDelivered)
	line("transport envelopes sent", r.TransportEnvelopes)
	line("envelopes received from other providers", r.ReceivedFromProviders)
	line("anomaly envelopes (anomalia)", r.Anomalies)
	line("ordinary mail refused", r.OrdinaryRefused)
	line("receipts: avvenuta-consegna", r.ReceiptsIssued["avvenuta-consegna"])
	line("receipts: errore-consegna", r.ReceiptsIssued["errore-consegna"])
	line("receipts: errore-consegna-virus", r.ReceiptsIssued["errore-consegna-virus"])
	line("viruses detected", r.Viruses.Detected)
	line("  at the access point", r.Viruses.Access)
	line("  in envelopes from other providers (messages)", r.Viruses.IncomingMessages)
	line("  rilevazione-virus notices sent", r.Viruses.IncomingNotices)
	line("  items kept in the virus store", r.Viruses.Quarantined)
	line("timeout notices (preavviso-errore-consegna)", r.TimeoutNotices)
	line("generated messages sent (outbox)", r.OutboxSent)
	line("log events in the period", r.Events)
	l := r.AcceptanceLatency
	line("acceptance receipts measured", l.Measured)
	line("  not sent (yet)", l.Unsent)
	text("  latency p50", seconds(l.P50Seconds))
	text("  latency p99", seconds(l.P99Seconds))
	text("  share under 30 minutes", percent(l.Under30MinShare, l.Measured > 0))
	a := r.Availability
	if a.Samples == 0 {
		text("availability", "n/a")
		fmt.Fprintln(stdout, "    no health samples recorded in the store for the period: availability is not measured")
	} else {
		text("availability (target 99.8 %)", percent(a.Share, true))
		line("  minutes measured", a.Minutes)
		line("  minutes without a healthy sample", a.DownMinutes)
	}
	line("incidents", len(r.Incidents))
	for _, in := range r.Incidents {
		fmt.Fprintf(stdout, "    %s .. %s (%d min): %s\n", in.Start.Format(time.RFC3339), in.End.Format(time.RFC3339), in.Minutes, in.What)
	}
}

func seconds(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" }

func percent(f float64, ok bool) string {
	if !ok {
		return "n/a"
	}
	return strconv.FormatFloat(100*f, 'f', 3, 64) + " %"
}

func sortedKeys(m map[string]int) []string {
	k := make([]string, 0, len(m))
	for c := range m {
		k = append(k, c)
	}
	sort.Strings(k)
	return k
}

func firstTime(first []store.Event, loc *time.Location) string {
	if len(first) == 0 {
		return "now"
	}
	return first[0].Time.In(loc).Format(time.RFC3339)
}
