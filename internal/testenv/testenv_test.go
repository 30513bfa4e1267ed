package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/clamd"
)

const (
	mario = "mario.rossi@pec.example.test"
	luigi = "luigi.verdi@pec.example.test" // has a quota
)

func TestEICAR(t *testing.T) {
	e := EICAR()
	sum := md5.Sum(e)
	if len(e) != 68 || hex.EncodeToString(sum[:]) != "44d88612fea8a8f36de82e1278abb02f" {
		t.Fatalf("EICAR: %d bytes, md5 %x", len(e), sum)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("port %d not usable: %v", p, err)
	}
	ln.Close()
}

func TestInetListener(t *testing.T) {
	for line, want := range map[string]string{
		"127.0.0.1:2525 inet n - n - - smtpd": "127.0.0.1:2525",
		"2526      inet  n - n - - smtpd":     "127.0.0.1:2526",
		"smtp      unix  -  -  n - - smtp":    "",
		"#127.0.0.1:25 inet n - n - - smtpd":  "",
	} {
		got, ok := inetListener(line)
		if got != want || ok != (want != "") {
			t.Errorf("inetListener(%q) = %q, %v; want %q", line, got, ok, want)
		}
	}
}

// TestClamd: the private DB detects EICAR on TCP and unix socket; Stop makes
// clamd unreachable and Start brings it back on the same addresses.
func TestClamd(t *testing.T) {
	t.Parallel()
	c := StartClamd(t)
	ctx := context.Background()
	for _, cl := range []*clamd.Client{
		{Network: "tcp", Addr: c.Addr, Timeout: 5 * time.Second},
		{Network: "unix", Addr: c.Socket, Timeout: 5 * time.Second},
	} {
		res, err := cl.Scan(ctx, bytes.NewReader(EICAR()))
		if err != nil || !res.Infected || !strings.HasPrefix(res.Signature, "Test.EICAR.") {
			t.Errorf("%s: EICAR scan = %+v, %v; want infected Test.EICAR.*", cl.Network, res, err)
		}
		res, err = cl.Scan(ctx, strings.NewReader("just a clean text\n"))
		if err != nil || res.Infected {
			t.Errorf("%s: clean scan = %+v, %v", cl.Network, res, err)
		}
	}
	cl := &clamd.Client{Network: "tcp", Addr: c.Addr, Timeout: 2 * time.Second}
	c.Stop()
	c.Stop() // idempotent
	if err := cl.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with clamd stopped")
	}
	c.Start(t)
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
}

func testUsers() []DovecotUser {
	return []DovecotUser{
		{Addr: mario, Password: "secret"},
		{Addr: luigi, Password: "secret", QuotaBytes: 2000},
	}
}

func testMessage(subject string, bodySize int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: <mittente@example.test>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%d@example.test>\r\n\r\n", mario, subject, time.Now().UnixNano())
	line := strings.Repeat("x", 70) + "\r\n"
	for b.Len() < bodySize {
		b.WriteString(line)
	}
	b.WriteString("fine\r\n")
	return b.Bytes()
}

// lmtpSend delivers msg over LMTP (RFC 2033). It returns the RCPT errors and
// the per-recipient DATA result.
func lmtpSend(t *testing.T, addr string, rcpts []string, msg []byte) (rcptErr map[string]error, dataErr error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		t.Fatalf("LHLO: %v", err)
	}
	if err := c.Mail("mittente@example.test", nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	rcptErr = map[string]error{}
	ok := 0
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			rcptErr[r] = err
		} else {
			ok++
		}
	}
	if ok == 0 {
		return rcptErr, nil
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	_, dataErr = w.CloseWithLMTPResponse()
	c.Quit()
	return rcptErr, dataErr
}

// smtpSend submits msg over plain SMTP (no STARTTLS: the sandbox has no TLS).
func smtpSend(addr, from string, to []string, msg []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		return err
	}
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

func smtpCode(err error) (int, smtp.EnhancedCode) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code, se.EnhancedCode
	}
	return 0, smtp.EnhancedCode{}
}

// TestDovecot: LMTP delivery lands in Messages; unknown user refused at RCPT
// with 550 5.1.1; IMAP greets; Stop/Start keeps the addresses.
func TestDovecot(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, testUsers())

	rerr, derr := lmtpSend(t, d.LMTPAddr, []string{mario, "nobody@pec.example.test"}, testMessage("lmtp 1", 100))
	if derr != nil {
		t.Fatalf("DATA for %s: %v", mario, derr)
	}
	if code, enh := smtpCode(rerr["nobody@pec.example.test"]); code != 550 || enh != (smtp.EnhancedCode{5, 1, 1}) {
		t.Errorf("unknown user: %v; want 550 5.1.1", rerr["nobody@pec.example.test"])
	}
	msgs := d.WaitMessages(t, mario, 1, 5*time.Second)
	if !bytes.Contains(msgs[0], []byte("Subject: lmtp 1")) {
		t.Errorf("delivered message:\n%s", msgs[0])
	}

	conn, err := net.DialTimeout("tcp", d.IMAPAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	greet, _ := bufio.NewReader(conn).ReadString('\n')
	conn.Close()
	if !strings.HasPrefix(greet, "* OK") {
		t.Errorf("IMAP greeting %q", greet)
	}

	d.Stop()
	d.Stop()
	if c, err := net.DialTimeout("tcp", d.LMTPAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("LMTP still accepting after Stop")
	}
	d.Start(t)
	if _, derr := lmtpSend(t, d.LMTPAddr, []string{mario}, testMessage("lmtp 2", 100)); derr != nil {
		t.Fatalf("after restart: %v", derr)
	}
	if got := len(d.WaitMessages(t, mario, 2, 5*time.Second)); got != 2 {
		t.Errorf("%d messages, want 2", got)
	}
}

// TestDovecotSetPassword: IMAPInbox counts the INBOX; after SetPassword
// the new password logs in, the old one no longer does, and the other
// users keep theirs.
func TestDovecotSetPassword(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, testUsers())
	if _, derr := lmtpSend(t, d.LMTPAddr, []string{mario}, testMessage("one", 100)); derr != nil {
		t.Fatal(derr)
	}
	d.WaitMessages(t, mario, 1, 5*time.Second)
	if n, err := IMAPInbox(d.IMAPAddr, mario, "secret"); err != nil || n != 1 {
		t.Fatalf("IMAPInbox before: %d, %v; want 1 message", n, err)
	}
	if err := d.SetPassword(mario, "n3w-Pass_word.42"); err != nil {
		t.Fatal(err)
	}
	if n, err := IMAPInbox(d.IMAPAddr, mario, "n3w-Pass_word.42"); err != nil || n != 1 {
		t.Errorf("new password: %d, %v; want 1 message", n, err)
	}
	if _, err := IMAPInbox(d.IMAPAddr, mario, "secret"); err == nil {
		t.Error("old password still logs in")
	}
	if n, err := IMAPInbox(d.IMAPAddr, luigi, "secret"); err != nil || n != 0 {
		t.Errorf("other user: %d, %v; want an empty INBOX", n, err)
	}
	if err := d.SetPassword("nobody@pec.example.test", "x"); err == nil {
		t.Error("SetPassword of an unknown user: no error")
	}
	if err := d.SetPassword(mario, "a:b"); err == nil {
		t.Error("SetPassword with ':': no error")
	}
	// both at once
	if err := d.SetPasswords(map[string]string{mario: "m2", luigi: "l2"}); err != nil {
		t.Fatal(err)
	}
	for u, pw := range map[string]string{mario: "m2", luigi: "l2"} {
		if _, err := IMAPInbox(d.IMAPAddr, u, pw); err != nil {
			t.Errorf("%s after SetPasswords: %v", u, err)
		}
	}
}

// TestDovecotQuota: a message that fits is saved, one that does not is
// refused after DATA with the permanent 552 5.2.2.
func TestDovecotQuota(t *testing.T) {
	t.Parallel()
	d := StartDovecot(t, testUsers())
	if _, derr := lmtpSend(t, d.LMTPAddr, []string{luigi}, testMessage("small", 200)); derr != nil {
		t.Fatalf("small message over quota? %v", derr)
	}
	_, derr := lmtpSend(t, d.LMTPAddr, []string{luigi, mario}, testMessage("big", 4000))
	var lerr smtp.LMTPDataError
	if !errors.As(derr, &lerr) || lerr[luigi] == nil {
		t.Fatalf("big message: %v; want an LMTP error for %s", derr, luigi)
	}
	if se := lerr[luigi]; se.Code != 552 || se.EnhancedCode != (smtp.EnhancedCode{5, 2, 2}) {
		t.Errorf("over quota: %d %v %q; want 552 5.2.2", se.Code, se.EnhancedCode, se.Message)
	} else {
		t.Logf("over quota: %d %v %s", se.Code, se.EnhancedCode, se.Message)
	}
	if lerr[mario] != nil {
		t.Errorf("mario (no quota) refused: %v", lerr[mario])
	}
	if n := len(d.Messages(t, luigi)); n != 1 {
		t.Errorf("quota user has %d messages, want 1", n)
	}
}

// TestPostfixRelay: Postfix relays a domain to Dovecot over LMTP
// (transport_maps), the message lands in the mailbox and the queue empties.
func TestPostfixRelay(t *testing.T) {
	t.Parallel()
	Need(t, "postfix", "dovecot")
	NeedRoot(t, "postfix")
	d := StartDovecot(t, testUsers())
	port := FreePort(t)
	p := StartPostfix(t, PostfixConfig{
		Main: []string{
			"relay_domains = pec.example.test",
			"transport_maps = inline:{ pec.example.test=lmtp:inet:" + d.LMTPAddr + " }",
		},
		Master: []string{fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd", port)},
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	msg := testMessage("via postfix", 100)
	if err := smtpSend(addr, "mittente@example.test", []string{mario}, msg); err != nil {
		t.Fatalf("SMTP to postfix: %v", err)
	}
	msgs := d.WaitMessages(t, mario, 1, 10*time.Second)
	if !bytes.Contains(msgs[0], []byte("Subject: via postfix")) || !bytes.Contains(msgs[0], []byte("Received: from ")) {
		t.Errorf("delivered message:\n%s", msgs[0])
	}
	p.WaitLog(t, "status=sent", 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for !p.QueueEmpty() {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty:\n%s", p.Queue())
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Flush() // harmless on an empty queue
}

// TestPostfixSubmissionSASL: a submission listener authenticating against
// Dovecot (smtpd_sasl_type=dovecot over inet) accepts AUTH PLAIN with the
// right password, refuses a wrong one with 535 5.7.8, and relays only when
// authenticated.
func TestPostfixSubmissionSASL(t *testing.T) {
	t.Parallel()
	Need(t, "postfix", "dovecot")
	NeedRoot(t, "postfix")
	d := StartDovecot(t, testUsers())
	port := FreePort(t)
	StartPostfix(t, PostfixConfig{
		Main: []string{
			"transport_maps = inline:{ pec.example.test=lmtp:inet:" + d.LMTPAddr + " }",
		},
		Master: []string{fmt.Sprintf("127.0.0.1:%d inet n - n - - smtpd", port) +
			" -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=inet:" + d.AuthAddr +
			" -o smtpd_tls_security_level=none -o smtpd_tls_auth_only=no -o smtpd_sasl_security_options=noanonymous" +
			" -o mynetworks=127.0.0.2/32 -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"},
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// Wrong password.
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(sasl.NewPlainClient("", mario, "wrong"))
	if code, enh := smtpCode(err); code != 535 || enh != (smtp.EnhancedCode{5, 7, 8}) {
		t.Errorf("AUTH with wrong password: %v; want 535 5.7.8", err)
	}
	c.Close() // go-smtp answers a failed AUTH with "*", Postfix then hangs up

	// Not authenticated: relaying refused at RCPT.
	err = smtpSend(addr, mario, []string{mario}, testMessage("anonymous", 10))
	if code, _ := smtpCode(err); code != 554 {
		t.Errorf("unauthenticated submission: %v; want 554 relay access denied", err)
	}

	// Right password.
	c, err = smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", mario, "secret")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.SendMail(mario, []string{mario}, bytes.NewReader(testMessage("submitted", 100))); err != nil {
		t.Fatalf("authenticated submission: %v", err)
	}
	c.Quit()
	d.WaitMessages(t, mario, 1, 10*time.Second)
}
