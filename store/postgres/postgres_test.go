package postgres

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

var t0 = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

func openDB(t *testing.T, pg *testenv.Postgres) (*Store, string) {
	t.Helper()
	url := pg.NewDatabase(t)
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

// sqlAs runs stmts directly on the database, as someone with psql would.
func sqlAs(t *testing.T, url string, stmts ...string) error {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// TestAppendOnlyAndTamper: the triggers refuse updates, deletes and
// TRUNCATE of log rows; with the triggers dropped, VerifyLog names the
// row that was changed or removed.
func TestAppendOnlyAndTamper(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s, url := openDB(t, pg)
	for i := 0; i < 3; i++ {
		if err := s.Commit(storetest.Acceptance(i, t0)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range []string{"UPDATE events SET subject = 'x' WHERE id = 2", "DELETE FROM events WHERE id = 6", "TRUNCATE events"} {
		if err := sqlAs(t, url, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: %v; want refused as append-only", q, err)
		}
	}
	if bad, err := s.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog = %d, %v", bad, err)
	}
	if err := sqlAs(t, url, "ALTER TABLE events DISABLE TRIGGER USER", "UPDATE events SET subject = 'Fattura 99'::bytea WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	if bad, err := s.VerifyLog(); bad != 3 || err == nil || !strings.Contains(err.Error(), "row 3 was changed") {
		t.Fatalf("VerifyLog after a change = %d, %v; want row 3 changed", bad, err)
	}
	if err := sqlAs(t, url, "UPDATE events SET subject = 'Fattura 1'::bytea WHERE id = 3", "DELETE FROM events WHERE id = 6"); err != nil {
		t.Fatal(err)
	}
	if bad, err := s.VerifyLog(); bad != 6 || err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("VerifyLog after removing the last row = %d, %v; want the tail removed", bad, err)
	}
}

// TestFailClosed: with the server down every call fails within the
// call's deadline (the points tempfail); after a restart the same handle
// works again and nothing was half written.
func TestFailClosed(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s, _ := openDB(t, pg)
	if err := s.Commit(storetest.Acceptance(1, t0)); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	start := time.Now()
	err := s.Commit(storetest.Acceptance(2, t0))
	if err == nil {
		t.Fatal("Commit succeeded with the database down")
	}
	if !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("error %q does not tell the operator the database is unreachable", err)
	}
	if d := time.Since(start); d > Timeout {
		t.Errorf("Commit took %v to fail", d)
	}
	if _, err := s.Claim(store.ClaimOwner{Host: "h"}, t0, time.Minute, 10); err == nil {
		t.Error("Claim succeeded with the database down")
	}
	if err := s.Ping(); err == nil {
		t.Error("Ping succeeded with the database down")
	}
	pg.Start(t)
	if err := s.Commit(storetest.Acceptance(3, t0)); err != nil {
		t.Fatalf("Commit after the restart: %v", err)
	}
	ev, _ := s.Events(store.Query{Type: "accettazione"})
	if len(ev) != 2 || ev[1].ID != 3 {
		t.Fatalf("rows after the restart: %+v; want acceptances 1 and 3, ids contiguous", ev)
	}
	if bad, err := s.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog = %d, %v", bad, err)
	}
}

// TestOpenErrors: a wrong database or an unreachable server is reported
// with what to do, and the password never appears.
func TestOpenErrors(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	_, err := Open(ctx, strings.Replace(pg.URL("nosuchdb"), "pec@", "pec:s3cret@", 1))
	if err == nil || !strings.Contains(err.Error(), "createdb") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("missing database: %v", err)
	}
	port := testenv.FreePort(t)
	_, err = Open(ctx, "postgres://pec:s3cret@127.0.0.1:"+strconv.Itoa(port)+"/pec?sslmode=disable&connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "unreachable") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("no server: %v", err)
	}
	// two nodes starting at once create the schema once
	url := pg.NewDatabase(t)
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			s, err := Open(ctx, url)
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Errorf("concurrent open: %v", err)
		}
	}
}

// TestUpgrade: a store of schema version 1 (before the deliveries and
// service_state and mailboxes tables) is upgraded when a node opens it,
// and keeps its log.
func TestUpgrade(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s, url := openDB(t, pg)
	if err := s.Commit(storetest.Acceptance(1, t0)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := sqlAs(t, url, "DROP TABLE deliveries", "DROP TABLE service_state", "DROP TABLE health", "DROP TABLE mailboxes", "UPDATE pec_schema SET version = 1"); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.ClaimDeliveries("k", []string{"a@x"}, store.DeliveryOwner{ID: "o", PID: 1}, t0); err != nil {
		t.Fatalf("deliveries after the upgrade: %v", err)
	}
	if _, _, err := s2.Mailbox("a@x"); err != nil {
		t.Fatalf("mailboxes after the upgrade: %v", err)
	}
	if bad, err := s2.VerifyLog(); bad != 0 || err != nil {
		t.Fatalf("VerifyLog after the upgrade = %d, %v", bad, err)
	}
	if err := s2.RecordHealth(store.HealthSample{Node: "n", At: t0, OK: true}); err != nil {
		t.Fatalf("health samples after the upgrade: %v", err)
	}
	if err := sqlAs(t, url, "UPDATE pec_schema SET version = 99"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), url); err == nil || !strings.Contains(err.Error(), "newer version of the program") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

// TestOpenExisting: the operator's tool refuses a database without a store
// (a wrong URL) instead of creating an empty log that verifies.
func TestOpenExisting(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	if _, err := OpenExisting(context.Background(), url); err == nil || !strings.Contains(err.Error(), "holds no pec store") {
		t.Fatalf("OpenExisting of an empty database: %v", err)
	}
	if err := sqlAs(t, url, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenExisting(context.Background(), url)
	if err != nil {
		t.Fatalf("OpenExisting of a store: %v", err)
	}
	s.Close()
}
