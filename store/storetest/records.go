package storetest

import (
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// testRecords: the copies of generated messages are found by Message-ID,
// pending or sent, and go with Purge; virus items are listed by time and
// PEC id and read by id.
func testRecords(t *testing.T, open func() store.Store) {
	s := open()
	r, ok := s.(store.Records)
	if !ok {
		t.Fatal("the backend does not implement store.Records")
	}
	for i := 0; i < 3; i++ {
		txn := Acceptance(i, t0.Add(time.Duration(i)*time.Hour))
		txn.Virus = []store.Quarantined{{Time: t0.Add(time.Duration(i) * time.Hour), PECID: txn.Events[0].PECID, Sender: "x@pec.example.test",
			Recipients: []string{"y@pec.example.test"}, Signature: "Eicar-Test-Signature", Data: []byte{0, 1, 2, byte(i), 0xff}}}
		if err := s.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	q, err := s.DuePending(t0.Add(24*time.Hour), 10)
	if err != nil || len(q) != 3 {
		t.Fatalf("DuePending = %d items, %v", len(q), err)
	}
	if err := s.MarkSent(q[0].ID, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	g, err := r.GeneratedByMessageID([]string{"<ack-opec-0000@pec.example.test>", "<ack-opec-0002@pec.example.test>", "<none@x>"})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[0].MessageID != "<ack-opec-0000@pec.example.test>" || g[1].MessageID != "<ack-opec-0002@pec.example.test>" {
		t.Fatalf("GeneratedByMessageID = %+v", g)
	}
	if !g[0].Sent.Equal(t0.Add(time.Minute)) || !g[1].Sent.IsZero() || g[0].Kind != "accettazione" ||
		string(g[0].Data) != "Subject: ACCETTAZIONE: Fattura\r\n\r\nbody\r\n" || len(g[0].Rcpts) != 1 || g[0].Created.IsZero() {
		t.Errorf("generated copies: %+v", g)
	}
	if g, err := r.GeneratedByMessageID(nil); err != nil || len(g) != 0 {
		t.Errorf("no ids: %v %v", g, err)
	}

	all, err := r.VirusBetween(time.Time{}, time.Time{}, "")
	if err != nil || len(all) != 3 {
		t.Fatalf("VirusBetween(all) = %d, %v", len(all), err)
	}
	mid, err := r.VirusBetween(t0.Add(time.Hour), t0.Add(2*time.Hour), "")
	if err != nil || len(mid) != 1 || mid[0].PECID != "opec-0001@pec.example.test" || mid[0].Data[3] != 1 {
		t.Fatalf("VirusBetween(hour 1) = %+v, %v", mid, err)
	}
	one, err := r.VirusBetween(time.Time{}, time.Time{}, "opec-0002@pec.example.test")
	if err != nil || len(one) != 1 || !one[0].Time.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("VirusBetween(pecid) = %+v, %v", one, err)
	}
	v, ok, err := r.VirusItem(all[1].ID)
	if err != nil || !ok || v.PECID != "opec-0001@pec.example.test" || v.Signature != "Eicar-Test-Signature" || len(v.Recipients) != 1 {
		t.Fatalf("VirusItem = %+v %v %v", v, ok, err)
	}
	if _, ok, err := r.VirusItem(all[2].ID + 100); ok || err != nil {
		t.Errorf("unknown virus item: %v %v", ok, err)
	}

	// a purge removes the sent copy and the old virus items
	if _, _, err := s.Purge(t0.Add(90 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if g, err := r.GeneratedByMessageID([]string{"<ack-opec-0000@pec.example.test>", "<ack-opec-0001@pec.example.test>"}); err != nil || len(g) != 1 ||
		g[0].MessageID != "<ack-opec-0001@pec.example.test>" {
		t.Errorf("after purge: %+v %v (the sent copy goes, the pending one stays)", g, err)
	}
	if v, err := r.VirusBetween(time.Time{}, time.Time{}, ""); err != nil || len(v) != 1 {
		t.Errorf("virus items after purge: %d %v", len(v), err)
	}
}

// testHealth: health samples come back in time order within [from, to).
func testHealth(t *testing.T, open func() store.Store) {
	s := open()
	h, ok := s.(store.Health)
	if !ok {
		t.Fatal("the backend does not implement store.Health")
	}
	in := []store.HealthSample{
		{Node: "node2/pecdeliver", At: t0.Add(time.Minute), OK: false, Detail: "store not writable"},
		{Node: "node1/pecmilter", At: t0, OK: true},
		{Node: "node1/pecmilter", At: t0.Add(2 * time.Minute), OK: true},
	}
	for _, x := range in {
		if err := h.RecordHealth(x); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.HealthSamples(t0, t0.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !got[0].At.Equal(t0) || got[0].Node != "node1/pecmilter" || !got[0].OK ||
		got[1].OK || got[1].Detail != "store not writable" || !got[1].At.Equal(t0.Add(time.Minute)) {
		t.Errorf("HealthSamples = %+v", got)
	}
	if err := h.RecordHealth(store.HealthSample{Node: "x"}); err == nil {
		t.Error("a sample without a time was recorded")
	}
	// Purge takes the samples older than its cutoff
	if _, _, err := s.Purge(t0.Add(90 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := h.HealthSamples(t0, t0.Add(time.Hour)); err != nil || len(got) != 1 || !got[0].At.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("after purge: %+v %v", got, err)
	}
}
