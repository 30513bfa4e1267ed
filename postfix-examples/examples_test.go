// Package examples holds the Postfix and Dovecot configuration examples
// (main.cf.pec, master.cf.pec, dovecot/10-pec.conf). This test proves they
// are valid and really work: it renders them with test values, checks them
// with postconf, "postfix check" and "doveconf -n", then runs Postfix and
// Dovecot with them on loopback and drives submission, port 25, the
// re-injection listener and Dovecot LMTP.
package examples

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-milter"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/internal/testpki"
)

const (
	domain   = "pec.example.test"
	password = "secret"
	mario    = "mario.rossi@" + domain
	luigi    = "luigi.verdi@" + domain
	service  = "posta-certificata@" + domain
)

var exampleFiles = []string{"main.cf.pec", "master.cf.pec", "dovecot/10-pec.conf"}

func TestMain(m *testing.M) {
	testenv.HelperMain() // the child of testenv.DialAs
	os.Exit(m.Run())
}

// pecUser stands in for the pec account in the examples' Dovecot: an
// existing account that is neither root, postfix nor nobody.
const pecUser = "daemon"

var placeholderRE = regexp.MustCompile(`@[A-Z][A-Z0-9_]*@`)

// render reads an example and replaces every @NAME@ with vars[NAME]; a
// placeholder left over fails the test.
func render(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for k, v := range vars {
		s = strings.ReplaceAll(s, "@"+k+"@", v)
	}
	if left := placeholderRE.FindAllString(s, -1); len(left) > 0 {
		t.Fatalf("%s: placeholders not replaced: %v", name, left)
	}
	return s
}

// mainLines returns the parameter lines of a rendered main.cf (comments and
// blank lines dropped, continuation lines joined).
func mainLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#"):
		case (l[0] == ' ' || l[0] == '\t') && len(out) > 0:
			out[len(out)-1] += " " + strings.TrimSpace(l)
		default:
			out = append(out, l)
		}
	}
	return out
}

// TestPlaceholders: every placeholder used in the examples is documented
// in README.md's table, and every documented one is used.
func TestPlaceholders(t *testing.T) {
	used := map[string][]string{}
	for _, f := range exampleFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range placeholderRE.FindAllString(string(b), -1) {
			used[p] = append(used[p], f)
		}
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "| `@") {
			cell := strings.SplitN(l, "|", 3)[1]
			for _, p := range placeholderRE.FindAllString(cell, -1) {
				documented[p] = true
			}
		}
	}
	for p, files := range used {
		if !documented[p] {
			t.Errorf("%s (used in %v) is not in README.md's placeholder table", p, files)
		}
	}
	for p := range documented {
		if used[p] == nil {
			t.Errorf("README.md documents %s, which no example uses", p)
		}
	}
	if len(used) < 10 {
		t.Errorf("only %d placeholders found: %v", len(used), used)
	}
}

// TestProductionValues: the production values in README.md's placeholder
// table agree with pec.toml.example (milters, LMTP, re-injection, domain).
func TestProductionValues(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	prod := map[string]string{}
	tick := regexp.MustCompile("`([^`]*)`")
	for _, l := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(l, "| `@") {
			continue
		}
		cells := strings.Split(l, "|")
		if len(cells) < 6 {
			t.Fatalf("README row %q: want 4 columns", l)
		}
		names := placeholderRE.FindAllString(cells[1], -1)
		vals := tick.FindAllStringSubmatch(cells[4], -1)
		for i, n := range names {
			if i >= len(vals) {
				t.Fatalf("README row %q: no production value for %s", l, n)
			}
			prod[strings.Trim(n, "@")] = vals[i][1]
		}
	}
	cfg, err := config.Load("../pec.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"MILTER_ACCESS":   cfg.Milter.Access,
		"MILTER_INCOMING": cfg.Milter.Incoming,
		"DELIVER_LMTP":    cfg.Deliver.Listen,
		"PEC_DOMAIN":      cfg.Provider.Domain,
		"PEC_DOMAINS":     strings.Join(cfg.Provider.ManagedDomains, ", "),
	} {
		if prod[k] != want {
			t.Errorf("README: @%s@ = %q in production, pec.toml.example says %q", k, prod[k], want)
		}
	}
	// Debian's Dovecot base_dir is /run/dovecot; 10-pec.conf restricts its
	// "lmtp" socket to @PEC_USER@
	if want := "unix:/run/dovecot/lmtp"; cfg.Deliver.Dovecot != want {
		t.Errorf("pec.toml.example [deliver] dovecot = %q, want 10-pec.conf's socket %q", cfg.Deliver.Dovecot, want)
	}
	if want := "unix:" + prod["POSTFIX_SPOOL"] + "/public/pec-reinject"; cfg.Reinject.Address != want {
		t.Errorf("pec.toml.example [reinject] address = %q, want master.cf.pec's socket %q", cfg.Reinject.Address, want)
	}
	if prod["PEC_USER"] != "pec" {
		t.Errorf("README: @PEC_USER@ = %q in production, the package's account is pec", prod["PEC_USER"])
	}
	// no TCP listener: on TCP any local process could ask for a signature
	// (milters), deliver past the delivery point (LMTP) or relay unchecked
	// (re-injection)
	for name, spec := range map[string]string{
		"[milter] access": cfg.Milter.Access, "[milter] incoming": cfg.Milter.Incoming,
		"[deliver] listen": cfg.Deliver.Listen, "[deliver] dovecot": cfg.Deliver.Dovecot,
		"[reinject] address": cfg.Reinject.Address,
	} {
		if network, addr, err := config.SplitAddr(spec); err != nil || network != "unix" {
			t.Errorf("pec.toml.example %s = %q, want a unix socket", name, spec)
		} else if name != "[reinject] address" && name != "[deliver] dovecot" && filepath.Dir(addr) != "/run/pec" {
			t.Errorf("pec.toml.example %s = %q: the package's socket directory is /run/pec", name, spec)
		}
	}
}

// TestRules checks that the settings PEC-SPEC §6.6 asks for are present.
func TestRules(t *testing.T) {
	b, err := os.ReadFile("main.cf.pec")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, l := range mainLines(string(b)) {
		k, v, _ := strings.Cut(l, "=")
		have[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	for k, want := range map[string]string{
		"maximal_queue_lifetime":         "1d",
		"bounce_queue_lifetime":          "1d",
		"relay_recipient_maps":           "",
		"disable_mime_output_conversion": "yes",
		"milter_default_action":          "tempfail",
		"smtpd_milters":                  "",
		"non_smtpd_milters":              "",
		"smtpd_tls_security_level":       "may",
		"authorized_submit_users":        "root",
		"relay_transport":                "pec-lmtp:@DELIVER_LMTP@",
	} {
		if v, ok := have[k]; !ok || v != want {
			t.Errorf("main.cf.pec: %s = %q (set: %v), want %q", k, v, ok, want)
		}
	}
	m, err := os.ReadFile("master.cf.pec")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"-o smtpd_tls_security_level=encrypt", "-o smtpd_tls_auth_only=yes",
		"-o smtpd_milters=@MILTER_ACCESS@", "-o smtpd_milters=@MILTER_INCOMING@",
		"-o cleanup_service_name=cleanup-sub", "-o message_drop_headers=content-length",
		"-o smtpd_sasl_type=dovecot", "-o smtpd_sasl_path=private/auth",
		"pec-reinject unix n ", "-o smtpd_sender_restrictions=check_sender_access,inline:{posta-certificata@@PEC_DOMAIN@=OK},reject",
		"pec-lmtp  unix  -       -       n ",
	} {
		if !strings.Contains(string(m), s) {
			t.Errorf("master.cf.pec lacks %q", s)
		}
	}
	if strings.Contains(string(m), "reject_sender_login_mismatch") && !strings.Contains(string(m), "Do not add reject_sender_login_mismatch") {
		t.Error("master.cf.pec must not reject sender/login mismatches (the access milter sends a notice)")
	}
	// the only inet services are the two public ones
	for _, l := range mainLines(string(m)) {
		if f := strings.Fields(l); len(f) > 1 && f[1] == "inet" && f[0] != "@SUBMISSION_LISTEN@" && f[0] != "@SMTP_LISTEN@" {
			t.Errorf("master.cf.pec has an inet service besides submission and port 25: %q", l)
		}
	}
	d, err := os.ReadFile("dovecot/10-pec.conf")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(d), "inet_listener lmtp") || !strings.Contains(string(d), "unix_listener lmtp {\n    mode = 0600\n    user = @PEC_USER@") {
		t.Error("10-pec.conf: Dovecot's LMTP must be a unix socket for @PEC_USER@ only (mode 0600), with no inet listener")
	}
}

// ---------------------------------------------------------------------------
// helpers: commands, certificate, users
// ---------------------------------------------------------------------------

func look(t *testing.T, cmd string) string {
	t.Helper()
	testenv.Need(t, cmd)
	for _, p := range []string{cmd, "/usr/sbin/" + cmd, "/sbin/" + cmd} {
		if q, err := exec.LookPath(p); err == nil {
			return q
		}
	}
	t.Skipf("not installed: %s", cmd)
	return ""
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: Postfix refuses other users (\"the postfix command is reserved for the superuser\")")
	}
}

// runTTY runs a command under script(1): Postfix prints errors only to a
// terminal or syslog, and this machine has no /dev/log
// (RUNNING-REAL-COMPONENTS.md §2.5).
func runTTY(t *testing.T, argv ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var cmd *exec.Cmd
	if s, err := exec.LookPath("script"); err == nil {
		cmd = exec.CommandContext(ctx, s, "-qec", strings.Join(argv, " "), "/dev/null")
	} else {
		cmd = exec.CommandContext(ctx, argv[0], argv[1:]...)
	}
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return strings.ReplaceAll(string(out), "\r\n", "\n"), err
}

// complaintRE matches what Postfix and Dovecot print for a problem
// ("postconf: warning: ...", "doveconf: Fatal: ...", "Error: ...").
var complaintRE = regexp.MustCompile(`(?i)\b(warning|fatal|error|panic):`)

// quiet fails the test when a command failed or printed a warning or error.
func quiet(t *testing.T, what, out string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v\n%s", what, err, out)
	}
	for _, l := range strings.Split(out, "\n") {
		if complaintRE.MatchString(l) {
			t.Errorf("%s: %s", what, l)
		}
	}
}

// shortDir makes a 0755 temp dir with a short path (unix socket paths are
// limited to 108 bytes; daemons that drop privileges must traverse it).
func shortDir(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// mailUser is the owner of the test Maildirs: nobody as root (Dovecot
// refuses uid 0 for mail), else ourselves.
func mailUser(t *testing.T) (u *user.User, group string) {
	t.Helper()
	var err error
	if os.Geteuid() == 0 {
		u, err = user.Lookup("nobody")
	} else {
		u, err = user.LookupId(strconv.Itoa(os.Geteuid()))
	}
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	return u, g.Name
}

// dovecotVars are the 10-pec.conf values of a test instance rooted in dir.
func dovecotVars(t *testing.T, dir, spool string, quota string) map[string]string {
	u, g := mailUser(t)
	return map[string]string{
		"PEC_DOMAIN":    domain,
		"POSTFIX_SPOOL": spool,
		"PEC_USER":      pecUser,
		"DOVECOT_USERS": filepath.Join(dir, "users"),
		"VMAIL_USER":    u.Username,
		"VMAIL_GROUP":   g,
		"MAIL_ROOT":     filepath.Join(dir, "mail"),
		"MAILBOX_QUOTA": quota,
	}
}

// dovecotBase is the test-only part of a minimal dovecot.conf that
// includes 10-pec.conf: private paths and no IMAP/SSL.
func dovecotBase(dir string) string {
	return fmt.Sprintf(`protocols = lmtp
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = %[2]s
log_path = %[1]s/dovecot.log
info_log_path = %[1]s/dovecot.log
ssl = no
!include %[1]s/10-pec.conf
`, dir, filepath.Base(dir))
}

func doveconf(t *testing.T, conf string) string {
	t.Helper()
	bin := look(t, "doveconf")
	out, err := exec.Command(bin, "-n", "-c", conf).CombinedOutput()
	quiet(t, "doveconf -n -c "+conf, string(out), err)
	return string(out)
}

// TestDoveconf validates 10-pec.conf with doveconf, both merged into a copy
// of Debian's stock /etc/dovecot (with auth-system.conf.ext disabled as
// README.md says) and in a minimal dovecot.conf.
func TestDoveconf(t *testing.T) {
	look(t, "doveconf")
	t.Run("minimal", func(t *testing.T) {
		dir := shortDir(t, "pec-dc-")
		vars := dovecotVars(t, dir, "/var/spool/postfix", "2G")
		write(t, filepath.Join(dir, "10-pec.conf"), render(t, "dovecot/10-pec.conf", vars), 0o644)
		write(t, filepath.Join(dir, "dovecot.conf"), dovecotBase(dir), 0o644)
		out := doveconf(t, filepath.Join(dir, "dovecot.conf"))
		for _, want := range []string{
			"unix_listener /var/spool/postfix/private/auth", "unix_listener lmtp {\n    mode = 0600\n    user = " + pecUser,
			"quota = maildir:User quota", "quota_rule = *:storage=2G", "mail_plugins = \" quota\"",
			"driver = passwd-file", "postmaster_address = postmaster@" + domain,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("doveconf -n lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("debian-stock", func(t *testing.T) {
		if _, err := os.Stat("/etc/dovecot/dovecot.conf"); err != nil {
			t.Skip("no stock /etc/dovecot/dovecot.conf")
		}
		if os.Geteuid() != 0 {
			t.Skip("needs root: the stock config reads /etc/dovecot/private")
		}
		dir := shortDir(t, "pec-dcs-")
		if out, err := exec.Command("cp", "-a", "/etc/dovecot", dir+"/").CombinedOutput(); err != nil {
			t.Fatalf("cp: %v\n%s", err, out)
		}
		etc := filepath.Join(dir, "dovecot")
		auth := filepath.Join(etc, "conf.d", "10-auth.conf")
		b, err := os.ReadFile(auth)
		if err != nil {
			t.Fatal(err)
		}
		b = regexp.MustCompile(`(?m)^!include auth-system\.conf\.ext`).ReplaceAll(b, []byte("#$0"))
		write(t, auth, string(b), 0o644)
		vars := dovecotVars(t, dir, "/var/spool/postfix", "2G")
		write(t, filepath.Join(etc, "conf.d", "10-pec.conf"), render(t, "dovecot/10-pec.conf", vars), 0o644)
		out := doveconf(t, filepath.Join(etc, "dovecot.conf"))
		for _, want := range []string{
			"unix_listener /var/spool/postfix/private/auth", "mode = 0600\n    user = " + pecUser, "mail_location = maildir:~/Maildir",
			"quota = maildir:User quota", "driver = passwd-file",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("doveconf -n lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "driver = pam") {
			t.Errorf("the PAM passdb is still there:\n%s", out)
		}
	})
}

// postfixVars are main.cf.pec's and master.cf.pec's test values.
func postfixVars(cert, key string, deliverLMTP, sub, mx, access, incoming string) map[string]string {
	return map[string]string{
		"PEC_DOMAINS":       domain,
		"DELIVER_LMTP":      deliverLMTP,
		"TLS_CERT":          cert,
		"TLS_KEY":           key,
		"SUBMISSION_LISTEN": sub,
		"SMTP_LISTEN":       mx,
		"PEC_DOMAIN":        domain,
		"MILTER_ACCESS":     access,
		"MILTER_INCOMING":   incoming,
	}
}

// TestPostfixStockDebian applies the examples to Debian's stock master.cf
// the way README.md says (stock "smtp inet" line commented out) and lints
// the result with postconf (unknown or unused parameters are warnings);
// as root it also runs "postfix -c DIR check".
func TestPostfixStockDebian(t *testing.T) {
	postconf := look(t, "postconf")
	stock, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Skip("no stock /etc/postfix/master.cf")
	}
	dir := shortDir(t, "pec-pfs-")
	conf, queue, data := filepath.Join(dir, "conf"), filepath.Join(dir, "queue"), filepath.Join(dir, "data")
	for _, d := range []string{conf, queue, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if u, err := user.Lookup("postfix"); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(data, uid, gid)
	}
	cert, key := testpki.ServerTLS(t, dir, "tls-", "mx."+domain)
	vars := postfixVars(cert, key, "unix:/run/pec/lmtp.sock", "submission", "smtp",
		"unix:/run/pec/access.sock", "unix:/run/pec/incoming.sock")

	// Sandbox paths only; everything else is Postfix's default plus ours.
	base := fmt.Sprintf("compatibility_level = 3.6\nconfig_directory = %s\nqueue_directory = %s\ndata_directory = %s\n"+
		"maillog_file_prefixes = %s\nmaillog_file = %s/maillog\ninet_interfaces = loopback-only\ninet_protocols = ipv4\n"+
		"myhostname = mx.%s\nmydomain = %s\nalias_maps =\nalias_database =\n", conf, queue, data, dir, dir, domain, domain)
	write(t, filepath.Join(conf, "main.cf"), base+render(t, "main.cf.pec", vars), 0o644)

	smtpLine := regexp.MustCompile(`(?m)^smtp\s+inet\s.*$`)
	if !smtpLine.Match(stock) {
		t.Fatalf("stock master.cf has no \"smtp inet\" line:\n%s", stock)
	}
	master := smtpLine.ReplaceAllString(string(stock), "#$0") + "\n" + render(t, "master.cf.pec", vars)
	write(t, filepath.Join(conf, "master.cf"), master, 0o644)

	out, err := exec.Command(postconf, "-c", conf, "-n").CombinedOutput()
	quiet(t, "postconf -n", string(out), err)
	for _, want := range []string{"relay_recipient_maps =", "maximal_queue_lifetime = 1d", "relay_transport = pec-lmtp:unix:/run/pec/lmtp.sock",
		"authorized_submit_users = root"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("postconf -n lacks %q", want)
		}
	}
	out, err = exec.Command(postconf, "-c", conf, "-M").CombinedOutput()
	quiet(t, "postconf -M", string(out), err)
	for _, want := range []string{"submission inet", "smtp       inet", "pec-reinject unix n", "pec-lmtp unix - - n", "cleanup-sub unix"} {
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("postconf -M lacks %q:\n%s", want, out)
		}
	}
	// -P lists the -o overrides; postconf warns about unknown ones.
	out, err = exec.Command(postconf, "-c", conf, "-P").CombinedOutput()
	quiet(t, "postconf -P", string(out), err)
	for _, want := range []string{
		"submission/inet/smtpd_milters = unix:/run/pec/access.sock",
		"smtp/inet/smtpd_milters = unix:/run/pec/incoming.sock",
		"cleanup-sub/unix/message_drop_headers = content-length",
		"pec-reinject/unix/smtpd_milters =",
		"pec-reinject/unix/smtpd_sender_restrictions = check_sender_access,inline:{posta-certificata@" + domain + "=OK},reject",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("postconf -P lacks %q:\n%s", want, out)
		}
	}

	if os.Geteuid() != 0 {
		t.Log("not root: skipping \"postfix check\" (the postfix command is reserved for the superuser)")
		return
	}
	out2, err := runTTY(t, look(t, "postfix"), "-c", conf, "check")
	quiet(t, "postfix check", out2, err)
}

// ---------------------------------------------------------------------------
// a stand-in for pecmilter
// ---------------------------------------------------------------------------

type milterEvents struct {
	sessions int
	auth     []string // {auth_authen} at MAIL FROM
	rcpts    []string
	headers  []string // header names, in order
}

type milterLog struct {
	mu sync.Mutex
	milterEvents
}

func (l *milterLog) snapshot() milterEvents {
	l.mu.Lock()
	defer l.mu.Unlock()
	return milterEvents{sessions: l.sessions, auth: append([]string(nil), l.auth...),
		rcpts: append([]string(nil), l.rcpts...), headers: append([]string(nil), l.headers...)}
}

type testMilter struct {
	milter.NoOpMilter
	role string
	log  *milterLog
}

func (m *testMilter) Connect(host, family string, port uint16, addr net.IP, mod *milter.Modifier) (milter.Response, error) {
	m.log.mu.Lock()
	m.log.sessions++
	m.log.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *testMilter) MailFrom(from string, mod *milter.Modifier) (milter.Response, error) {
	m.log.mu.Lock()
	m.log.auth = append(m.log.auth, mod.Macros["{auth_authen}"])
	m.log.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *testMilter) RcptTo(rcpt string, mod *milter.Modifier) (milter.Response, error) {
	m.log.mu.Lock()
	m.log.rcpts = append(m.log.rcpts, rcpt)
	m.log.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *testMilter) Header(name, value string, mod *milter.Modifier) (milter.Response, error) {
	m.log.mu.Lock()
	m.log.headers = append(m.log.headers, name)
	m.log.mu.Unlock()
	return milter.RespContinue, nil
}

func (m *testMilter) Body(mod *milter.Modifier) (milter.Response, error) {
	if err := mod.AddHeader("X-Pec-Example-Milter", m.role); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// startMilter serves an accept-everything milter on the unix socket
// sockDir/ROLE.sock, made by config.Listen as pecmilter makes it, and
// returns its Postfix address ("unix:/..."), its log and a stop function
// (also run at cleanup).
func startMilter(t *testing.T, sockDir, role string) (string, *milterLog, func()) {
	spec := "unix:" + filepath.Join(sockDir, role+".sock")
	ln, err := config.Listen(spec)
	if err != nil {
		t.Fatal(err)
	}
	l := &milterLog{}
	s := &milter.Server{
		NewMilter: func() milter.Milter { return &testMilter{role: role, log: l} },
		Actions:   milter.OptAddHeader,
	}
	go s.Serve(ln)
	var once sync.Once
	stop := func() { once.Do(func() { s.Close() }) }
	t.Cleanup(stop)
	return spec, l, stop
}

// startLMTPProxy stands in for pecdeliver: a unix socket made by
// config.Listen (as pecdeliver makes it) whose connections are passed
// byte for byte to the unix socket *target once it is set (Dovecot's LMTP,
// which only the pec account may use: this process runs as root).
func startLMTPProxy(t *testing.T, sockDir string, target *atomic.Pointer[string]) string {
	spec := "unix:" + filepath.Join(sockDir, "lmtp.sock")
	ln, err := config.Listen(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			to := ""
			if p := target.Load(); p != nil {
				to = *p
			}
			d, err := net.Dial("unix", to)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(d, c); d.(*net.UnixConn).CloseWrite() }()
			go func() { io.Copy(c, d); c.Close(); d.Close() }()
		}
	}()
	return spec
}

// ---------------------------------------------------------------------------
// Dovecot with 10-pec.conf
// ---------------------------------------------------------------------------

type dovecot struct {
	dir, lmtp, authSock string // lmtp: the LMTP socket, base_dir/lmtp
}

// startDovecot runs Dovecot (as root) with a minimal dovecot.conf that
// includes the rendered 10-pec.conf: LMTP on the socket base_dir/lmtp for
// pecUser only, the SASL socket in the Postfix spool, the given default
// quota.
func startDovecot(t *testing.T, spool string, quota string) *dovecot {
	t.Helper()
	bin := look(t, "dovecot")
	dir := shortDir(t, "pec-dv-")
	vars := dovecotVars(t, dir, spool, quota)
	u, _ := mailUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "mail"), uid, gid); err != nil {
		t.Fatal(err)
	}
	var users strings.Builder
	for _, a := range []string{mario, luigi, service} {
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::::\n", a, password)
	}
	write(t, vars["DOVECOT_USERS"], users.String(), 0o644)
	write(t, filepath.Join(dir, "10-pec.conf"), render(t, "dovecot/10-pec.conf", vars), 0o644)
	conf := filepath.Join(dir, "dovecot.conf")
	write(t, conf, dovecotBase(dir), 0o644)
	doveconf(t, conf)

	d := &dovecot{dir: dir, lmtp: filepath.Join(dir, "run", "lmtp"), authSock: filepath.Join(spool, "private", "auth")}
	out, err := os.Create(filepath.Join(dir, "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-c", conf) // -F: the child is the master; we stop it by its PID
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			t.Logf("dovecot.log:\n%s", b)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err1 := net.DialTimeout("unix", d.lmtp, time.Second)
		if err1 == nil {
			c.Close()
		}
		_, err2 := os.Stat(d.authSock)
		if err1 == nil && err2 == nil {
			break
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(dir, "dovecot.out"))
			t.Fatalf("dovecot exited at startup:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dovecot: LMTP %v, auth socket %v", err1, err2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

// inbox returns the messages in addr's Maildir, oldest first.
func (d *dovecot) inbox(addr string) []string {
	local, dom, _ := strings.Cut(addr, "@")
	var names []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(d.dir, "mail", dom, local, "Maildir", sub))
		for _, e := range ents {
			names = append(names, filepath.Join(sub, e.Name()))
		}
	}
	sort.Slice(names, func(i, j int) bool { return filepath.Base(names[i]) < filepath.Base(names[j]) })
	var msgs []string
	for _, n := range names {
		if b, err := os.ReadFile(filepath.Join(d.dir, "mail", dom, local, "Maildir", n)); err == nil {
			msgs = append(msgs, string(b))
		}
	}
	return msgs
}

// waitInbox waits until a message containing substr is in addr's Maildir.
func (d *dovecot) waitInbox(t *testing.T, pf *testenv.Postfix, addr, substr string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range d.inbox(addr) {
			if strings.Contains(m, substr) {
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message with %q for %s after 30s; queue:\n%s\nmaillog:\n%s", substr, addr, pf.Queue(), pf.Log())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// the real run
// ---------------------------------------------------------------------------

func smtpCode(err error) int {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

func message(from, to, subject string, extra ...string) string {
	h := []string{"From: " + from, "To: " + to, "Subject: " + subject,
		"Date: " + time.Now().Format(time.RFC1123Z), "Message-ID: <" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@client.example.test>"}
	h = append(h, extra...)
	return strings.Join(h, "\r\n") + "\r\n\r\nCiao dal test degli esempi.\r\n"
}

func send(c *smtp.Client, from string, rcpts []string, msg string) error {
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	return w.Close()
}

var tlsConf = &tls.Config{InsecureSkipVerify: true, ServerName: "mx." + domain} // the throwaway self-signed certificate

// TestRealPostfixDovecot runs Postfix with main.cf.pec + master.cf.pec and
// Dovecot with 10-pec.conf (Dovecot LMTP stands in for pecdeliver, two
// go-milter servers for pecmilter's two roles) and checks what README.md
// promises.
func TestRealPostfixDovecot(t *testing.T) {
	look(t, "postfix")
	look(t, "dovecot")
	look(t, "doveconf")
	needRoot(t)

	dir := shortDir(t, "pec-ex-")
	cert, key := testpki.ServerTLS(t, dir, "tls-", "mx."+domain)
	port := func() string { return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)) }
	subAddr, mxAddr := port(), port()
	// /run/pec as packaged: group postfix, mode 2750; the stand-ins for
	// pecmilter and pecdeliver listen there through config.Listen
	sockDir := testenv.SocketDir(t)
	accessSpec, accessLog, _ := startMilter(t, sockDir, "access")
	incomingSpec, incomingLog, stopIncoming := startMilter(t, sockDir, "incoming")
	// Dovecot starts after Postfix (its SASL socket goes into the Postfix
	// spool); the pecdeliver stand-in passes LMTP on once it is there.
	var dovecotLMTP atomic.Pointer[string]
	deliverSpec := startLMTPProxy(t, sockDir, &dovecotLMTP)
	vars := postfixVars(cert, key, deliverSpec, subAddr, mxAddr, accessSpec, incomingSpec)
	master := strings.Split(render(t, "master.cf.pec", vars), "\n")
	// Debian's stock master.cf has tlsmgr (TLS session cache and PRNG); the
	// testenv base does not.
	master = append(master, "tlsmgr unix - - n 1000? 1 tlsmgr")
	// another provider's domain, whose mail the sandbox discards (the
	// base's default_transport refuses every other domain)
	main := append(mainLines(render(t, "main.cf.pec", vars)), "transport_maps = inline:{ pec.other.example.test=discard:sandbox }")
	pf := testenv.StartPostfix(t, testenv.PostfixConfig{
		MyHostname: "mx." + domain, MyDomain: domain, Main: main, Master: master,
	})
	out, err := runTTY(t, look(t, "postfix"), "-c", pf.ConfDir, "check")
	quiet(t, "postfix check", out, err)

	dv := startDovecot(t, pf.QueueDir, "20K")
	dovecotLMTP.Store(&dv.lmtp)
	// Postfix makes the re-injection socket in public/ at start-up
	reSock := filepath.Join(pf.QueueDir, "public", "pec-reinject")
	if _, err := os.Stat(reSock); err != nil {
		t.Fatalf("no re-injection socket: %v", err)
	}

	t.Run("submission requires STARTTLS before AUTH", func(t *testing.T) {
		c, err := smtp.Dial(subAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("client.example.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Error("submission does not offer STARTTLS")
		}
		if ok, p := c.Extension("AUTH"); ok {
			t.Errorf("submission offers AUTH %s before TLS", p)
		}
		if err := c.Mail(mario, nil); err == nil || smtpCode(err) != 530 {
			t.Errorf("MAIL before STARTTLS: %v, want 530", err)
		}
		// last: after a failed AUTH go-smtp sends "*", and Postfix hangs up
		if err := c.Auth(sasl.NewPlainClient("", mario, password)); err == nil || smtpCode(err)/100 != 5 {
			t.Errorf("AUTH before STARTTLS: %v, want a 5xx", err)
		}
	})

	t.Run("submission with AUTH over STARTTLS", func(t *testing.T) {
		c, err := smtp.DialStartTLS(subAddr, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if !c.SupportsAuth("PLAIN") {
			t.Fatal("no AUTH PLAIN after STARTTLS")
		}
		if st, ok := c.TLSConnectionState(); !ok || st.Version < tls.VersionTLS12 {
			t.Fatalf("TLS state %v %x, want TLS >= 1.2", ok, st.Version)
		}
		if err := c.Auth(sasl.NewPlainClient("", mario, password)); err != nil {
			t.Fatalf("AUTH PLAIN: %v", err)
		}
		msg := message(mario, luigi, "esempio submission", "Bcc: "+service)
		if err := send(c, mario, []string{luigi}, msg); err != nil {
			t.Fatalf("sending: %v", err)
		}
		c.Quit()
		got := dv.waitInbox(t, pf, luigi, "esempio submission")
		if !strings.Contains(got, "X-Pec-Example-Milter: access") {
			t.Errorf("delivered message did not pass the access milter:\n%s", got)
		}
		l := accessLog.snapshot()
		if len(l.auth) == 0 || l.auth[len(l.auth)-1] != mario {
			t.Errorf("access milter saw {auth_authen} %q, want %s", l.auth, mario)
		}
		bcc := false
		for _, h := range l.headers {
			bcc = bcc || strings.EqualFold(h, "Bcc")
		}
		if !bcc {
			t.Errorf("access milter did not see the Bcc header (cleanup-sub): headers %v", l.headers)
		}
		// (the incoming milter has seen connections: the listener probes at startup)
		if s := incomingLog.snapshot(); len(s.auth) != 0 || contains(s.rcpts, luigi) {
			t.Errorf("the incoming milter saw the submission: %+v", s)
		}
	})

	// After the good login: Dovecot delays logins from an address that just
	// failed one (auth penalty).
	t.Run("submission wrong password", func(t *testing.T) {
		c, err := smtp.DialStartTLS(subAddr, tlsConf)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Auth(sasl.NewPlainClient("", mario, "wrong")); err == nil || smtpCode(err) != 535 {
			t.Errorf("AUTH with a wrong password: %v, want 535", err)
		}
	})

	t.Run("port 25", func(t *testing.T) {
		c, err := smtp.Dial(mxAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Hello("mx.other.example.test"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Error("port 25 does not advertise STARTTLS (RFC 6109 §5.3)")
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("port 25 offers AUTH")
		}
		// plain connections are accepted; unknown PEC recipients too (decided at delivery)
		if err := c.Mail("someone@other.example.test", nil); err != nil {
			t.Fatalf("MAIL on plain port 25: %v", err)
		}
		if err := c.Rcpt("nobody@"+domain, nil); err != nil {
			t.Errorf("unknown recipient of a PEC domain refused at RCPT: %v", err)
		}
		if err := c.Rcpt("someone@elsewhere.example.test", nil); err == nil || smtpCode(err)/100 != 5 {
			t.Errorf("relaying to another domain: %v, want a 5xx", err)
		}
		c.Reset()
		c.Quit()
		if l := incomingLog.snapshot(); l.sessions == 0 || !contains(l.rcpts, "nobody@"+domain) {
			t.Errorf("incoming milter log %+v", l)
		}

		tc, err := smtp.DialStartTLS(mxAddr, tlsConf)
		if err != nil {
			t.Fatalf("STARTTLS on port 25: %v", err)
		}
		defer tc.Close()
		if _, ok := tc.TLSConnectionState(); !ok {
			t.Error("no TLS after STARTTLS on port 25")
		}
		if err := tc.Mail("someone@other.example.test", nil); err != nil {
			t.Errorf("MAIL over TLS on port 25: %v", err)
		}
	})

	t.Run("re-injection without milters", func(t *testing.T) {
		before := accessLog.snapshot().sessions + incomingLog.snapshot().sessions
		c := dialSMTP(t, "unix", reSock)
		if ok, _ := c.Extension("STARTTLS"); ok {
			t.Error("re-injection offers STARTTLS")
		}
		if err := send(c, service, []string{luigi}, message(service, luigi, "esempio reinject")); err != nil {
			t.Fatalf("re-injection: %v", err)
		}
		c.Quit()
		got := dv.waitInbox(t, pf, luigi, "esempio reinject")
		if strings.Contains(got, "X-Pec-Example-Milter") {
			t.Errorf("re-injected message passed a milter:\n%s", got)
		}
		if after := accessLog.snapshot().sessions + incomingLog.snapshot().sessions; after != before {
			t.Errorf("milter sessions %d -> %d during re-injection", before, after)
		}
	})

	// The re-injection listener has no milter: it must relay nothing for
	// anyone but posta-certificata@, whatever the recipient.
	t.Run("re-injection takes only posta-certificata@", func(t *testing.T) {
		c := dialSMTP(t, "unix", reSock)
		for _, tc := range []struct{ from, rcpt string }{
			{mario, luigi}, // one of our users, to a PEC mailbox
			{"someone@elsewhere.example.test", luigi}, // a stranger
			{"", luigi},                               // the null sender
			{"postmaster@" + domain, luigi},           // another address of our domain
			{mario, "someone@elsewhere.example.test"}, // relaying to another domain
			{"someone@elsewhere.example.test", "other@elsewhere.example.test"},
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
		// our notices go anywhere: other providers' mailReceipt, senders
		// of other domains
		if err := c.Mail(service, nil); err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{luigi, "posta-certificata@pec.other.example.test"} {
			if err := c.Rcpt(r, nil); err != nil {
				t.Errorf("re-injection from %s to %s: %v", service, r, err)
			}
		}
		c.Reset()
		c.Quit()
		if l := pf.Log(); !strings.Contains(l, "postfix/pec-reinject/smtpd") || !strings.Contains(l, "Sender address rejected") {
			t.Errorf("maillog does not show the re-injection listener refusing senders:\n%s", l)
		}
	})

	// Who can connect to what, as the kernel decides it: Postfix's user to
	// the milters and to pecdeliver, pec to Dovecot's LMTP and to the
	// re-injection socket, nobody else to any of them.
	t.Run("local accounts", func(t *testing.T) {
		nobody := testenv.LookupAccount(t, "nobody")
		pfUser := testenv.LookupAccount(t, "postfix")
		pec := testenv.LookupAccount(t, pecUser)
		postdrop, err := user.LookupGroup("postdrop")
		if err != nil {
			t.Fatal(err)
		}
		gid, _ := strconv.Atoi(postdrop.Gid)
		pec.Cred.Groups = append(pec.Cred.Groups, uint32(gid)) // the units' SupplementaryGroups=postdrop
		sock := func(spec string) string { return strings.TrimPrefix(spec, "unix:") }
		for _, c := range []struct {
			what, path string
			acct       testenv.Account
			banner     string // "" = must be denied; "-" = connects, no greeting (a milter)
		}{
			{"access milter", sock(accessSpec), nobody, ""},
			{"access milter", sock(accessSpec), pfUser, "-"},
			{"incoming milter", sock(incomingSpec), nobody, ""},
			{"incoming milter", sock(incomingSpec), pfUser, "-"},
			{"pecdeliver LMTP", sock(deliverSpec), nobody, ""},
			{"pecdeliver LMTP", sock(deliverSpec), pfUser, "220 "},
			{"Dovecot LMTP", dv.lmtp, nobody, ""},
			{"Dovecot LMTP", dv.lmtp, pfUser, ""}, // Postfix goes through pecdeliver
			{"Dovecot LMTP", dv.lmtp, pec, "220 "},
			{"re-injection", reSock, nobody, ""},
			{"re-injection", reSock, pec, "220 "},
		} {
			got, err := testenv.DialAs(t, c.acct, "unix", c.path)
			switch {
			case c.banner == "" && !errors.Is(err, testenv.ErrDenied):
				t.Errorf("%s as %s: %q, %v; want permission denied", c.what, c.acct.Name, got, err)
			case c.banner == "-" && err != nil:
				t.Errorf("%s as %s: %v", c.what, c.acct.Name, err)
			case c.banner != "" && c.banner != "-" && (err != nil || !strings.HasPrefix(got, c.banner)):
				t.Errorf("%s as %s: %q, %v; want %q...", c.what, c.acct.Name, got, err, c.banner)
			}
		}
		for _, spec := range []string{accessSpec, incomingSpec, deliverSpec} {
			fi, err := os.Stat(sock(spec))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != pfUser.Cred.Gid {
				t.Errorf("%s: %v group %d, want srw-rw---- group postfix", spec, fi.Mode(), st.Gid)
			}
		}
	})

	// Local submission is no way around the access point: only root may
	// use sendmail (main.cf.pec authorized_submit_users).
	t.Run("local sendmail refused", func(t *testing.T) {
		for _, name := range []string{"nobody", pecUser, "postfix"} {
			acct := testenv.LookupAccount(t, name)
			subject := "sendmail come " + name
			out, err := pf.SendmailAs(t, acct, mario, []string{luigi}, []byte(message(mario, luigi, subject)))
			if err == nil || !strings.Contains(out, "is not allowed to submit mail") {
				t.Errorf("sendmail as %s: %v\n%s\nwant \"not allowed to submit mail\"", name, err, out)
			}
		}
		time.Sleep(time.Second)
		for _, m := range dv.inbox(luigi) {
			if strings.Contains(m, "sendmail come") {
				t.Errorf("a local sendmail submission was delivered:\n%s", m)
			}
		}
	})

	t.Run("milter down gives 4xx", func(t *testing.T) {
		stopIncoming()
		c, err := smtp.Dial(mxAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Hello("mx.other.example.test")
		if err == nil {
			err = c.Mail("someone@other.example.test", nil)
		}
		if err == nil {
			err = c.Rcpt(luigi, nil)
		}
		if smtpCode(err)/100 != 4 {
			t.Errorf("with the incoming milter down: %v, want a 4xx (milter_default_action = tempfail)", err)
		}
	})

	t.Run("dovecot LMTP: unknown user 5.1.1, full mailbox 5.2.2", func(t *testing.T) {
		conn, err := net.Dial("unix", dv.lmtp)
		if err != nil {
			t.Fatal(err)
		}
		c := smtp.NewClientLMTP(conn)
		defer c.Close()
		if err := c.Hello("localhost"); err != nil {
			t.Fatal(err)
		}
		if err := c.Mail(service, nil); err != nil {
			t.Fatal(err)
		}
		err = c.Rcpt("nobody@"+domain, nil)
		var se *smtp.SMTPError
		if !errors.As(err, &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) {
			t.Errorf("unknown user at LMTP RCPT: %v, want 550 5.1.1", err)
		}
		if err := c.Rcpt(luigi, nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		big := message(service, luigi, "troppo grande") + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 1000)
		w.Write([]byte(big))
		_, err = w.CloseWithLMTPResponse()
		var le smtp.LMTPDataError
		if !errors.As(err, &le) || le[luigi] == nil || le[luigi].Code != 552 || le[luigi].EnhancedCode != (smtp.EnhancedCode{5, 2, 2}) {
			t.Errorf("message over quota: %v, want 552 5.2.2 (permanent)", err)
		}
	})
}

// dialSMTP connects to an SMTP server and greets it as localhost; the
// client is closed at cleanup.
func dialSMTP(t *testing.T, network, addr string) *smtp.Client {
	t.Helper()
	conn, err := net.DialTimeout(network, addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := smtp.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("localhost"); err != nil {
		t.Fatal(err)
	}
	return c
}

// contains reports whether list holds addr, with or without angle brackets.
func contains(list []string, addr string) bool {
	for _, x := range list {
		if strings.Trim(x, "<>") == addr {
			return true
		}
	}
	return false
}
