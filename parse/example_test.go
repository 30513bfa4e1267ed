package parse_test

import (
	"fmt"
	"os"

	"github.com/pecgo/pec/parse"
)

// Telling what a message is without checking its signature (package verify
// does that): kind, certification data, the carried original.
func ExampleParse() {
	raw, err := os.ReadFile("../build/testdata/golden/posta-certificata.eml")
	if err != nil {
		panic(err)
	}
	m, err := parse.Parse(raw)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Kind, m.Daticert.Ricevuta, len(m.Daticert.Destinatari), len(m.Original) > 0)
	// Output: posta-certificata completa 3 true
}
