package build_test

import (
	"fmt"
	"time"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/internal/testpki"
	"github.com/pecgo/pec/smime"
)

// An access point accepting a message: the transport envelope and the
// acceptance receipt, both signed at the same instant.
func ExampleProvider_TransportEnvelope() {
	// a provider key and certificate (from a file or an HSM in production)
	pki := testpki.New("pec.example.test")
	id := pki.Issue("Example PEC S.p.A.", "posta-certificata@pec.example.test", time.Time{}, time.Time{}, false)
	p := &build.Provider{Name: "Example PEC S.p.A.", Domain: "pec.example.test",
		Signer: &smime.Signer{Key: id.Key, Cert: id.Cert, Chain: id.Chain}}

	raw := []byte("From: mario.rossi@pec.example.test\r\nTo: luigi.verdi@pec.example.org\r\n" +
		"Subject: prova\r\nMessage-ID: <1@client.example.test>\r\n\r\nciao\r\n")
	o, err := build.ParseOriginal(raw)
	if err != nil {
		panic(err)
	}
	now := time.Now()
	tx := o.Tx(p.NewIDAt(now), "mario.rossi@pec.example.test", func(addr string) daticert.DestTipo {
		return daticert.Certificato // ask the providers' index in real code
	})
	env, _ := p.TransportEnvelope(now, tx, o, []string{"luigi.verdi@pec.example.org"})
	acc, _ := p.Accettazione(now, tx)
	fmt.Println(env.Get("X-Trasporto"), env.Get("From"))
	fmt.Println(acc.Get("X-Ricevuta"), acc.Get("Subject"), acc.Daticert.Identificativo == env.ID)
	// Output:
	// posta-certificata "Per conto di: mario.rossi@pec.example.test" <posta-certificata@pec.example.test>
	// accettazione ACCETTAZIONE: prova true
}
