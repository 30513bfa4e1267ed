// Package pectest runs whole PEC providers on loopback for integration
// tests and the demo: for each provider a real Postfix (submission with
// Dovecot SASL and the access milter, port 25 with the incoming milter, a
// milter-free re-injection listener on a unix socket in Postfix's public/
// that takes only posta-certificata@), a real Dovecot, the pecmilter and
// pecdeliver binaries built from this tree, one shared clamd, one test PKI
// and one providers' index listing every provider. Everything is rendered
// into temporary directories and stopped by PID when the test ends.
package pectest

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/open"
)

// Password of every test mailbox.
const Password = "secret"

// World is a set of providers sharing a PKI, an index and clamd.
type World struct {
	t         testing.TB
	Dir       string
	PKI       *testpki.PKI
	RootPEM   string // path of the root certificate
	Clamd     *testenv.Clamd
	Bin       string // directory with pecmilter, pecdeliver, pecctl
	IndexPath string
	Providers []*Provider
	// Ordinary receives mail for every domain that is not a provider's
	// (ordinary Internet mail).
	Ordinary *Sink
}

// Spec describes one provider.
type Spec struct {
	Name    string   // e.g. "Provider A S.p.A."
	Domain  string   // e.g. "pec-a.example.test"
	Domains []string // further managed domains (optional)
	Users   []string // mailbox addresses besides posta-certificata@Domain
	// QuotaUsers get a tiny quota (mailbox full tests).
	QuotaUsers []string
	// Extra TOML appended to the provider's configuration.
	Extra string
	// SinkAll sends every message Postfix would deliver (local ones too)
	// to this sink instead: the access point's output, seen alone. The
	// notices for our own mailboxes then go through Postfix too
	// ([reinject] local = "postfix").
	SinkAll *Sink
	// IndexOnly lists the provider in the index without running it.
	IndexOnly bool
	// PostfixMain are extra main.cf lines for the provider's Postfix.
	PostfixMain []string
	// StoreURL puts the provider's store in PostgreSQL ([store] url)
	// instead of a SQLite file; the nodes of a cluster share it.
	StoreURL string
	// NoServiceUser leaves posta-certificata@Domain out of Dovecot, as
	// an administrator may: pecdeliver keeps its mail in the service
	// maildir (ServiceMaildir).
	NoServiceUser bool
	// StoreDir holds the provider's store instead of its directory (a
	// test mounts a small file system there to fill it).
	StoreDir string
	// ClockMaxError is [signing] clock_max_error; "" is "off": test
	// machines often run no time synchronisation, and the clock guard
	// would make every point refuse to sign.
	ClockMaxError string
	// RequireTLS turns [milter] require_tls_from_providers on (the
	// production default): the other providers' mail must then reach
	// this one over TLS. Off by default: the worlds talk over loopback
	// without TLS.
	RequireTLS bool
}

// ServiceMaildir is where pecdeliver keeps the service address's mail
// that Dovecot refuses (the default [deliver] service_maildir).
func (p *Provider) ServiceMaildir() string { return filepath.Join(p.Dir, "service-mail") }

// Provider is one running provider.
type Provider struct {
	Spec
	w                          *World
	Dir, ConfigPath, StorePath string
	SubmissionAddr, MXAddr     string // Postfix's smtpd listeners, host:port
	// ReinjectAddr is the [reinject] address: "unix:" + Postfix's
	// public/pec-reinject (set once Postfix runs).
	ReinjectAddr string
	// SocketDir holds the milters' and pecdeliver's unix sockets, laid out
	// like /run/pec (group postfix, mode 2750); AccessAddr, IncomingAddr
	// and DeliverAddr are the socket paths in it.
	SocketDir                             string
	AccessAddr, IncomingAddr, DeliverAddr string
	Dovecot                               *testenv.Dovecot
	Postfix                               *testenv.Postfix
	Identity                              *testpki.Provider
	mu                                    sync.Mutex
	procs                                 map[string]*exec.Cmd
	// nodeOf is the provider this is a further node of (AddNode).
	nodeOf *Provider
}

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// binaries builds pecmilter, pecdeliver and pecctl once per test binary.
func binaries(t testing.TB) string {
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "pec-bin-")
		if err != nil {
			buildErr = err
			return
		}
		root := moduleRoot()
		args := []string{"build", "-o", dir + "/"}
		if os.Getenv("PEC_RACE") != "" {
			args = append(args, "-race") // daemons with the race detector: PEC_RACE=1 go test ./integration/...
		}
		cmd := exec.Command("go", append(args, "./cmd/pecmilter", "./cmd/pecdeliver", "./cmd/pecctl")...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
		buildDir = dir
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildDir
}

func moduleRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		p := filepath.Dir(dir)
		if p == dir {
			return "."
		}
		dir = p
	}
}

// NewWorld prepares a world: binaries, PKI for the given domains, clamd,
// a sink for ordinary mail. Add providers with Add, then call Start.
func NewWorld(t testing.TB, domains ...string) *World {
	testenv.Need(t, "postfix", "dovecot", "clamd")
	if os.Geteuid() != 0 {
		t.Skip("Postfix needs root")
	}
	w := &World{t: t, Dir: t.TempDir(), PKI: testpki.New(domains...)}
	w.Bin = binaries(t)
	w.RootPEM = filepath.Join(w.Dir, "root.pem")
	must(t, os.WriteFile(w.RootPEM, testpki.PEM(w.PKI.Root.Cert), 0o644))
	w.Clamd = testenv.StartClamd(t)
	w.Ordinary = StartSink(t)
	return w
}

// Add registers a provider; call Start after adding all of them.
func (w *World) Add(s Spec) *Provider {
	t := w.t
	p := &Provider{Spec: s, w: w, procs: map[string]*exec.Cmd{}}
	p.Dir = filepath.Join(w.Dir, s.Domain)
	must(t, os.MkdirAll(p.Dir, 0o755))
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	p.SubmissionAddr, p.MXAddr = port(), port()
	p.SocketDir = testenv.SocketDir(t)
	p.AccessAddr = filepath.Join(p.SocketDir, "access.sock")
	p.IncomingAddr = filepath.Join(p.SocketDir, "incoming.sock")
	p.DeliverAddr = filepath.Join(p.SocketDir, "lmtp.sock")
	p.Identity = w.PKI.Issue(s.Name, "posta-certificata@"+s.Domain, time.Time{}, time.Time{}, false)
	w.Providers = append(w.Providers, p)
	return p
}

// AddNode registers a further node of provider of (a cluster): its own
// Postfix, pecmilter and pecdeliver, with of's identity, domains and
// store (set Spec.StoreURL), delivering into of's Dovecot (the mailboxes
// are shared). The index and the other providers know of's MX only.
func (w *World) AddNode(of *Provider, name string) *Provider {
	t := w.t
	p := &Provider{Spec: of.Spec, w: w, procs: map[string]*exec.Cmd{}, nodeOf: of, Identity: of.Identity}
	p.Dir = filepath.Join(w.Dir, of.Domain+"-"+name)
	must(t, os.MkdirAll(p.Dir, 0o755))
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	p.SubmissionAddr, p.MXAddr = port(), port()
	p.SocketDir = testenv.SocketDir(t)
	p.AccessAddr = filepath.Join(p.SocketDir, "access.sock")
	p.IncomingAddr = filepath.Join(p.SocketDir, "incoming.sock")
	p.DeliverAddr = filepath.Join(p.SocketDir, "lmtp.sock")
	w.Providers = append(w.Providers, p)
	return p
}

// ServiceAddr is the provider's posta-certificata@ address (its mailReceipt).
func (p *Provider) ServiceAddr() string { return "posta-certificata@" + p.Domain }

func (p *Provider) domains() []string { return append([]string{p.Domain}, p.Domains...) }

// Start writes the index and starts every provider.
func (w *World) Start() {
	w.IndexPath = filepath.Join(w.Dir, "index.ldif")
	w.WriteIndex()
	for _, p := range w.Providers {
		if !p.IndexOnly {
			p.start()
		}
	}
}

// WriteIndex (re)writes the providers' index file: every provider of the
// world plus extra entries.
func (w *World) WriteIndex(extra ...index.TestProvider) {
	var tps []index.TestProvider
	for _, p := range w.Providers {
		if p.nodeOf != nil {
			continue
		}
		tps = append(tps, index.TestProvider{Name: p.Name, MailReceipt: p.ServiceAddr(), Domains: p.domains(),
			Certs: []*x509.Certificate{p.Identity.Cert}})
	}
	must(w.t, os.WriteFile(w.IndexPath, index.TestLDIF(append(tps, extra...)...), 0o644))
}

// Signal sends sig to pecmilter or pecdeliver.
func (p *Provider) Signal(name string, sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cmd := p.procs[name]; cmd != nil && cmd.Process != nil {
		cmd.Process.Signal(sig)
	}
}

func (p *Provider) start() {
	t, w := p.w.t, p.w
	var users []testenv.DovecotUser
	for _, u := range append([]string{p.ServiceAddr()}, p.Users...) {
		if u == p.ServiceAddr() && p.NoServiceUser {
			continue
		}
		users = append(users, testenv.DovecotUser{Addr: u, Password: Password})
	}
	for _, u := range p.QuotaUsers {
		users = append(users, testenv.DovecotUser{Addr: u, Password: Password, QuotaBytes: 1024})
	}
	if p.nodeOf != nil {
		p.Dovecot = p.nodeOf.Dovecot
	} else {
		p.Dovecot = testenv.StartDovecot(t, users)
	}

	cert := filepath.Join(p.Dir, "cert.pem")
	key := filepath.Join(p.Dir, "key.pem")
	must(t, os.WriteFile(cert, testpki.PEM(append([]*x509.Certificate{p.Identity.Cert}, p.Identity.Chain...)...), 0o644))
	must(t, os.WriteFile(key, testpki.KeyPEM(p.Identity.Key), 0o600))
	p.StorePath = filepath.Join(p.Dir, "pec.db")
	if p.StoreDir != "" {
		p.StorePath = filepath.Join(p.StoreDir, "pec.db")
	}
	p.ConfigPath = filepath.Join(p.Dir, "pec.toml")

	// routing: our domains to pecdeliver, other providers to their port 25,
	// everything else to the ordinary-mail sink
	var tm []string
	for _, d := range p.domains() {
		tm = append(tm, d+"=lmtp:unix:"+p.DeliverAddr)
	}
	for _, o := range w.Providers {
		if o.Domain != p.Domain && !o.IndexOnly && o.nodeOf == nil {
			for _, d := range o.domains() {
				tm = append(tm, d+"=smtp:["+host(o.MXAddr)+"]:"+port(o.MXAddr))
			}
		}
	}
	defaultTransport := "smtp:[" + host(w.Ordinary.Addr) + "]:" + port(w.Ordinary.Addr)
	if p.SinkAll != nil {
		// only the access milter's queue confirmation still goes to
		// pecdeliver (filter/queued.go; recipient_delimiter = + makes
		// the table's pec-queued@domain match pec-queued+TOKEN@domain)
		tm = []string{"pec-queued@" + p.Domain + "=lmtp:unix:" + p.DeliverAddr}
		defaultTransport = "smtp:[" + host(p.SinkAll.Addr) + "]:" + port(p.SinkAll.Addr)
	}
	main := []string{
		"relay_domains = " + strings.Join(p.domains(), ", "),
		"default_transport = " + defaultTransport,
		"relay_transport = " + defaultTransport,
		"maximal_queue_lifetime = 1d",
		"bounce_queue_lifetime = 1d",
		"disable_mime_output_conversion = yes",
		"milter_default_action = tempfail",
		"smtpd_delay_reject = yes",
		"lmtp_destination_recipient_limit = 50",
		"recipient_delimiter = +",
		// local submission closed as in postfix-examples/main.cf.pec
		"authorized_submit_users = root",
	}
	if len(tm) > 0 {
		main = append(main, "transport_maps = inline:{ "+strings.Join(tm, ", ")+" }")
	}
	main = append(main, p.PostfixMain...)
	sub := "smtpd -o smtpd_sasl_auth_enable=yes -o smtpd_sasl_type=dovecot -o smtpd_sasl_path=inet:" + p.Dovecot.AuthAddr +
		" -o smtpd_tls_security_level=none -o smtpd_tls_auth_only=no -o smtpd_sasl_security_options=noanonymous" +
		" -o mynetworks=127.0.0.2/32 -o smtpd_relay_restrictions=permit_sasl_authenticated,reject" +
		" -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject" +
		" -o smtpd_milters=unix:" + p.AccessAddr + " -o cleanup_service_name=cleanup-sub"
	mx := "smtpd -o smtpd_milters=unix:" + p.IncomingAddr + " -o mynetworks=127.0.0.2/32" +
		" -o smtpd_relay_restrictions=reject_unauth_destination -o smtpd_recipient_restrictions=reject_unauth_destination"
	// as postfix-examples/master.cf.pec: a unix socket in public/, only
	// posta-certificata@ as sender
	re := "smtpd -o syslog_name=postfix/pec-reinject -o smtpd_milters= -o mynetworks=127.0.0.0/8" +
		" -o smtpd_client_restrictions=permit_mynetworks,reject" +
		" -o smtpd_sender_restrictions=check_sender_access,inline:{" + p.ServiceAddr() + "=OK},reject" +
		" -o smtpd_relay_restrictions=permit_mynetworks,reject -o smtpd_recipient_restrictions=permit_mynetworks,reject"
	p.Postfix = testenv.StartPostfix(t, testenv.PostfixConfig{
		MyHostname: "mx." + p.Domain, MyDomain: p.Domain, Main: main,
		Master: []string{
			p.SubmissionAddr + " inet n - n - - " + sub,
			p.MXAddr + " inet n - n - - " + mx,
			"pec-reinject unix n - n - - " + re,
			// TLS, where a test turns it on (smtpd_tls_*, smtp_tls_*
			// in PostfixMain), needs the TLS manager's entropy
			"tlsmgr unix - - n 1000? 1 tlsmgr",
			// Postfix drops Bcc in cleanup before the milter sees it; keep
			// it on submission so the access point names the exception.
			"cleanup-sub unix n - n - 0 cleanup -o message_drop_headers=content-length",
		},
	})
	sock := filepath.Join(p.Postfix.QueueDir, "public", "pec-reinject")
	if err := waitDial("unix", sock, 15*time.Second); err != nil {
		t.Fatalf("postfix of %s: no re-injection socket: %v", p.Domain, err)
	}
	p.ReinjectAddr = "unix:" + sock
	p.WriteConfig(p.ReinjectAddr)
	p.StartMilter()
	p.StartDeliver()
}

// WriteConfig (re)writes the provider's configuration with the given
// re-injection address (tests point it elsewhere to hold the outbox).
func (p *Provider) WriteConfig(reinject string) {
	w := p.w
	q := func(s string) string { return fmt.Sprintf("%q", s) }
	var doms []string
	for _, d := range p.domains() {
		doms = append(doms, q(d))
	}
	storeKey, storeVal := "path", p.StorePath
	if p.StoreURL != "" {
		storeKey, storeVal = "url", p.StoreURL
	}
	// the service maildir stays in the provider's directory when the
	// store moves (by default it sits next to the store)
	serviceMaildir := ""
	if p.StoreDir != "" {
		serviceMaildir = "service_maildir = " + q(p.ServiceMaildir()) + "\n"
	}
	clock := p.ClockMaxError
	if clock == "" {
		clock = "off"
	}
	// the providers of a test world talk over loopback without TLS
	// unless the test asks (Spec.RequireTLS)
	requireTLS := "off"
	if p.RequireTLS {
		requireTLS = "on"
	}
	// notices for our own mailboxes go straight to pecdeliver, as in
	// production, unless every message must reach the sink through Postfix
	local := "lmtp"
	if p.SinkAll != nil {
		local = "postfix"
	}
	cfg := fmt.Sprintf(`[provider]
name = %s
domain = %s
managed_domains = [%s]

[signing]
certificate = %s
key = %s
trusted_roots = [%s]
clock_max_error = %s

[clamd]
network = "unix"
address = %s
timeout = "20s"

[milter]
access = %s
incoming = %s
require_tls_from_providers = %s

[deliver]
listen = %s
dovecot = %s
%s
[reinject]
address = %s
local = %s

[store]
%s = %s
dir = %s

[index]
ldif = %s
cache_dir = %s
`, q(p.Name), q(p.Domain), strings.Join(doms, ", "), q(filepath.Join(p.Dir, "cert.pem")), q(filepath.Join(p.Dir, "key.pem")),
		q(w.RootPEM), q(clock), q(w.Clamd.Socket), q("unix:"+p.AccessAddr), q("unix:"+p.IncomingAddr), q(requireTLS), q("unix:"+p.DeliverAddr),
		q(p.DovecotLMTP()), serviceMaildir, q(reinject), q(local), storeKey, q(storeVal), q(p.Dir), q(w.IndexPath), q(filepath.Join(p.Dir, "index-cache")))
	must(w.t, os.WriteFile(p.ConfigPath, []byte(cfg+p.Extra), 0o644))
}

// DovecotLMTP is the [deliver] dovecot address of the configuration:
// Dovecot's unix listener, as in a deployment (postfix-examples).
func (p *Provider) DovecotLMTP() string { return "unix:" + p.Dovecot.LMTPSocket }

func host(addr string) string { h, _, _ := strings.Cut(addr, ":"); return h }
func port(addr string) string { _, p, _ := strings.Cut(addr, ":"); return p }

// StartMilter starts pecmilter and waits for both milter listeners.
func (p *Provider) StartMilter() { p.startProc("pecmilter", p.AccessAddr, p.IncomingAddr) }

// StartDeliver starts pecdeliver and waits for its LMTP listener.
func (p *Provider) StartDeliver() { p.startProc("pecdeliver", p.DeliverAddr) }

// KillMilter kills pecmilter with SIGKILL (a crash).
func (p *Provider) KillMilter() { p.stopProc("pecmilter", syscall.SIGKILL) }

// StopMilter stops pecmilter with SIGTERM.
func (p *Provider) StopMilter() { p.stopProc("pecmilter", syscall.SIGTERM) }

// StopDeliver stops pecdeliver with SIGTERM.
func (p *Provider) StopDeliver() { p.stopProc("pecdeliver", syscall.SIGTERM) }

// KillDeliver kills pecdeliver.
func (p *Provider) KillDeliver() { p.stopProc("pecdeliver", syscall.SIGKILL) }

func (p *Provider) startProc(name string, addrs ...string) {
	t := p.w.t
	logf, err := os.OpenFile(filepath.Join(p.Dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	cmd := exec.Command(filepath.Join(p.w.Bin, name), "-config", p.ConfigPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	p.mu.Lock()
	p.procs[name] = cmd
	p.mu.Unlock()
	t.Cleanup(func() {
		p.stopProc(name, syscall.SIGTERM)
		logf.Close()
		if log := p.ProcLog(name); strings.Contains(log, "WARNING: DATA RACE") || strings.Contains(log, "panic:") {
			t.Errorf("%s of %s reported a data race or a panic:\n%s", name, p.Domain, log)
		}
	})
	for _, a := range addrs {
		if err := waitDial("unix", a, 15*time.Second); err != nil {
			t.Fatalf("%s of %s did not listen on %s: %v\n%s", name, p.Domain, a, err, p.ProcLog(name))
		}
	}
}

func (p *Provider) stopProc(name string, sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.procs[name]
	delete(p.procs, name)
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// PID returns the process id of the running pecmilter or pecdeliver, 0
// when it is not running (benchmarks read its CPU and memory in /proc).
func (p *Provider) PID(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cmd := p.procs[name]; cmd != nil && cmd.Process != nil {
		return cmd.Process.Pid
	}
	return 0
}

// ProcLog returns what pecmilter or pecdeliver logged.
func (p *Provider) ProcLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, name+".log"))
	return string(b)
}

// Pecctl runs pecctl with the provider's configuration and returns its
// output and exit code.
func (p *Provider) Pecctl(args ...string) (string, int) {
	cmd := exec.Command(filepath.Join(p.w.Bin, "pecctl"), append(args, "-config", p.ConfigPath)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return string(out), code
}

// Send submits raw as user (AUTH PLAIN) to the provider's submission
// service with the given envelope; it returns the SMTP error, if any.
func (p *Provider) Send(user string, rcpts []string, raw []byte) error {
	return SendAs(p.SubmissionAddr, user, user, rcpts, raw)
}

// SendAs submits with login user and MAIL FROM from.
func SendAs(addr, user, from string, rcpts []string, raw []byte) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		return err
	}
	if user != "" {
		if err := c.Auth(sasl.NewPlainClient("", user, Password)); err != nil {
			return err
		}
	}
	if err := c.SendMail(from, rcpts, bytes.NewReader(raw)); err != nil {
		return err
	}
	return c.Quit()
}

// Store opens the provider's store (read-mostly; closed at cleanup).
func (p *Provider) Store() store.Store {
	cfg := config.Store{Path: p.StorePath}
	if p.StoreURL != "" {
		cfg = config.Store{URL: p.StoreURL}
	}
	st, err := open.Open(context.Background(), cfg)
	must(p.w.t, err)
	p.w.t.Cleanup(func() { st.Close() })
	return st
}

// Mailbox waits for n messages in addr's INBOX.
func (p *Provider) Mailbox(addr string, n int) [][]byte {
	return p.Dovecot.WaitMessages(p.w.t, addr, n, 60*time.Second)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
