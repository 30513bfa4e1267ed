// Package delivery attacks the delivery point of one real provider
// (Postfix, Dovecot, clamd, pecmilter, pecdeliver) from every path into
// it: port 25 (a genuine envelope replayed by whoever holds it), the
// milter-free re-injection socket and pecdeliver's own LMTP socket. It
// checks that nothing reaches a mailbox as PEC unless it is a
// valid envelope for that addressee, that replays and Postfix retries never
// store a second copy or emit a second receipt, and that a store that
// cannot be written — a full file system — or a pecdeliver killed right
// after Dovecot's answer never doubles a delivery.
package delivery

import (
	"bufio"
	"bytes"
	"database/sql"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	_ "github.com/mattn/go-sqlite3"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/pectest"
	"github.com/pecgo/pec/internal/rawmime"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

const (
	domain = "pec-a.example.test"
	mario  = "mario.rossi@pec-a.example.test"
	anna   = "anna.blu@pec-a.example.test"
	bruno  = "bruno.gialli@pec-a.example.test"
	rita   = "rita.viola@pec-a.example.test" // refuses ordinary mail
)

func TestDeliveryPoint(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Postfix and mount(8) need root")
	}
	// the store on its own small file system, so that it can be filled
	storeDir := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(storeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", storeDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs for the store (%v): %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", storeDir).Run() })

	w := pectest.NewWorld(t, domain)
	a := w.Add(pectest.Spec{Name: "Provider A S.p.A.", Domain: domain, Users: []string{mario, anna, bruno, rita}, StoreDir: storeDir,
		Extra: "\n[policy.mailboxes.\"" + rita + "\"]\nordinary_mail = \"refuse\"\n"})
	w.Start()
	root := testpki.PEM(w.PKI.Root.Cert)
	// pecdeliver reaches Dovecot through a proxy that can kill it at the
	// chosen packet
	px := startProxy(t, a.Dovecot.LMTPAddr, a)
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte(`"`+a.DovecotLMTP()+`"`), []byte(`"inet:`+px.addr+`"`), 1)
	if err := os.WriteFile(a.ConfigPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	a.KillDeliver()
	a.StartDeliver()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("pecdeliver:\n" + a.ProcLog("pecdeliver"))
		}
	})
	st := a.Store()

	var envelope []byte // anna's genuine envelope, for the replays
	t.Run("same-provider", func(t *testing.T) {
		subj := "originale da ripetere"
		if err := a.Send(mario, []string{anna}, plain(mario, anna, subj)); err != nil {
			t.Fatal(err)
		}
		env := wait(t, a, anna, subj, 1)[0]
		if env.Kind != kind.PostaCertificata {
			t.Fatalf("anna got %s", env.Kind)
		}
		envelope = env.Content
		wait(t, a, mario, subj, 2)
		wait(t, a, a.ServiceAddr(), subj, 1)
		settle(t, a, st)
		count(t, a, mario, subj, map[kind.Kind]int{kind.Accettazione: 1, kind.AvvenutaConsegna: 1})
		count(t, a, a.ServiceAddr(), subj, map[kind.Kind]int{kind.PresaInCarico: 1})
	})

	// what the delivery point itself emitted about the envelope
	pointEvents := func(typ store.EventType) int {
		p, err := parse.Parse(envelope)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := st.Events(store.Query{PECID: p.Daticert.Identificativo, Point: "delivery", Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		return len(ev)
	}
	t.Run("replay-to-non-addressee", func(t *testing.T) {
		// the genuine envelope, replayed by anyone who holds it to port 25
		// for a mailbox mario never wrote to: the incoming point sees a
		// valid envelope, the delivery point a non-addressee
		if err := pectest.SendAs(a.MXAddr, "", mario, []string{bruno}, envelope); err != nil {
			t.Fatal(err)
		}
		got := wait(t, a, bruno, "originale da ripetere", 1)[0]
		if got.Kind != kind.Anomalia || !bytes.Contains(got.Original, []byte("X-Trasporto: posta-certificata")) {
			t.Fatalf("bruno got %s, want the envelope wrapped in an anomaly envelope", got.Kind)
		}
		conformance.Check(t, "anomalia-non-destinatario", got.Content, root)
		settle(t, a, st)
		// no receipt for bruno, and no take-charge from the delivery point
		count(t, a, mario, "originale da ripetere", map[kind.Kind]int{kind.Accettazione: 1, kind.AvvenutaConsegna: 1})
		if n := pointEvents("presa-in-carico"); n != 1 {
			t.Fatalf("the delivery point logged %d take-charges, want the original's only", n)
		}
		ev, _ := st.Events(store.Query{Point: "delivery", Type: "anomalia", Recipient: bruno})
		if len(ev) != 1 || ev[0].PECID == "" {
			t.Fatalf("log: %+v", ev)
		}
	})

	t.Run("replay-to-same-recipient", func(t *testing.T) {
		// through port 25 and through the re-injection socket (any process
		// that can send as posta-certificata@)
		before := postfixCount(a, anna, "sent")
		if err := pectest.SendAs(a.MXAddr, "", mario, []string{anna}, envelope); err != nil {
			t.Fatal(err)
		}
		if err := sendUnix(a.ReinjectAddr, a.ServiceAddr(), []string{anna}, envelope); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "Postfix to hand both replays to pecdeliver", func() bool { return postfixCount(a, anna, "sent") >= before+2 })
		settle(t, a, st)
		count(t, a, anna, "originale da ripetere", map[kind.Kind]int{kind.PostaCertificata: 1})
		count(t, a, mario, "originale da ripetere", map[kind.Kind]int{kind.Accettazione: 1, kind.AvvenutaConsegna: 1})
		if n := pointEvents("presa-in-carico"); n != 1 {
			t.Fatalf("the delivery point logged %d take-charges, want the original's only", n)
		}
		if n := pointEvents("avvenuta-consegna"); n != 1 {
			t.Fatalf("the delivery point logged %d delivery receipts", n)
		}
		// nor does the incoming point take the replays in charge again
		// (RFC 6109 §3.2.1: once per addressee; bruno is none)
		p, err := parse.Parse(envelope)
		if err != nil {
			t.Fatal(err)
		}
		if ev, _ := st.Events(store.Query{PECID: p.Daticert.Identificativo, Point: "incoming", Type: "presa-in-carico"}); len(ev) != 0 {
			t.Fatalf("the incoming point issued %d take-charges for the port-25 replays, want none", len(ev))
		}
	})

	t.Run("unsigned-receipt-over-lmtp", func(t *testing.T) {
		fake := []byte("From: posta-certificata@" + domain + "\r\nTo: " + mario + "\r\nSubject: CONSEGNA: ricevuta falsa\r\n" +
			"X-Ricevuta: avvenuta-consegna\r\nMessage-ID: <falsa@" + domain + ">\r\nDate: Mon, 23 Nov 2026 16:04:00 +0100\r\n\r\n" +
			"Il messaggio e' stato consegnato.\r\n")
		// a local process that can reach pecdeliver's socket (group postfix)
		codes := lmtpSend(t, a.DeliverAddr, "posta-certificata@"+domain, []string{mario, rita}, fake)
		if codes[mario] != 250 || codes[rita] != 554 {
			t.Fatalf("pecdeliver answered %v: want 250 for mario (wrapped) and 554 for rita (refuses ordinary mail)", codes)
		}
		got := wait(t, a, mario, "ricevuta falsa", 1)[0]
		if got.Kind != kind.Anomalia || !bytes.Contains(got.Original, []byte("X-Ricevuta: avvenuta-consegna")) {
			t.Fatalf("mario got %s", got.Kind)
		}
		conformance.Check(t, "anomalia-ricevuta-non-firmata", got.Content, root)
		// a receipt signed with a key outside the index, through the
		// re-injection listener
		other := w.PKI.Issue("Intruso S.r.l.", "posta-certificata@"+domain, time.Time{}, time.Time{}, false)
		forger := &build.Provider{Name: "Intruso S.r.l.", Domain: domain, Signer: &smime.Signer{Key: other.Key, Cert: other.Cert, Chain: other.Chain}}
		o, _ := build.ParseOriginal(plain(mario, "x@pec-z.example.test", "firmata da un estraneo"))
		tx := o.Tx(forger.NewIDAt(time.Now()), mario, func(string) daticert.DestTipo { return daticert.Certificato })
		n, err := forger.AvvenutaConsegna(time.Now(), tx, "x@pec-z.example.test", true, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := sendUnix(a.ReinjectAddr, n.MailFrom, []string{mario}, n.Bytes()); err != nil {
			t.Fatal(err)
		}
		if got := wait(t, a, mario, "firmata da un estraneo", 1)[0]; got.Kind != kind.Anomalia {
			t.Fatalf("receipt of an unknown signer delivered as %s", got.Kind)
		}
		for _, addr := range []string{mario, rita} {
			for _, m := range inbox(t, a, addr, "") {
				if m.Kind == kind.AvvenutaConsegna && (strings.Contains(m.Header.Get("Subject"), "ricevuta falsa") || strings.Contains(m.Header.Get("Subject"), "estraneo")) {
					t.Fatalf("%s holds a forged receipt as it came", addr)
				}
			}
		}
	})

	t.Run("kill-after-dovecot-answer", func(t *testing.T) {
		subj := "interrotta dopo il salvataggio"
		px.arm(subj)
		// an envelope of ours as the access point signs it, handed over
		// alone (no acceptance or outbox traffic in flight when the kill
		// comes: those have their own recovery)
		env := pectest.ForgeEnvelope(t, a.Identity, mario, bruno, subj)
		if err := sendUnix(a.ReinjectAddr, a.ServiceAddr(), []string{bruno}, env); err != nil {
			t.Fatal(err)
		}
		select {
		case <-px.killed:
		case <-time.After(60 * time.Second):
			t.Fatal("the proxy never saw Dovecot's answer to the envelope")
		}
		a.StartDeliver()
		wait(t, a, bruno, subj, 1)
		settle(t, a, st)
		count(t, a, bruno, subj, map[kind.Kind]int{kind.PostaCertificata: 1})
		// the outcome is unknown to the delivery point: no receipt that
		// could be false; the take-charge (true either way) once
		count(t, a, mario, subj, map[kind.Kind]int{})
		count(t, a, a.ServiceAddr(), subj, map[kind.Kind]int{kind.PresaInCarico: 1})
		ev, _ := st.Events(store.Query{Type: "consegna-non-confermata", Recipient: bruno})
		if len(ev) != 1 {
			t.Fatalf("log: %+v", ev)
		}
	})

	t.Run("full-store", func(t *testing.T) {
		subj := "disco pieno"
		a.KillDeliver() // Postfix keeps the mail while pecdeliver is away
		if err := a.Send(mario, []string{anna}, plain(mario, anna, subj)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "the acceptance to leave the outbox", func() bool { n, err := st.OutboxDepth(); return err == nil && n == 0 })
		release := fill(t, a.StorePath)
		before := postfixCount(a, anna, "deferred")
		a.StartDeliver()
		// Postfix retries every second or two; every attempt must fail
		// before Dovecot gets the end of the message
		waitFor(t, 60*time.Second, "four more deferred attempts", func() bool { return postfixCount(a, anna, "deferred") >= before+4 })
		for _, addr := range []string{anna, mario} {
			if got := inbox(t, a, addr, subj); len(got) != 0 {
				t.Fatalf("%s holds %d messages while the store is full", addr, len(got))
			}
		}
		if !strings.Contains(a.ProcLog("pecdeliver"), "rcpts=["+anna+"] error=\"intent not recorded: store: claim deliveries: database or disk is full") {
			t.Fatal("pecdeliver did not refuse for want of space")
		}
		release()
		wait(t, a, anna, subj, 1)
		wait(t, a, mario, subj, 2)
		settle(t, a, st)
		count(t, a, anna, subj, map[kind.Kind]int{kind.PostaCertificata: 1})
		count(t, a, mario, subj, map[kind.Kind]int{kind.Accettazione: 1, kind.AvvenutaConsegna: 1})
		count(t, a, a.ServiceAddr(), subj, map[kind.Kind]int{kind.PresaInCarico: 1})
	})

	t.Run("log", func(t *testing.T) {
		if bad, err := st.VerifyLog(); err != nil {
			t.Fatalf("log: row %d: %v", bad, err)
		}
	})
}

// postfixCount counts Postfix's delivery attempts to rcpt that ended
// with status (sent, deferred, bounced).
func postfixCount(p *pectest.Provider, rcpt, status string) int {
	n := 0
	for _, l := range strings.Split(p.Postfix.Log(), "\n") {
		if strings.Contains(l, "to=<"+rcpt+">") && strings.Contains(l, "status="+status) {
			n++
		}
	}
	return n
}

func plain(from, to, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") +
		"@client.example.test>\r\nDate: Mon, 23 Nov 2026 16:04:00 +0100\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nBuongiorno.\r\n")
}

// inbox returns the messages of addr whose Subject contains subject.
func inbox(t *testing.T, p *pectest.Provider, addr, subject string) []*parse.Message {
	t.Helper()
	var out []*parse.Message
	for _, raw := range p.Dovecot.Messages(t, addr) {
		h, _, _ := rawmime.Split(rawmime.CRLF(raw))
		if !strings.Contains(h.Get("Subject"), subject) {
			continue
		}
		m, err := parse.Parse(raw)
		if m == nil {
			t.Fatalf("%s: unparsable message: %v", addr, err)
		}
		m.Content = raw
		out = append(out, m)
	}
	return out
}

// wait waits until addr holds at least n messages about subject.
func wait(t *testing.T, p *pectest.Provider, addr, subject string, n int) []*parse.Message {
	t.Helper()
	var got []*parse.Message
	waitFor(t, 60*time.Second, addr+" to receive "+subject, func() bool {
		got = inbox(t, p, addr, subject)
		return len(got) >= n
	})
	return got
}

// count checks exactly which kinds addr holds about subject.
func count(t *testing.T, p *pectest.Provider, addr, subject string, want map[kind.Kind]int) {
	t.Helper()
	got := map[kind.Kind]int{}
	for _, m := range inbox(t, p, addr, subject) {
		got[m.Kind]++
	}
	if len(got) != len(want) {
		t.Fatalf("%s holds %v about %q, want %v", addr, got, subject, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("%s holds %v about %q, want %v", addr, got, subject, want)
		}
	}
}

// settle waits until Postfix's queue and the outbox are empty and stay so:
// nothing more can arrive. It asks Postfix to retry deferred mail now and
// then: after a lost LMTP connection Postfix may wait longer than the
// test's backoff settings suggest.
func settle(t *testing.T, p *pectest.Provider, st store.Outbox) {
	t.Helper()
	quiet := func() bool {
		n, err := st.OutboxDepth()
		return err == nil && n == 0 && p.Postfix.QueueEmpty()
	}
	for i := 0; i < 2; i++ {
		deadline := time.Now().Add(60 * time.Second)
		for n := 1; !quiet(); n++ {
			if n%10 == 0 {
				p.Postfix.Flush()
			}
			if time.Now().After(deadline) {
				items, _ := st.Pending(100)
				q := p.Postfix.Queue()
				var lines []string
				for _, l := range strings.Split(p.Postfix.Log(), "\n") {
					for _, f := range strings.Fields(q) {
						if len(f) >= 10 && strings.Contains(l, strings.TrimRight(f, "*!")) {
							lines = append(lines, l)
							break
						}
					}
				}
				t.Fatalf("the queue and the outbox did not drain in 60 s:\noutbox %+v\n%s\n%s", items, q, strings.Join(lines, "\n"))
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// fill makes the store's file system full: the write-ahead log is emptied
// (a checkpoint that truncates it, so every commit must allocate again),
// then a file takes every free block. SQLite then fails every commit with
// SQLITE_FULL, as on a full disk; root is no exception on tmpfs. release
// deletes the file.
func fill(t *testing.T, storePath string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", storePath+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitFor(t, 30*time.Second, "a checkpoint that truncates the WAL", func() bool {
		var busy, logPages, done int
		err := db.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
		return err == nil && busy == 0 && logPages == 0
	})
	path := filepath.Join(filepath.Dir(storePath), "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				break
			}
		}
	}
	f.Close()
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// sendUnix sends over SMTP to a unix socket ("unix:/path").
func sendUnix(addr, from string, rcpts []string, raw []byte) error {
	conn, err := net.Dial("unix", strings.TrimPrefix(addr, "unix:"))
	if err != nil {
		return err
	}
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.Hello("localhost"); err != nil {
		return err
	}
	if err := c.SendMail(from, rcpts, bytes.NewReader(raw)); err != nil {
		return err
	}
	return c.Quit()
}

// lmtpSend talks LMTP straight to pecdeliver, as any local process could,
// and returns the reply code per recipient.
func lmtpSend(t *testing.T, addr, from string, rcpts []string, raw []byte) map[string]int {
	t.Helper()
	conn, err := net.Dial("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("intruder.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail(from, nil); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	wc, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write(raw)
	_, err = wc.CloseWithLMTPResponse()
	codes := map[string]int{}
	for _, r := range rcpts {
		codes[r] = 250
	}
	var lerr smtp.LMTPDataError
	if errors.As(err, &lerr) {
		for r, e := range lerr {
			codes[r] = e.Code
		}
	} else if err != nil {
		t.Fatal(err)
	}
	return codes
}

// proxy relays pecdeliver's LMTP connections to Dovecot. Armed with a
// subject, it waits for the transport envelope about it: when Dovecot
// answers the end of its data (the message is stored), the proxy kills
// pecdeliver before the answer reaches it, as a crash at that instant.
type proxy struct {
	addr, dovecot string
	p             *pectest.Provider
	mu            sync.Mutex
	subject       string
	killed        chan struct{}
}

func startProxy(t *testing.T, dovecot string, p *pectest.Provider) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	px := &proxy{addr: ln.Addr().String(), dovecot: dovecot, p: p, killed: make(chan struct{})}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go px.relay(c)
		}
	}()
	return px
}

func (px *proxy) arm(subject string) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.subject = subject
}

func (px *proxy) relay(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", px.dovecot)
	if err != nil {
		return
	}
	defer server.Close()
	var mu sync.Mutex
	var sent bytes.Buffer // what pecdeliver sent in this connection
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				mu.Lock()
				sent.Write(buf[:n])
				mu.Unlock()
				server.Write(buf[:n])
			}
			if err != nil {
				server.Close()
				return
			}
		}
	}()
	r := bufio.NewReader(server)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		mu.Lock()
		s := sent.String()
		mu.Unlock()
		px.mu.Lock()
		subj := px.subject
		hit := subj != "" && strings.Contains(s, "X-Trasporto: posta-certificata") && strings.Contains(s, subj) &&
			strings.Contains(s, "\r\n.\r\n") && strings.HasPrefix(line, "250")
		if hit {
			px.subject = ""
		}
		px.mu.Unlock()
		if hit {
			px.p.KillDeliver()
			close(px.killed)
			return
		}
		if _, err := io.WriteString(client, line); err != nil {
			return
		}
	}
}
