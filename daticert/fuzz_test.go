package daticert_test

import (
	"reflect"
	"testing"

	"github.com/pecgo/pec/daticert"
)

// FuzzParse: Parse never panics; what it accepts either fails Marshal's
// validation with an error or marshals to a document that parses back to
// the same value. The committed corpus (testdata/fuzz/FuzzParse) holds
// daticert.xml of every tipo and the forms real providers write
// (PEC-SPEC §6.7).
func FuzzParse(f *testing.F) {
	f.Add([]byte(`<postacert tipo="accettazione"><intestazione><mittente>a@pec.example.test</mittente>` +
		`<destinatari>b@pec.example.test</destinatari><risposte>a@pec.example.test</risposte></intestazione>` +
		`<dati><gestore-emittente>G</gestore-emittente><data zona="+0100"><giorno>01/02/2026</giorno>` +
		`<ora>10:00:00</ora></data><identificativo>x@pec.example.test</identificativo></dati></postacert>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := daticert.Parse(data)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned a value with error %v", err)
			}
			return
		}
		out, err := p.Marshal()
		if err != nil {
			return // accepted leniently, but not valid enough to emit
		}
		q, err := daticert.Parse(out)
		if err != nil {
			t.Fatalf("Parse(Marshal(x)): %v\ninput: %q\nmarshalled: %q", err, data, out)
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("Parse(Marshal(x)) != x\n   x: %+v\n got: %+v\ninput: %q\nmarshalled: %q", p, q, data, out)
		}
		if again, err := q.Marshal(); err != nil || string(again) != string(out) {
			t.Fatalf("Marshal not stable: %v\n%q\n%q", err, out, again)
		}
	})
}
