package main

import (
	"fmt"
	"github.com/pecgo/pec/store/sqlite"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/store"
)

// A provider with a store holding a realistic day of log rows, as the
// access point (filter/access.go), incoming point (filter/incoming.go),
// delivery point (point/delivery.go), timers (timer/timer.go) and outbox
// (store.MarkSent) write them.

const (
	provName  = "Example PEC S.p.A."
	provDom   = "pec.example.test"
	mario     = "mario.rossi@pec.example.test"
	giulia    = "giulia.bianchi@pec.example.test"
	anna      = "anna.verdi@pec.other.test"
	bob       = "bob@pec.other.test"
	ordinary  = "newsletter@ordinary.example.test"
	ghost     = "ghost@pec.example.test"
	otherProv = "Other PEC S.r.l."
)

var rome = build.Rome

// retentionStart is the purge cutoff the test configuration's retention
// yields: rows before it are old enough to purge by default.
var retentionStart = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

type fixture struct {
	dir, cfg, root, db string
	pki                *testpki.PKI
	prov               *testpki.Provider
	all                []store.Event // every row as read back, in id order
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// fixture events. Rome is UTC+1 in March 2024 (summer time starts on the
// 31st): the day 2024-03-02 in Rome is 2024-03-01T23:00Z .. 2024-03-02T23:00Z.
func fixtureTxns() []store.Txn {
	acc := func(at, pecid, msgid, from string, to []string, typ store.EventType, subj, errText string, related ...string) store.Event {
		return store.Event{Time: utc(at), Point: "access", Type: typ, PECID: pecid, MsgID: msgid, Sender: from,
			Recipients: to, Subject: subj, Related: related, Provider: provName, Error: errText, QueueID: "4Q" + pecid[5:8]}
	}
	inc := func(at, pecid, msgid, from string, to []string, typ store.EventType, subj, prov, errText string, related ...string) store.Event {
		return store.Event{Time: utc(at), Point: "incoming", Type: typ, PECID: pecid, MsgID: msgid, Sender: from,
			Recipients: to, Subject: subj, Related: related, Provider: prov, Error: errText, QueueID: "5Q1"}
	}
	del := func(at, pecid, msgid, from string, to []string, typ store.EventType, subj, errText string, related ...string) store.Event {
		return store.Event{Time: utc(at), Point: "delivery", Type: typ, PECID: pecid, MsgID: msgid, Sender: from,
			Recipients: to, Subject: subj, Related: related, Provider: provName, Error: errText}
	}
	return []store.Txn{
		// old rows, purgeable by default
		{Events: []store.Event{
			acc("2021-01-10T09:00:00Z", "opec-001.20210110@pec.example.test", "<old1@pec.example.test>", mario, []string{anna}, "accettazione", "Vecchio", "", "<acc-old1@pec.example.test>"),
			acc("2021-01-10T09:00:00Z", "opec-001.20210110@pec.example.test", "<old1@pec.example.test>", mario, []string{anna}, "posta-certificata", "Vecchio", "", "<env-old1@pec.example.test>"),
		}},
		{Events: []store.Event{acc("2021-01-11T10:00:00Z", "opec-002.20210111@pec.example.test", "<old2@pec.example.test>", giulia, []string{anna}, "non-accettazione", "Vecchio virus", "virus: Eicar-Test-Signature", "<nacc-old2@pec.example.test>")},
			Virus: []store.Quarantined{{Time: utc("2021-01-11T10:00:00Z"), PECID: "opec-002.20210111@pec.example.test", Sender: giulia, Recipients: []string{anna}, Signature: "Eicar-Test-Signature", Data: []byte("infected bytes (test data)")}}},
		// 2024-03-01 23:30 in Rome: the 1st
		{Events: []store.Event{
			acc("2024-03-01T22:30:00Z", "opec-101.20240301@pec.example.test", "<m101@pec.example.test>", mario, []string{anna}, "accettazione", "Fattura marzo", "", "<acc-101@pec.example.test>"),
			acc("2024-03-01T22:30:00Z", "opec-101.20240301@pec.example.test", "<m101@pec.example.test>", mario, []string{anna}, "posta-certificata", "Fattura marzo", "", "<env-101@pec.example.test>"),
		}},
		// 2024-03-02 00:30 in Rome (23:30 UTC on the 1st): the 2nd
		{Events: []store.Event{
			acc("2024-03-01T23:30:00Z", "opec-102.20240302@pec.example.test", "<m102@pec.example.test>", mario, []string{anna, giulia}, "accettazione", "Contratto \"firmato\"", "", "<acc-102@pec.example.test>"),
			acc("2024-03-01T23:30:00Z", "opec-102.20240302@pec.example.test", "<m102@pec.example.test>", mario, []string{anna, giulia}, "posta-certificata", "Contratto \"firmato\"", "", "<env-102@pec.example.test>"),
		}},
		{Events: []store.Event{inc("2024-03-02T09:00:00Z", "opec-xyz.20240302@pec.other.test", "<b1@pec.other.test>", bob, []string{mario}, "presa-in-carico", "Preventivo", otherProv, "", "<pic-b1@pec.example.test>")}},
		{Events: []store.Event{del("2024-03-02T09:00:01Z", "opec-xyz.20240302@pec.other.test", "<b1@pec.other.test>", bob, []string{mario}, "avvenuta-consegna", "Preventivo", "", "<ac-b1@pec.example.test>")}},
		{Events: []store.Event{acc("2024-03-02T10:00:00Z", "opec-103.20240302@pec.example.test", "<m103@pec.example.test>", giulia, []string{anna}, "non-accettazione", "Documento", "virus: Eicar-Test-Signature", "<nacc-103@pec.example.test>")},
			Virus: []store.Quarantined{{Time: utc("2024-03-02T10:00:00Z"), PECID: "opec-103.20240302@pec.example.test", Sender: giulia, Recipients: []string{anna}, Signature: "Eicar-Test-Signature", Data: []byte("infected bytes (test data)")}}},
		{Events: []store.Event{inc("2024-03-02T11:00:00Z", "", "<n1@ordinary.example.test>", ordinary, []string{mario}, "anomalia", "Offerte", "", "il messaggio non è un messaggio di posta certificata", "<anom-n1@pec.example.test>")}},
		{Events: []store.Event{
			inc("2024-03-02T12:00:00Z", "opec-vir.20240302@pec.other.test", "<b2@pec.other.test>", bob, []string{mario}, "rilevazione-virus", "Allegato", otherProv, "virus: Eicar-Test-Signature", "<rv-1@pec.example.test>"),
			inc("2024-03-02T12:00:00Z", "opec-vir.20240302@pec.other.test", "<b2@pec.other.test>", bob, []string{giulia}, "rilevazione-virus", "Allegato", otherProv, "virus: Eicar-Test-Signature", "<rv-2@pec.example.test>"),
		}, Virus: []store.Quarantined{{Time: utc("2024-03-02T12:00:00Z"), PECID: "opec-vir.20240302@pec.other.test", Sender: bob, Recipients: []string{mario, giulia}, Signature: "Eicar-Test-Signature", Data: []byte("infected bytes (test data)")}}},
		{Events: []store.Event{del("2024-03-02T12:30:00Z", "opec-104.20240302@pec.example.test", "<m104@pec.example.test>", giulia, []string{ghost}, "errore-consegna", "Prova", "5.1.1 - Example PEC S.p.A. - casella del destinatario inesistente", "<ec-104@pec.example.test>")}},
		{Events: []store.Event{acc("2024-03-02T13:00:00Z", "opec-105.20240302@pec.example.test", "<m105@pec.example.test>", mario, []string{anna}, "non-accettazione", "Senza To", "il campo To deve contenere almeno un destinatario", "<nacc-105@pec.example.test>")}},
		{Events: []store.Event{{Time: utc("2024-03-02T14:00:00Z"), Point: "timer", Type: "preavviso-errore-consegna", PECID: "opec-102.20240302@pec.example.test",
			MsgID: "<m102@pec.example.test>", Sender: mario, Recipients: []string{anna}, Subject: "Contratto \"firmato\"", Related: []string{"<pre-102@pec.example.test>"},
			Provider: provName, Error: "mancata consegna entro 12h"}}},
		// 2024-03-03 00:30 in Rome: the 3rd
		{Events: []store.Event{del("2024-03-02T23:30:00Z", "opec-xyz2.20240303@pec.other.test", "<b3@pec.other.test>", bob, []string{mario}, "avvenuta-consegna", "Sollecito", "", "<ac-b3@pec.example.test>")}},
		// a row of the 2nd written after a row of the 3rd (a clock out of order)
		{Events: []store.Event{acc("2024-03-02T22:59:59.999999999Z", "opec-106.20240302@pec.example.test", "<m106@pec.example.test>", giulia, []string{mario}, "accettazione", "Ultimo", "", "<acc-106@pec.example.test>")}},
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, db: filepath.Join(dir, "pec.db")}
	f.pki = testpki.New(provDom)
	f.prov = f.pki.Issue(provName, "posta-certificata@"+provDom, time.Time{}, time.Time{}, false)
	root, cert, key := f.pki.WriteFiles(dir, f.prov)
	f.root = root
	st, err := sqlite.Open(f.db)
	if err != nil {
		t.Fatal(err)
	}
	f.all = fillFixture(t, st)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	retention := time.Since(retentionStart).Truncate(time.Hour) + time.Hour
	f.cfg = filepath.Join(dir, "pec.toml")
	conf := fmt.Sprintf(`[provider]
name = %q
domain = %q
time_zone = "Europe/Rome"

[signing]
certificate = %q
key = %q
trusted_roots = [%q]

[store]
path = %q
retention = "%dh"

[index]
ldif = %q
cache_dir = %q
`, provName, provDom, cert, key, root, f.db, int(retention.Hours()), filepath.Join(dir, "providers.ldif"), filepath.Join(dir, "index-cache"))
	if err := os.WriteFile(f.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// fillFixture commits the fixture rows and a sent outbox item into st and
// returns every row as read back.
func fillFixture(t *testing.T, st store.Store) []store.Event {
	t.Helper()
	for _, txn := range fixtureTxns() {
		if err := st.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	// an outbox item sent on the 2nd: MarkSent logs outbox/sent
	if err := st.Commit(store.Txn{Outbox: []store.Outgoing{{MailFrom: "posta-certificata@" + provDom, Rcpts: []string{mario},
		Data: []byte("Subject: ACCETTAZIONE\r\n\r\nx\r\n"), MessageID: "<acc-102@pec.example.test>", Kind: "accettazione"}}}); err != nil {
		t.Fatal(err)
	}
	q, err := st.DuePending(time.Now(), 10)
	if err != nil || len(q) != 1 {
		t.Fatalf("DuePending = %v, %v", q, err)
	}
	if err := st.MarkSent(q[0].ID, utc("2024-03-02T15:00:00Z")); err != nil {
		t.Fatal(err)
	}
	all, err := st.Events(store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// run runs pecctl with -config appended.
func (f *fixture) run(args ...string) (code int, stdout, stderr string) {
	return runCmd(append(args, "-config", f.cfg)...)
}

// romeDay is the day of t in Europe/Rome.
func romeDay(t time.Time) string { return t.In(rome).Format("2006-01-02") }

// ids returns the ids of the fixture rows for which keep is true.
func (f *fixture) ids(keep func(e store.Event) bool) []int64 {
	var out []int64
	for _, e := range f.all {
		if keep(e) {
			out = append(out, e.ID)
		}
	}
	return out
}

func hasAddr(l []string, a string) bool {
	for _, x := range l {
		if strings.EqualFold(x, a) {
			return true
		}
	}
	return false
}

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	return p
}
