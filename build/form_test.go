package build_test

import (
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
)

// RFC 6109 §3.3.2: the form a recipient's delivery receipt takes is the
// one the sender asked for, complete when none; a Cc recipient gets the
// short form; a sender asking for sintetica gets it for everybody.
func TestReceiptForm(t *testing.T) {
	for _, c := range []struct {
		asked   daticert.Ricevuta
		primary bool
		want    daticert.Ricevuta
	}{
		{"", true, daticert.Completa},
		{"", false, daticert.Sintetica},
		{daticert.Completa, true, daticert.Completa},
		{daticert.Breve, true, daticert.Breve},
		{daticert.Breve, false, daticert.Sintetica},
		{daticert.Sintetica, true, daticert.Sintetica},
	} {
		tx := &build.Tx{Ricevuta: c.asked}
		if got := build.Form(tx.RequestedForm(), c.primary); got != c.want {
			t.Errorf("asked %q, primary %v: form %q, want %q", c.asked, c.primary, got, c.want)
		}
	}
	if (&build.Tx{}).RequestedForm() != build.DefaultForm || build.DefaultForm != daticert.Completa {
		t.Errorf("no X-TipoRicevuta: %q, want completa", (&build.Tx{}).RequestedForm())
	}
	// the transaction data of a submission without X-TipoRicevuta leaves
	// the choice to RequestedForm: nothing else writes the default
	o, err := build.ParseOriginal([]byte("From: a@pec.example.test\r\nTo: b@pec.example.test\r\nSubject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tx := o.Tx("id@pec.example.test", "a@pec.example.test", func(string) daticert.DestTipo { return daticert.Certificato }); tx.RequestedForm() != daticert.Completa {
		t.Errorf("submission without X-TipoRicevuta: %q", tx.RequestedForm())
	}
}
