package sqlite

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/pecgo/pec/store"
)

func TestDeliveriesClaimAndSettle(t *testing.T) {
	s, _ := openTemp(t)
	me := store.DeliveryOwner{ID: "inst/1", PID: 4242}
	const key = "opec-1@pec.example.test"
	if err := s.ClaimDeliveries(key, []string{"Luigi@pec.example.test", "carla@pec.example.test"}, me, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.Deliveries(key, []string{"luigi@pec.example.test", "carla@PEC.example.test", "ugo@pec.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["luigi@pec.example.test"].State != store.DeliveryPending || got["carla@pec.example.test"].Owner != me {
		t.Fatalf("after claim: %+v", got)
	}
	// a second claim of a recipient with a row records nothing at all
	err = s.ClaimDeliveries(key, []string{"ugo@pec.example.test", "luigi@pec.example.test"}, store.DeliveryOwner{ID: "other/1", PID: 1}, t0)
	if !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("second claim: %v", err)
	}
	if got, _ := s.Deliveries(key, []string{"ugo@pec.example.test"}); len(got) != 0 {
		t.Fatalf("a failed claim left %+v", got)
	}
	// the outcome moves the rows with the receipts, atomically
	ok := store.Txn{
		Events:     []store.Event{{Time: t0, Point: "delivery", Type: "avvenuta-consegna", PECID: key}},
		Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "luigi@pec.example.test", From: store.DeliveryPending, Owner: me.ID, To: store.DeliveryStored, At: t0}},
	}
	if err := s.Commit(ok); err != nil {
		t.Fatal(err)
	}
	// another owner cannot settle carla's row: nothing of its Txn is written
	bad := store.Txn{
		Events:     []store.Event{{Time: t0, Point: "delivery", Type: "avvenuta-consegna", PECID: key, Recipients: []string{"carla"}}},
		Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "carla@pec.example.test", From: store.DeliveryPending, Owner: "other/1", To: store.DeliveryStored, At: t0}},
	}
	if err := s.Commit(bad); !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("foreign settle: %v", err)
	}
	if ev, _ := s.Events(store.Query{PECID: key}); len(ev) != 1 {
		t.Fatalf("the refused Txn wrote %d events", len(ev)-1)
	}
	// a temporary failure removes the row: the next attempt starts over
	if err := s.Commit(store.Txn{Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "carla@pec.example.test", From: store.DeliveryPending, Owner: me.ID, At: t0}}}); err != nil {
		t.Fatal(err)
	}
	// a permanent refusal at RCPT (no intent) is recorded once
	fail := store.Txn{Deliveries: []store.DeliveryMark{{Key: key, Rcpt: "ugo@pec.example.test", To: store.DeliveryFailed, At: t0}}}
	if err := s.Commit(fail); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(fail); !errors.Is(err, store.ErrDeliveryConflict) {
		t.Fatalf("second insert: %v", err)
	}
	got, _ = s.Deliveries(key, []string{"luigi@pec.example.test", "carla@pec.example.test", "ugo@pec.example.test"})
	if got["luigi@pec.example.test"].State != store.DeliveryStored || got["ugo@pec.example.test"].State != store.DeliveryFailed || len(got) != 2 {
		t.Fatalf("final rows: %+v", got)
	}
	// settled rows go with the log's retention; pending ones stay
	if err := s.ClaimDeliveries("k2", []string{"x@pec.example.test"}, me, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Purge(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Deliveries(key, []string{"luigi@pec.example.test"}); len(got) != 0 {
		t.Fatalf("purge kept %+v", got)
	}
	if got, _ := s.Deliveries("k2", []string{"x@pec.example.test"}); len(got) != 1 {
		t.Fatal("purge removed a pending row")
	}
}

// A store written before the deliveries table existed is upgraded on open
// and keeps its log.
func TestUpgradeAddsDeliveries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pec.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{migrations[0], "PRAGMA user_version = 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	s.db.QueryRow("PRAGMA user_version").Scan(&v)
	if v != len(migrations) {
		t.Fatalf("user_version %d, want %d", v, len(migrations))
	}
	if err := s.ClaimDeliveries("k", []string{"a@x"}, store.DeliveryOwner{ID: "o", PID: 1}, t0); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)
}
