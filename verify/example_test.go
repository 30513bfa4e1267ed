package verify_test

import (
	"fmt"
	"os"

	"github.com/pecgo/pec/smime"
	"github.com/pecgo/pec/verify"
)

// Checking a PEC message received by a program (e-invoicing, a
// notification system): signature, chain at the signing time, kind and
// certification data.
func ExampleMessage() {
	raw, err := os.ReadFile("../build/testdata/golden/avvenuta-consegna-completa.eml")
	if err != nil {
		panic(err)
	}
	rootPEM, _ := os.ReadFile("../build/testdata/golden/root.pem")
	roots := smime.NewRoots()
	roots.AppendPEM(rootPEM)

	r := verify.Message(raw, roots)
	if !r.Valid() {
		fmt.Println("not a valid PEC message:", r.Err)
		return
	}
	d := r.Message.Daticert
	fmt.Println(r.Message.Kind, d.Identificativo, d.Consegna, r.Signature.SigningTime.Format("2006-01-02 15:04:05"))
	fmt.Println(r.Message.Original != nil) // completa: the original is inside
	// Output:
	// avvenuta-consegna pec202611231504050001@pec-a.example.test luigi.verdi@pec-b.example.test 2026-11-23 15:04:07
	// true
}
