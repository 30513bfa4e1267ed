package point_test

import (
	"context"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/point"
)

// recorder is a second renderer that keeps the evidence and writes the
// PEC form.
type recorder struct {
	pec *build.Provider
	got []build.Evidence
}

func (r *recorder) Render(e build.Evidence) (*build.Message, error) {
	r.got = append(r.got, e)
	return r.pec.Render(e)
}

// The points emit evidence and leave its form to the provider's renderer:
// the acceptance and a non-acceptance reach the renderer as evidence of
// their kind, with the transaction instant and the reason.
func TestAccessEmitsEvidence(t *testing.T) {
	e := newEnv(t)
	pec := *e.prov
	r := &recorder{pec: &pec}
	e.prov.Renderer = r
	a := e.access(scanner{})
	d := a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, msg(mario, luigi, "", ""), at)
	if d.Action != point.Accept || len(r.got) != 1 || r.got[0].Kind != kind.Accettazione || !r.got[0].Time.Equal(at) || r.got[0].Tx.ID != d.Replace.ID {
		t.Fatalf("%v %q, evidence %+v", d.Action, d.Reason, r.got)
	}
	d = a.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi, carla}, AuthUser: mario}, msg(mario, luigi, "", carla), at)
	if d.Action != point.Reject || len(r.got) != 2 || r.got[1].Kind != kind.NonAccettazione || r.got[1].Cause == "" {
		t.Fatalf("%v %q, evidence %+v", d.Action, d.Reason, r.got[1:])
	}
}
