package point_test

import (
	"strings"
	"testing"

	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/kind"
	"github.com/pecgo/pec/parse"
	"github.com/pecgo/pec/point"
)

// RFC 6109 §3.2.1: the take-charge covers the recipients the transaction
// hands over that the envelope is addressed to and no earlier take-charge
// covered, each once, whatever their case; none left, no notice.
func TestTakeChargeRecipients(t *testing.T) {
	e := newIncoming(t)
	_, tx := e.envelope(t, e.a, "presa", luigi, carla)
	for _, c := range []struct {
		name       string
		candidates []string
		covered    map[string]bool
		want       string
	}{
		{"addressees", []string{luigi, carla}, nil, luigi + "," + carla},
		{"case and repeats", []string{strings.ToUpper(luigi), luigi, carla}, nil, luigi + "," + carla},
		{"a non-addressee", []string{luigi, paolo}, nil, luigi},
		{"covered before", []string{luigi, carla}, map[string]bool{luigi: true}, carla},
		{"nobody left", []string{luigi, paolo}, map[string]bool{luigi: true}, ""},
	} {
		n, rcpts, err := point.TakeCharge(e.b, at, tx, "posta-certificata@pec.provider-a.example.test", c.candidates, c.covered)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rcpts, ",") != c.want {
			t.Errorf("%s: covers %v, want %s", c.name, rcpts, c.want)
		}
		if c.want == "" {
			if n != nil {
				t.Errorf("%s: a take-charge covering nobody", c.name)
			}
			continue
		}
		p, err := parse.Parse(n.Bytes())
		if err != nil || p.Kind != kind.PresaInCarico || p.Daticert.Tipo != daticert.PresaInCarico || strings.Join(p.Daticert.Ricezione, ",") != c.want {
			t.Fatalf("%s: %v %s ricezione %v", c.name, err, p.Kind, p.Daticert.Ricezione)
		}
	}
}
