package main

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/pecgo/pec/store"
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
