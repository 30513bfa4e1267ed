package outbox

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestUnixSocket: the re-injection listener on a unix socket
// ("unix:/path", Postfix's public/pec-reinject) gets every item.
func TestUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "pec-ob-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "pec-reinject")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	k := &sink{addr: "unix:" + path}
	k.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{k: k}, nil }))
	k.srv.Domain = "sink.test"
	k.srv.ErrorLog = nopLogger{}
	go k.srv.Serve(ln)
	t.Cleanup(func() { k.srv.Close() })

	st := openStore(t, "")
	a, b := receipt(1), receipt(2)
	commit(t, st, a, b)
	snd, _ := newSender(t, st, k.addr, &clock{t: t0})
	if n, err := snd.DrainOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("DrainOnce over %s = %d, %v; want 2, nil", k.addr, n, err)
	}
	checkOnce(t, k, a, b)
}
