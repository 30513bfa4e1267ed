package sqlite

import (
	"bytes"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/pecgo/pec/store"
)

// A store whose outbox kept the messages in its rows is upgraded on open:
// the pending message is still there, byte for byte, and goes out once.
func TestUpgradeMovesOutboxMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pec.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: ACCETTAZIONE: vecchia\r\n\r\nscritta prima\r\n")
	for _, q := range append(append([]string{}, migrations[:5]...), "PRAGMA user_version = 5") {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Exec(`INSERT INTO outbox (created_ns, mail_from, rcpts, data, message_id, kind) VALUES (1, 'posta-certificata@pec.example.test', '["a@pec.example.test"]', ?, '<old@pec.example.test>', 'accettazione')`, msg); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	items, err := s.Claim(store.ClaimOwner{Host: "h", PID: 1, Instance: "i", Proc: "test"}, t0, 0, 10)
	if err != nil || len(items) != 1 || !bytes.Equal(items[0].Data, msg) || items[0].MessageID != "<old@pec.example.test>" {
		t.Fatalf("after the upgrade: %v %+v", err, items)
	}
	if err := s.MarkSent(items[0].ID, t0); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.OutboxDepth(); n != 0 {
		t.Fatalf("depth %d after sending", n)
	}
}
