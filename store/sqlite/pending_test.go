package sqlite

import (
	"github.com/pecgo/pec/store"

	"path/filepath"
	"testing"
	"time"
)

func TestPendingAndRetryAll(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), "pec.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{
		{MailFrom: "posta-certificata@pec.example.test", Rcpts: []string{"a@pec.example.test"}, Data: []byte("x"), MessageID: "<1@x>", Kind: "accettazione"},
		{MailFrom: "posta-certificata@pec.example.test", Rcpts: []string{"b@pec.example.test"}, Data: []byte("y"), MessageID: "<2@x>", Kind: "avvenuta-consegna"},
	}}); err != nil {
		t.Fatal(err)
	}
	items, _ := st.DuePending(now, 10)
	if err := st.MarkRetry(items[0].ID, "dial tcp: connection refused", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkSent(items[1].ID, now); err != nil {
		t.Fatal(err)
	}
	p, err := st.Pending(0)
	if err != nil || len(p) != 1 || p[0].Kind != "accettazione" || p[0].Attempts != 1 || p[0].LastError == "" || !p[0].NextTry.Equal(now.Add(time.Hour)) {
		t.Fatalf("pending %+v %v", p, err)
	}
	if due, _ := st.DuePending(now, 10); len(due) != 0 {
		t.Fatal("held item due before retry")
	}
	if n, err := st.RetryAll(now); err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	if due, _ := st.DuePending(now, 10); len(due) != 1 || due[0].ID != items[0].ID {
		t.Fatalf("after retry: %+v", due)
	}
}
