package storetest

import (
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

// testServiceState: the suspension (Aruba manual §9.7.7) set on one node
// is read by the other, and each change is a row of the hash-chained log.
func testServiceState(t *testing.T, open func() store.Store) {
	s1, s2 := open(), open()
	st, err := s2.ServiceState()
	if err != nil || st != (store.ServiceState{}) {
		t.Fatalf("ServiceState of a new store = %+v, %v; want the zero value (active)", st, err)
	}
	must(t, s1.Commit(Acceptance(1, t0)))
	sus := store.ServiceState{Suspended: true, Reason: "manutenzione straordinaria", Since: t0.Add(time.Minute), By: "root@node1"}
	must(t, s1.SetServiceState(sus, store.Event{Time: sus.Since, Point: "service", Type: "sospensione-servizio", Sender: sus.By, Subject: sus.Reason}))
	st, err = s2.ServiceState()
	if err != nil || st != sus {
		t.Fatalf("ServiceState on the other node = %+v, %v; want %+v", st, err, sus)
	}
	res := store.ServiceState{Since: t0.Add(time.Hour), By: "root@node2"}
	must(t, s2.SetServiceState(res, store.Event{Time: res.Since, Point: "service", Type: "ripresa-servizio", Sender: res.By}))
	st, err = s1.ServiceState()
	if err != nil || st != res {
		t.Fatalf("ServiceState after resume = %+v, %v; want %+v", st, err, res)
	}
	ev, err := s1.Events(store.Query{})
	must(t, err)
	var types []store.EventType
	for _, e := range ev {
		if e.Point == "service" {
			types = append(types, e.Type)
		}
	}
	if len(types) != 2 || types[0] != "sospensione-servizio" || types[1] != "ripresa-servizio" {
		t.Fatalf("service rows in the log = %v, want [sospensione-servizio ripresa-servizio]", types)
	}
	mustVerify(t, s1)
	// an invalid event writes nothing: the state stays as it was
	if err := s1.SetServiceState(store.ServiceState{Suspended: true, Since: t0.Add(2 * time.Hour)}, store.Event{Point: "service"}); err == nil {
		t.Fatal("SetServiceState with an event without time succeeded")
	}
	if st, _ := s2.ServiceState(); st != res {
		t.Fatalf("state after a refused change = %+v, want %+v", st, res)
	}
}
