package point_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
)

// gatedScanner answers only once the acceptance has been rendered (or
// after a second, as a clean "not overlapped" verdict the test refuses).
type gatedScanner struct {
	rendered <-chan struct{}
	verdict  clamd.Result
	err      error
	waited   chan bool
}

func (s gatedScanner) Scan(ctx context.Context, r io.Reader) (clamd.Result, error) {
	io.Copy(io.Discard, r)
	select {
	case <-s.rendered:
		s.waited <- true
	case <-time.After(time.Second):
		s.waited <- false
	}
	return s.verdict, s.err
}

// signalingRenderer closes rendered when it is asked for the acceptance,
// and fails that rendering when fail is set.
type signalingRenderer struct {
	pec      *build.Provider
	rendered chan struct{}
	fail     bool
}

func (r *signalingRenderer) Render(e build.Evidence) (*build.Message, error) {
	if e.Kind == kind.Accettazione {
		close(r.rendered)
		if r.fail {
			return nil, errors.New("signer unavailable")
		}
	}
	return r.pec.Render(e)
}

// The antivirus scan and the building of the envelope and the acceptance
// run at once (the access point answers after the longer of the two), and
// the verdict still decides: a clean message is accepted, a virus gets its
// non-acceptance, a scan that fails is a tempfail (RFC 6109 §2.2.1: fail
// closed) even when the acceptance could not be built either; a build
// failure with a clean verdict is a tempfail.
func TestAccessScansWhileBuilding(t *testing.T) {
	cases := []struct {
		name     string
		verdict  clamd.Result
		scanErr  error
		failAcc  bool
		action   point.Action
		status   string
		noticeOf kind.Kind
	}{
		{name: "clean", action: point.Accept},
		{name: "virus", verdict: clamd.Result{Infected: true, Signature: "Test.Sig"}, action: point.Reject, status: "5.7.1", noticeOf: kind.NonAccettazioneVirus},
		{name: "scan-fails", scanErr: errors.New("clamd down"), failAcc: true, action: point.TempFail, status: "4.7.1"},
		{name: "build-fails", failAcc: true, action: point.TempFail, status: "4.3.0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			pec := *e.prov
			r := &signalingRenderer{pec: &pec, rendered: make(chan struct{}), fail: c.failAcc}
			e.prov.Renderer = r
			s := gatedScanner{rendered: r.rendered, verdict: c.verdict, err: c.scanErr, waited: make(chan bool, 1)}
			a := &point.Access{Provider: e.prov, MaxRecipients: 3, MaxSizeTimesRcpts: 4000, Scanner: s,
				Index: func() (point.Directory, error) { return domains{"pec-a.example.test", "pec-b.example.test"}, nil }}
			d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
			if !<-s.waited {
				t.Fatal("the scan did not run while the acceptance was built")
			}
			if d.Action != c.action || (c.status != "" && d.Status != c.status) {
				t.Fatalf("decision %v %s %q, want %v %s", d.Action, d.Status, d.Text, c.action, c.status)
			}
			switch {
			case c.action == point.Accept:
				if d.Replace == nil || len(d.Txn.Outbox) != 1 {
					t.Fatalf("accepted without its envelope or acceptance: %+v", d.Txn)
				}
			case c.noticeOf != "":
				if len(d.Txn.Outbox) != 1 || !strings.Contains(string(d.Txn.Outbox[0].Data), "X-Ricevuta: non-accettazione") || len(d.Txn.Virus) != 1 {
					t.Fatalf("virus: want one non-acceptance and the quarantined original, got %d outgoing, %d quarantined", len(d.Txn.Outbox), len(d.Txn.Virus))
				}
			default:
				if len(d.Txn.Outbox) != 0 || len(d.Txn.Events) != 0 || d.Replace != nil {
					t.Fatalf("a tempfail records and issues nothing: %+v", d.Txn)
				}
			}
		})
	}
}
