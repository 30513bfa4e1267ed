package point_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/conformance"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/store"
)

var at = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// scanner is a scripted antivirus for the pure-core tests; the real clamd
// is exercised by the integration tests.
type scanner struct {
	infected string
	err      error
}

func (s scanner) Scan(ctx context.Context, r io.Reader) (clamd.Result, error) {
	io.Copy(io.Discard, r)
	if s.err != nil {
		return clamd.Result{}, s.err
	}
	return clamd.Result{Infected: s.infected != "", Signature: s.infected}, nil
}

// domains is a Directory over a fixed domain list.
type domains []string

func (d domains) IsCertified(a string) bool {
	for _, x := range d {
		if strings.HasSuffix(strings.ToLower(a), "@"+x) {
			return true
		}
	}
	return false
}

func (d domains) ProviderFor(*x509.Certificate) (string, string, []string, error) {
	return "", "", nil, errors.New("not used")
}

type env struct {
	pki  *testpki.PKI
	prov *build.Provider
}

func newEnv(t testing.TB) *env {
	pki := testpki.New("pec-a.example.test", "pec-b.example.test")
	id := pki.Issue("Provider A S.p.A.", "posta-certificata@pec-a.example.test", time.Time{}, time.Time{}, false)
	return &env{pki: pki, prov: &build.Provider{Name: "Provider A S.p.A.", Domain: "pec-a.example.test",
		Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}}
}

func (e *env) access(s scanner) *point.Access {
	return &point.Access{Provider: e.prov, MaxRecipients: 3, MaxSizeTimesRcpts: 4000, Scanner: s,
		Index: func() (point.Directory, error) { return domains{"pec-a.example.test", "pec-b.example.test"}, nil }}
}

func msg(from, to, cc, bcc string) []byte {
	h := "From: " + from + "\r\nTo: " + to + "\r\n"
	if cc != "" {
		h += "Cc: " + cc + "\r\n"
	}
	if bcc != "" {
		h += "Bcc: " + bcc + "\r\n"
	}
	return []byte(h + "Subject: prova\r\nMessage-ID: <m1@client.example.test>\r\nDate: Mon, 23 Nov 2026 16:04:00 +0100\r\n\r\nciao\r\n")
}

const (
	mario = "mario.rossi@pec-a.example.test"
	luigi = "luigi.verdi@pec-b.example.test"
	carla = "carla.neri@pec-b.example.test"
	paolo = "paolo@mail.example.org"
)

func TestAccessAccepts(t *testing.T) {
	e := newEnv(t)
	raw := msg("Mario <"+mario+">", luigi+", "+paolo, carla, "")
	d := e.access(scanner{}).Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, paolo, carla}, AuthUser: mario}, raw, at)
	if d.Action != point.Accept || d.Replace == nil {
		t.Fatalf("decision %v %q", d.Action, d.Reason)
	}
	if d.Replace.Kind != kind.PostaCertificata || d.Replace.MailFrom != mario || len(d.Replace.Rcpts) != 3 {
		t.Fatalf("envelope %s from %s to %v", d.Replace.Kind, d.Replace.MailFrom, d.Replace.Rcpts)
	}
	if len(d.Txn.Outbox) != 1 || len(d.Txn.Events) != 2 {
		t.Fatalf("txn: %d outgoing, %d events", len(d.Txn.Outbox), len(d.Txn.Events))
	}
	acc := d.Txn.Outbox[0]
	if acc.Rcpts[0] != mario || acc.MailFrom != "posta-certificata@pec-a.example.test" {
		t.Fatalf("acceptance to %v from %s", acc.Rcpts, acc.MailFrom)
	}
	p, err := parse.Parse(acc.Data)
	if err != nil || p.Kind != kind.Accettazione {
		t.Fatalf("acceptance: %v %v", p.Kind, err)
	}
	want := map[string]daticert.DestTipo{luigi: daticert.Certificato, paolo: daticert.Esterno, carla: daticert.Certificato}
	for _, dd := range p.Daticert.Destinatari {
		if want[dd.Addr] != dd.Tipo {
			t.Errorf("%s classified %s", dd.Addr, dd.Tipo)
		}
	}
	if p.Daticert.Identificativo != d.Replace.ID {
		t.Fatalf("acceptance identificativo %s, envelope id %s", p.Daticert.Identificativo, d.Replace.ID)
	}
	root := testpki.PEM(e.pki.Root.Cert)
	conformance.Check(t, "accettazione", acc.Data, root)
	conformance.Check(t, "posta-certificata", d.Replace.Bytes(), root)
}

func TestAccessRefusals(t *testing.T) {
	e := newEnv(t)
	big := strings.Repeat(strings.Repeat("x", 99)+"\r\n", 20)
	cases := []struct {
		name  string
		env   point.Envelope
		raw   []byte
		want  string // in errore-esteso
		virus bool
	}{
		{"bcc", point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}, AuthUser: mario}, msg(mario, luigi, "", carla), "Bcc", false},
		{"from-not-mailfrom", point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg("altro@pec-a.example.test", luigi, "", ""), "non coincide con il mittente della busta", false},
		{"mailfrom-not-auth", point.Envelope{MailFrom: "altro@pec-a.example.test", Rcpts: []string{luigi}, AuthUser: mario}, msg("altro@pec-a.example.test", luigi, "", ""), "non coincide con l'utente autenticato", false},
		{"rcpt-not-to-cc", point.Envelope{MailFrom: mario, Rcpts: []string{luigi, paolo}, AuthUser: mario}, msg(mario, luigi, "", ""), "non coincidono con quelli dei campi To e Cc", false},
		{"two-from", point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario+", x@pec-a.example.test", luigi, "", ""), "esattamente un indirizzo", false},
		{"no-to", point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, []byte("From: " + mario + "\r\nCc: " + luigi + "\r\nSubject: x\r\n\r\nx\r\n"), "almeno un destinatario", false},
		{"too-many", point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla, paolo, "d@pec-b.example.test"}, AuthUser: mario},
			msg(mario, luigi+", "+carla+", "+paolo+", d@pec-b.example.test", "", ""), "numero di destinatari (4) superiore al limite di 3", false},
		{"size", point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}, AuthUser: mario}, append(msg(mario, luigi, carla, ""), big...), "superiore al limite di 4000 byte", false},
		{"long-line", point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, append(msg(mario, luigi, "", ""), strings.Repeat("y", 999)+"\r\n"...), "998 caratteri", false},
		{"virus", point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), "Test.EICAR", true},
	}
	root := testpki.PEM(e.pki.Root.Cert)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := scanner{}
			if c.virus {
				s.infected = "Test.EICAR.NDB.UNOFFICIAL"
			}
			d := e.access(s).Check(context.Background(), c.env, c.raw, at)
			if d.Action != point.Reject || d.Replace != nil {
				t.Fatalf("decision %v, want reject with nothing relayed", d.Action)
			}
			if len(d.Txn.Outbox) != 1 {
				t.Fatalf("%d notices", len(d.Txn.Outbox))
			}
			n := d.Txn.Outbox[0]
			p, err := parse.Parse(n.Data)
			if err != nil {
				t.Fatal(err)
			}
			wantKind := kind.NonAccettazione
			if c.virus {
				wantKind = kind.NonAccettazioneVirus
				if len(d.Txn.Virus) != 1 || string(d.Txn.Virus[0].Data) != string(c.raw) {
					t.Fatal("infected message not in the virus store")
				}
			}
			if p.Kind != wantKind || !strings.Contains(p.Daticert.ErroreEsteso, c.want) {
				t.Fatalf("notice %s errore-esteso %q, want %s containing %q", p.Kind, p.Daticert.ErroreEsteso, wantKind, c.want)
			}
			if !strings.Contains(d.Text, strings.SplitN(filterASCII(c.want), " ", 2)[0]) {
				t.Errorf("SMTP reply %q does not carry the reason", d.Text)
			}
			if n.Rcpts[0] != mario {
				t.Errorf("notice to %v, want the authenticated sender", n.Rcpts)
			}
			conformance.Check(t, c.name, n.Data, root)
		})
	}
}

func filterASCII(s string) string { return strings.ReplaceAll(s, "'", "") }

func TestAccessFailsClosed(t *testing.T) {
	e := newEnv(t)
	raw := msg(mario, luigi, "", "")
	ev := point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}
	d := e.access(scanner{err: errors.New("dial unix /run/clamav/clamd.ctl: connection refused")}).Check(context.Background(), ev, raw, at)
	if d.Action != point.TempFail || len(d.Txn.Outbox) != 0 || d.Replace != nil {
		t.Fatalf("clamd down: %v, %d notices", d.Action, len(d.Txn.Outbox))
	}
	a := e.access(scanner{})
	a.Index = func() (point.Directory, error) { return nil, errors.New("no index loaded") }
	if d := a.Check(context.Background(), ev, raw, at); d.Action != point.TempFail {
		t.Fatalf("index down: %v", d.Action)
	}
	if d := e.access(scanner{}).Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at); d.Action != point.Reject || d.Code != 530 {
		t.Fatalf("unauthenticated: %v %d", d.Action, d.Code)
	}
}

func TestAccessRateLimit(t *testing.T) {
	e := newEnv(t)
	a := e.access(scanner{})
	a.MessagesPerHour = 2
	var since time.Time
	a.History = history{count: func(sender string, typ store.EventType, t0 time.Time) (int, error) {
		if typ != store.TypeAccettazione {
			t.Errorf("counted %q rows, want acceptances", typ)
		}
		since = t0
		return 2, nil
	}}
	d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
	if d.Action != point.Reject || !strings.Contains(d.Reason, "2 messaggi all'ora") {
		t.Fatalf("%v %q", d.Action, d.Reason)
	}
	if !since.Equal(at.Add(-time.Hour)) {
		t.Fatalf("window starts %v", since)
	}
	a.History = history{count: func(string, store.EventType, time.Time) (int, error) { return 0, errors.New("database is locked") }}
	if d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at); d.Action != point.TempFail {
		t.Fatalf("rate limit with the store down: %v (must fail closed)", d.Action)
	}
	a.History = history{count: func(string, store.EventType, time.Time) (int, error) { return 1, nil }}
	if d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at); d.Action != point.Accept {
		t.Fatalf("under the limit: %v %s", d.Action, d.Reason)
	}
}

// A Message-ID too long for the envelope's X-Riferimento-Message-ID line
// (RFC 5322 §2.1.1) is a formal exception: refused with a non-acceptance
// before anything is signed; one that fits is accepted.
func TestAccessRefusesUnreferenceableMessageID(t *testing.T) {
	e := newEnv(t)
	for _, c := range []struct {
		idLen  int
		action point.Action
	}{{build.MaxReferencedMessageID, point.Accept}, {build.MaxReferencedMessageID + 1, point.Reject}} {
		id := "<" + strings.Repeat("x", c.idLen-len("<@client.example.test>")) + "@client.example.test>"
		raw := strings.Replace(string(msg(mario, luigi, "", "")), "<m1@client.example.test>", id, 1)
		d := e.access(scanner{}).Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, []byte(raw), at)
		if d.Action != c.action {
			t.Fatalf("Message-ID of %d octets: %v %q, want %v", len(id), d.Action, d.Reason, c.action)
		}
		if c.action == point.Reject && (len(d.Txn.Outbox) != 1 || !strings.Contains(d.Txn.Events[0].Error, "Message-ID")) {
			t.Fatalf("refused without its non-acceptance naming the Message-ID: %+v", d.Txn.Events)
		}
	}
}
