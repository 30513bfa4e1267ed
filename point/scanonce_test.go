package point_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/clamd"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// counting is an antivirus that counts what it reads.
type counting struct{ n *int }

func (c counting) Scan(_ context.Context, r io.Reader) (clamd.Result, error) {
	io.Copy(io.Discard, r)
	*c.n++
	return clamd.Result{}, nil
}

// A delivery receipt from a provider of the index about an envelope we
// dispatched to that recipient carries at most what our access point
// scanned: it is not scanned again. A receipt about an envelope we did not
// dispatch to that recipient, or when the log cannot say, is scanned; a
// transport envelope always is.
func TestIncomingNoticeAboutOurEnvelopeScannedOnce(t *testing.T) {
	e := newIncoming(t)
	o, _ := build.ParseOriginal([]byte("From: maria@pec-b.example.test\r\nTo: x@pec-a.example.test\r\nSubject: s\r\n\r\nciao\r\n"))
	tx := o.Tx(e.b.NewIDAt(at), "maria@pec-b.example.test", func(string) daticert.DestTipo { return daticert.Certificato })
	receipt, err := e.a.AvvenutaConsegna(at, tx, "x@pec-a.example.test", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	tracked := func(pecid string) ([]store.TrackingState, error) {
		if pecid != tx.ID {
			return nil, nil
		}
		return []store.TrackingState{{PECID: pecid, Rcpt: "x@pec-a.example.test"}}, nil
	}
	n := 0
	in := e.incoming()
	in.Scanner = counting{&n}
	check := func(name string, h point.History, raw []byte, wantScans int) {
		t.Helper()
		n = 0
		in.History = h
		d := in.Check(context.Background(), point.Envelope{MailFrom: "posta-certificata@pec.provider-a.example.test", Rcpts: []string{"maria@pec-b.example.test"}}, raw, at)
		if d.Action != point.Accept {
			t.Fatalf("%s: %v %q", name, d.Action, d.Reason)
		}
		if n != wantScans {
			t.Errorf("%s: scanned %d times, want %d", name, n, wantScans)
		}
	}
	check("receipt about an envelope we dispatched", history{tracked: tracked}, receipt.Bytes(), 0)
	check("no log", nil, receipt.Bytes(), 1)
	check("not dispatched to that recipient", history{}, receipt.Bytes(), 1)
	check("log down", history{tracked: func(string) ([]store.TrackingState, error) { return nil, errors.New("database is locked") }}, receipt.Bytes(), 1)
	raw, _ := e.envelope(t, e.a, "busta", luigi)
	n = 0
	in.History = history{tracked: tracked}
	if d := in.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}}, raw, at); d.Action != point.Accept || n != 1 {
		t.Errorf("transport envelope: %v, scanned %d times, want once", d.Action, n)
	}
}
