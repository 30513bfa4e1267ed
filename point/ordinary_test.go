package point_test

import (
	"strings"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/point"
)

// RFC 6109 §2.2.2: mail that is not PEC is wrapped or refused per
// mailbox; a DSN reaches every mailbox (PEC-SPEC §6.6 rule 2), and only a
// real one counts as a DSN.
func TestSplitOrdinary(t *testing.T) {
	p := &point.Policy{OrdinaryMail: "accept", Mailboxes: map[string]point.MailboxPolicy{
		"anna@pec-b.example.test":  {OrdinaryMail: "refuse"},
		"carla@pec-b.example.test": {ForwardTo: "carla@mail.example.org"}}}
	rcpts := []string{"luigi@pec-b.example.test", "Anna@pec-b.example.test", "carla@pec-b.example.test"}
	s := p.SplitOrdinary(rcpts, false)
	if strings.Join(s.Accept, ",") != "luigi@pec-b.example.test,carla@pec-b.example.test" || strings.Join(s.Refuse, ",") != "Anna@pec-b.example.test" {
		t.Fatalf("accept %v refuse %v", s.Accept, s.Refuse)
	}
	prov := &build.Provider{Domain: "pec-b.example.test"}
	copies := s.Copies(prov, []byte("x"), s.Accept)
	if len(copies) != 1 || copies[0].Rcpts[0] != "carla@mail.example.org" || copies[0].MailFrom != "posta-certificata@pec-b.example.test" {
		t.Fatalf("copies %+v", copies)
	}
	if s := p.SplitOrdinary(rcpts, true); len(s.Refuse) != 0 || len(s.Accept) != 3 {
		t.Fatalf("a DSN refused: %+v", s)
	}

	dsn := "From: MAILER-DAEMON@mx.example.org\r\nTo: anna@pec-b.example.test\r\nSubject: bounce\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n--r--\r\n"
	o, err := build.ParseOriginal([]byte(dsn))
	if err != nil {
		t.Fatal(err)
	}
	if !point.IsDSN(o, "") || point.IsDSN(o, "someone@mail.example.org") {
		t.Fatal("a DSN comes with the null reverse-path, and only then")
	}
	fake, _ := build.ParseOriginal([]byte(strings.Replace(dsn, "message/delivery-status", "text/plain", 1)))
	if point.IsDSN(fake, "") {
		t.Fatal("a report without its delivery-status part is no DSN")
	}
	if point.OrdinaryReason("", true) == point.OrdinaryReason("", false) || point.OrdinaryReason("firma non valida", true) != "firma non valida" {
		t.Fatal("reasons")
	}
}
