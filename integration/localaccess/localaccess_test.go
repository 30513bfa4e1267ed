// Package localaccess checks on one real provider that only Postfix can
// ask for a signature: other local accounts cannot reach pecmilter's and
// pecdeliver's sockets nor the re-injection socket, the re-injection
// listener (which has no milter) takes no sender but posta-certificata@,
// local sendmail is refused, and the notices still go out through it.
package localaccess

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
)

const (
	mario = "mario.rossi@pec-a.example.test"
	anna  = "anna.blu@pec-a.example.test"
	carla = "carla.rosa@pec-a.example.test" // forwards a copy of ordinary mail
	paolo = "paolo@mail.example.org"        // an ordinary Internet address
)

func TestMain(m *testing.M) {
	testenv.HelperMain() // the child of testenv.DialAs
	os.Exit(m.Run())
}

// messages returns addr's messages containing subject, parsed, waiting
// up to a minute for n of them.
func messages(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out []*parse.Message
		for _, raw := range p.Dovecot.Messages(t, addr) {
			if bytes.Contains(raw, []byte(subject)) {
				m, err := parse.Parse(raw)
				if err != nil {
					t.Fatalf("%s: %v", addr, err)
				}
				out = append(out, m)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d messages about %q after a minute, want %d", addr, len(out), subject, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func TestLocalAccess(t *testing.T) {
	w := pectest.NewWorld(t, "pec-a.example.test")
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: "pec-a.example.test", Users: []string{mario, anna, carla},
		Extra: "\n[policy.mailboxes.\"" + carla + "\"]\nforward_to = \"carla@mail.example.org\"\n"})
	w.Start()
	reSock := strings.TrimPrefix(a.ReinjectAddr, "unix:")
	nobody := testenv.LookupAccount(t, "nobody")
	pfUser := testenv.LookupAccount(t, "postfix")

	// (a) the signing oracle is closed: pecmilter's and pecdeliver's
	// sockets are 0660 with group postfix in a 2750 directory, made so by
	// the daemons themselves; Postfix's user connects, nobody does not.
	t.Run("daemon sockets", func(t *testing.T) {
		if fi, err := os.Stat(a.SocketDir); err != nil || fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 {
			t.Errorf("socket directory %s: %v %v, want drwxr-s---", a.SocketDir, fi.Mode(), err)
		}
		for _, c := range []struct{ what, path, banner string }{
			{"access milter", a.AccessAddr, ""},
			{"incoming milter", a.IncomingAddr, ""},
			{"pecdeliver LMTP", a.DeliverAddr, "220 "},
		} {
			fi, err := os.Stat(c.path)
			if err != nil {
				t.Fatalf("%s: %v", c.what, err)
			}
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != pfUser.Cred.Gid {
				t.Errorf("%s %s: %v group %d, want srw-rw---- group postfix", c.what, c.path, fi.Mode(), st.Gid)
			}
			if got, err := testenv.DialAs(t, nobody, "unix", c.path); !errors.Is(err, testenv.ErrDenied) {
				t.Errorf("%s as nobody: %q, %v; want permission denied (no signature for other local processes)", c.what, got, err)
			}
			if got, err := testenv.DialAs(t, pfUser, "unix", c.path); err != nil || !strings.HasPrefix(got, c.banner) {
				t.Errorf("%s as postfix: %q, %v", c.what, got, err)
			}
		}
	})

	// (b) the re-injection path: a unix socket other accounts cannot
	// reach, refusing every sender but ours, whatever the recipient.
	t.Run("re-injection", func(t *testing.T) {
		if got, err := testenv.DialAs(t, nobody, "unix", reSock); !errors.Is(err, testenv.ErrDenied) {
			t.Errorf("re-injection as nobody: %q, %v; want permission denied", got, err)
		}
		conn, err := net.Dial("unix", reSock)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClient(conn)
		defer c.Close()
		if err := c.Hello("localhost"); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ from, rcpt string }{
			{mario, anna}, // an unsigned "receipt" from a user to a PEC mailbox
			{paolo, anna},
			{"", anna},
			{"postmaster@pec-a.example.test", anna},
			{mario, "someone@mail.example.org"}, // relaying out
			{paolo, "someone@mail.example.org"},
		} {
			err := c.Mail(tc.from, nil)
			if err == nil {
				err = c.Rcpt(tc.rcpt, nil)
			}
			if smtpCode(err)/100 != 5 {
				t.Errorf("re-injection MAIL FROM:<%s> RCPT TO:<%s>: %v, want a 5xx", tc.from, tc.rcpt, err)
			}
			if err := c.Reset(); err != nil {
				t.Fatal(err)
			}
		}
		c.Quit()
	})

	// the outbox sender's notices still get through, to our mailboxes and
	// out (forwarded ordinary mail leaves as posta-certificata@ too)
	t.Run("notices still flow", func(t *testing.T) {
		subj := "accesso locale"
		raw := []byte("From: " + mario + "\r\nTo: " + anna + "\r\nSubject: " + subj +
			"\r\nMessage-ID: <local-1@client.example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nciao\r\n")
		if err := a.Send(mario, []string{anna}, raw); err != nil {
			t.Fatal(err)
		}
		if env := messages(t, a, anna, subj, 1)[0]; env.Kind != kind.PostaCertificata {
			t.Errorf("recipient got %s", env.Kind)
		}
		got := map[kind.Kind]bool{}
		for _, m := range messages(t, a, mario, subj, 2) {
			got[m.Kind] = true
		}
		if !got[kind.Accettazione] || !got[kind.AvvenutaConsegna] {
			t.Errorf("sender got %v, want the acceptance and the delivery receipt", got)
		}

		fwd := []byte("From: " + paolo + "\r\nTo: " + carla + "\r\nSubject: inoltro locale\r\nMessage-ID: <o-local@mail.example.org>\r\n\r\nciao\r\n")
		if err := pectest.SendAs(a.MXAddr, "", paolo, []string{carla}, fwd); err != nil {
			t.Fatal(err)
		}
		copies := w.Ordinary.Wait(t, 1, 60*time.Second, func(m pectest.SinkMessage) bool {
			return bytes.Contains(m.Data, []byte("inoltro locale"))
		})
		if copies[0].From != a.ServiceAddr() {
			t.Errorf("forwarded copy left with MAIL FROM %q, want %s", copies[0].From, a.ServiceAddr())
		}
	})

	// (c) local sendmail: only root may submit (authorized_submit_users)
	t.Run("local sendmail", func(t *testing.T) {
		for _, acct := range []testenv.Account{nobody, pfUser} {
			subject := "sendmail locale " + acct.Name
			msg := []byte("From: " + mario + "\r\nTo: " + anna + "\r\nSubject: " + subject + "\r\n\r\nciao\r\n")
			out, err := a.Postfix.SendmailAs(t, acct, mario, []string{anna}, msg)
			if err == nil || !strings.Contains(out, "is not allowed to submit mail") {
				t.Errorf("sendmail as %s: %v\n%s", acct.Name, err, out)
			}
		}
		time.Sleep(time.Second)
		for _, raw := range a.Dovecot.Messages(t, anna) {
			if bytes.Contains(raw, []byte("sendmail locale")) {
				t.Errorf("a local sendmail submission reached a mailbox:\n%s", raw)
			}
		}
		if entries, _ := os.ReadDir(filepath.Join(a.Postfix.QueueDir, "maildrop")); len(entries) != 0 {
			t.Errorf("maildrop holds %d files", len(entries))
		}
	})
}
