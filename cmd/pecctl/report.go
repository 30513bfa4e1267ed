package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/store"
)

const reportUsage = `usage: pecctl report --from YYYY-MM-DD --to YYYY-MM-DD [--json] [-config FILE]

Quality indicators for the regulator, counted from the event log over the
whole days --from to --to inclusive, in the provider's time zone:

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
	From                  string         `json:"from"`
	To                    string         `json:"to"`
	TimeZone              string         `json:"time_zone"`
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
	asJSON := fs.Bool("json", false, "")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return exitParse(err)
	}
	if len(pos) > 0 {
		return usageErr(stderr, cmd, reportUsage, "unexpected argument %q", pos[0])
	}
	if *fromS == "" || *toS == "" {
		return usageErr(stderr, cmd, reportUsage, "--from and --to are required")
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
	r := report{From: *fromS, To: *toS, TimeZone: loc.String(),
		ReceiptsIssued: map[string]int{"avvenuta-consegna": 0, "errore-consegna": 0, "errore-consegna-virus": 0}}
	virusIDs := map[string]bool{}
	err = st.EachLinkedEvent(from, to, func(le store.LinkedEvent) error {
		r.countEvent(le.Event, virusIDs)
		return nil
	})
	if err != nil {
		return fail(stderr, cmd, err)
	}
	r.Viruses.Access = r.RefusedVirus
	r.Viruses.IncomingMessages = len(virusIDs)
	r.Viruses.Detected = r.Viruses.Access + r.Viruses.IncomingMessages
	if r.Viruses.Quarantined, err = st.CountVirus(from, to); err != nil {
		return fail(stderr, cmd, err)
	}
	if anchor, _, err := st.LogAnchor(); err == nil && anchor > 0 {
		if first, err := st.Events(store.Query{Limit: 1}); err == nil && (len(first) == 0 || first[0].Time.After(from)) {
			fmt.Fprintf(stderr, "pecctl report: warning: rows before %s were purged; the period may be incomplete\n",
				firstTime(first, loc))
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fail(stderr, cmd, err)
		}
		return 0
	}
	fmt.Fprintf(stdout, "PEC quality indicators %s .. %s (%s, %s .. %s)\n", r.From, r.To, r.TimeZone,
		from.Format(time.RFC3339), to.Format(time.RFC3339))
	line := func(label string, n int) { fmt.Fprintf(stdout, "  %-52s %8d\n", label, n) }
	line("messages accepted (accettazione)", r.Accepted)
	line("messages refused (non-accettazione)", r.Refused)
	line("  of which for a virus", r.RefusedVirus)
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
	return 0
}

func firstTime(first []store.Event, loc *time.Location) string {
	if len(first) == 0 {
		return "now"
	}
	return first[0].Time.In(loc).Format(time.RFC3339)
}
