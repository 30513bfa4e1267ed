package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/mailbox"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/sqlite"
	"github.com/pecgo/pec/store/storetest"
)

func TestReport(t *testing.T) {
	f := newFixture(t)
	// the 2nd in Rome: the fixture rows of that day, counted by hand
	code, out, errOut := f.run("report", "--from", "2024-03-02", "--to", "2024-03-02", "--json")
	if code != 0 {
		t.Fatalf("report: exit %d: %s", code, errOut)
	}
	var r report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	want := report{From: "2024-03-02", To: "2024-03-02", TimeZone: "Europe/Rome",
		ManagedDomains: []string{provDom},
		// mario (opec-102, opec-105) and giulia (opec-103, opec-106)
		Mailboxes:      mailboxCounts{Source: mailboxesFromSenders, Active: 2},
		RefusedByCause: map[string]int{"virus": 1, "il campo To deve contenere almeno un destinatario": 1},
		Delivered:      1, // opec-xyz to mario
		NotDelivered:   1, // opec-104 to ghost
		// opec-102 arrived at 23:30Z on the 1st, its receipt was sent at
		// 15:00Z on the 2nd; opec-106's was never sent
		AcceptanceLatency:     latency{Measured: 1, Unsent: 1, P50Seconds: 55800, P99Seconds: 55800},
		Availability:          availability{Target: 0.998},
		Incidents:             []incident{},
		Accepted:              2, // opec-102 (00:30 in Rome) and opec-106 (written late)
		Refused:               2, // virus opec-103, formal opec-105
		RefusedVirus:          1,
		TransportEnvelopes:    1, // opec-102
		ReceivedFromProviders: 1, // opec-xyz
		Anomalies:             1,
		ReceiptsIssued:        map[string]int{"avvenuta-consegna": 1, "errore-consegna": 1, "errore-consegna-virus": 0},
		Viruses:               virusCounts{Detected: 2, Access: 1, IncomingMessages: 1, IncomingNotices: 2, Quarantined: 2},
		TimeoutNotices:        1,
		OutboxSent:            1,
		Events:                13,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("report\n got %+v\nwant %+v", r, want)
	}
	if n := len(f.ids(func(e store.Event) bool { return romeDay(e.Time) == "2024-03-02" })); n != want.Events {
		t.Fatalf("fixture has %d rows on the 2nd, the test expects %d", n, want.Events)
	}

	// three days: the 1st adds one acceptance and one envelope, the 3rd one delivery
	code, out, _ = f.run("report", "--from", "2024-03-01", "--to", "2024-03-03")
	if code != 0 {
		t.Fatalf("text report: exit %d", code)
	}
	for _, l := range []string{"messages accepted (accettazione)", "receipts: avvenuta-consegna", "viruses detected"} {
		if !strings.Contains(out, l) {
			t.Errorf("text report lacks %q:\n%s", l, out)
		}
	}
	if !containsCount(out, "messages accepted (accettazione)", 3) || !containsCount(out, "receipts: avvenuta-consegna", 2) ||
		!containsCount(out, "transport envelopes sent", 2) {
		t.Errorf("text report counts:\n%s", out)
	}

	for _, args := range [][]string{
		{"report"},
		{"report", "--from", "2024-03-02"},
		{"report", "--from", "2024-03-03", "--to", "2024-03-02"},
		{"report", "--from", "2024-03-02", "--to", "March"},
		{"report", "--period", "2026-T4"},
		{"report", "--period", "2026-Q3"},
		{"report", "--period", "2026-T3", "--from", "2026-09-01"},
		{"report", "--period", "2026-T3", "--json", "--csv"},
	} {
		if code, _, _ := f.run(args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

func containsCount(out, label string, n int) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), label) {
			fields := strings.Fields(l)
			return fields[len(fields)-1] == strconv.Itoa(n)
		}
	}
	return false
}

func TestPeriodDays(t *testing.T) {
	for p, want := range map[string][2]string{
		"2026-T1": {"2026-01-01", "2026-04-30"},
		"2026-T2": {"2026-05-01", "2026-08-31"},
		"2026-T3": {"2026-09-01", "2026-12-31"},
		"2028-T1": {"2028-01-01", "2028-04-30"},
	} {
		if f, to, err := periodDays(p); err != nil || f != want[0] || to != want[1] {
			t.Errorf("%s: %s .. %s, %v; want %v", p, f, to, err, want)
		}
	}
	for _, bad := range []string{"2026-T0", "2026-T4", "2026-3", "26-T1", ""} {
		if _, _, err := periodDays(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestReportPeriod: the AgID four-month report on both backends, with
// acceptance-receipt latency from the log and availability from the
// daemons' health samples, as text, JSON and CSV.
func TestReportPeriod(t *testing.T) {
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		st := bf.open(t)
		// four acceptances in 2025-T3; their receipts are sent after 10
		// min, 40 min, 6 min (after the period's end) and never
		type acc struct {
			at    time.Time
			delay time.Duration
		}
		accs := []acc{
			{utc("2025-10-01T10:00:00Z"), 10 * time.Minute},
			{utc("2025-10-01T11:00:00Z"), 40 * time.Minute},
			{utc("2025-12-31T22:59:00Z"), 6 * time.Minute}, // 23:59 in Rome
			{utc("2025-11-15T08:00:00Z"), 0},
		}
		for i, a := range accs {
			txn := storetest.Acceptance(i, a.at)
			if i == 0 {
				// as the access point writes it: the receipt's id in the
				// row, its Message-ID field (in angle brackets) in the outbox
				txn.Events[0].Related[0] = bareID(txn.Events[0].Related[0])
			}
			if err := st.Commit(txn); err != nil {
				t.Fatal(err)
			}
		}
		due, err := st.DuePending(time.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range due {
			for i, a := range accs {
				if q.MessageID == fmt.Sprintf("<ack-opec-%04d@pec.example.test>", i) && a.delay > 0 {
					if err := st.MarkSent(q.ID, a.at.Add(a.delay)); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		// health: the last 10 minutes of the period, Rome time 23:50 to
		// midnight, a sample every 30 s, none from 23:53 to 23:55 and a
		// failed one only at 23:57
		h := st.(store.Health)
		end := utc("2025-12-31T23:00:00Z")
		for at := end.Add(-10 * time.Minute); at.Before(end); at = at.Add(30 * time.Second) {
			m := at.Sub(end.Add(-10*time.Minute)) / time.Minute
			s := store.HealthSample{Node: "mx1:/var/lib/pec/pecmilter", At: at, OK: true}
			switch {
			case m == 3 || m == 4:
				continue
			case m == 7:
				s.OK, s.Detail = false, "clamd not available"
			}
			if err := h.RecordHealth(s); err != nil {
				t.Fatal(err)
			}
		}

		code, out, errOut := bf.run("report", "--period", "2025-T3", "--json")
		if code != 0 {
			t.Fatalf("report --period: exit %d %s", code, errOut)
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Period != "2025-T3" || r.From != "2025-09-01" || r.To != "2025-12-31" || r.Accepted != 4 ||
			r.Mailboxes != (mailboxCounts{Source: mailboxesFromSenders, Active: 1}) {
			t.Errorf("report: %+v", r)
		}
		wantLat := latency{Measured: 3, Unsent: 1, P50Seconds: 600, P99Seconds: 2400, Under30MinShare: 2.0 / 3}
		if r.AcceptanceLatency != wantLat {
			t.Errorf("latency %+v, want %+v", r.AcceptanceLatency, wantLat)
		}
		wantAv := availability{Samples: 16, Minutes: 10, DownMinutes: 3, Share: 0.7, Target: 0.998}
		if a := r.Availability; a.Samples != wantAv.Samples || a.Minutes != wantAv.Minutes || a.DownMinutes != wantAv.DownMinutes ||
			math.Abs(a.Share-0.7) > 1e-9 || a.MeetsTarget {
			t.Errorf("availability %+v, want %+v", a, wantAv)
		}
		if len(r.Incidents) != 2 || r.Incidents[0].Minutes != 2 || !r.Incidents[0].Start.Equal(end.Add(-7*time.Minute)) ||
			!strings.Contains(r.Incidents[0].What, "no health sample") ||
			r.Incidents[1].Minutes != 1 || r.Incidents[1].What != "mx1:/var/lib/pec/pecmilter: clamd not available" {
			t.Errorf("incidents %+v", r.Incidents)
		}

		code, out, _ = bf.run("report", "--period", "2025-T3", "--csv")
		if code != 0 {
			t.Fatalf("report --csv: exit %d", code)
		}
		recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		kv := map[string]string{}
		for _, rec := range recs {
			kv[rec[0]] = rec[1]
		}
		for k, v := range map[string]string{"indicator": "value", "period": "2025-T3", "accepted": "4", "acceptance_latency.p50_seconds": "600.000",
			"acceptance_latency.under_30min_share": "0.666667", "availability.share": "0.700000", "incidents": "2", "mailboxes.active": "1"} {
			if kv[k] != v {
				t.Errorf("csv %s = %q, want %q", k, kv[k], v)
			}
		}
		code, out, _ = bf.run("report", "--period", "2025-T3")
		if code != 0 || !containsCount(out, "messages accepted (accettazione)", 4) || !strings.Contains(out, "70.000 %") ||
			!strings.Contains(out, "distinct senders") || !strings.Contains(out, "clamd not available") {
			t.Errorf("text report: exit %d\n%s", code, out)
		}
	})
}

// Minutes at the start of a period count as unavailable when the daemons
// were recording before it, and are not measured when recording began
// inside it.
func TestMeasureAvailabilityStart(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	from := utc("2025-09-01T00:00:00Z")
	to := from.Add(10 * time.Minute)
	for m := 5; m < 10; m++ {
		st.RecordHealth(store.HealthSample{Node: "n", At: from.Add(time.Duration(m)*time.Minute + time.Second), OK: true})
	}
	a, in, err := measureAvailability(st, from, to, time.Now())
	if err != nil || a.Minutes != 5 || a.DownMinutes != 0 || len(in) != 0 {
		t.Errorf("recording began in the period: %+v %v %v", a, in, err)
	}
	st.RecordHealth(store.HealthSample{Node: "n", At: from.Add(-time.Hour), OK: true})
	a, in, err = measureAvailability(st, from, to, time.Now())
	if err != nil || a.Minutes != 10 || a.DownMinutes != 5 || len(in) != 1 || !in[0].Start.Equal(from) || in[0].Minutes != 5 {
		t.Errorf("down when the period began: %+v %v %v", a, in, err)
	}
}

// The report counts the registry's mailboxes by their state at the
// period's end, replayed from the registry's log rows: a mailbox added
// after the period is not counted, a change after the period does not
// count, a closed one counts as closed.
func TestReportMailboxesFromRegistry(t *testing.T) {
	forBackends(t, func(t *testing.T, bf *backendFixture) {
		st := bf.open(t)
		var now time.Time
		reg := &mailbox.Registry{Store: st, Clock: func() time.Time { return now }, Provider: provName}
		step := func(at string, f func() (store.Mailbox, error)) {
			t.Helper()
			now = utc(at)
			if _, err := f(); err != nil {
				t.Fatal(err)
			}
		}
		step("2025-09-10T09:00:00Z", func() (store.Mailbox, error) {
			return reg.Add("anna@pec.example.test", "una parola lunga", store.MailboxOptions{}, "")
		})
		step("2025-09-11T09:00:00Z", func() (store.Mailbox, error) {
			return reg.Add("bruno@pec.example.test", "una parola lunga", store.MailboxOptions{}, "")
		})
		step("2025-09-12T09:00:00Z", func() (store.Mailbox, error) {
			return reg.Add("carlo@pec.example.test", "una parola lunga", store.MailboxOptions{}, "")
		})
		step("2025-11-01T09:00:00Z", func() (store.Mailbox, error) { return reg.Close("bruno@pec.example.test", "") })
		step("2025-11-02T09:00:00Z", func() (store.Mailbox, error) { return reg.Suspend("carlo@pec.example.test", "") })
		step("2026-01-15T09:00:00Z", func() (store.Mailbox, error) {
			return reg.Add("dario@pec.example.test", "una parola lunga", store.MailboxOptions{}, "")
		})
		step("2026-02-01T09:00:00Z", func() (store.Mailbox, error) { return reg.Suspend("anna@pec.example.test", "") })

		code, out, errOut := bf.run("report", "--period", "2025-T3", "--json")
		if code != 0 {
			t.Fatalf("report: exit %d %s", code, errOut)
		}
		var r report
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if want := (mailboxCounts{Source: mailboxesFromRegistry, Active: 1, Suspended: 1, Closed: 1}); r.Mailboxes != want {
			t.Errorf("mailboxes %+v, want %+v", r.Mailboxes, want)
		}
	})
}
