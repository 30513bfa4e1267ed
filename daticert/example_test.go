package daticert_test

import (
	"fmt"
	"time"

	"github.com/pecgo/pec/daticert"
)

func ExamplePostacert_Marshal() {
	subject := "Fattura n. 12"
	d := &daticert.Postacert{
		Tipo:             daticert.Accettazione,
		Mittente:         "mario.rossi@pec.example.test",
		Destinatari:      []daticert.Destinatario{{Addr: "luigi.verdi@pec.example.org", Tipo: daticert.Certificato}},
		Risposte:         "mario.rossi@pec.example.test",
		Oggetto:          &subject,
		GestoreEmittente: "Example PEC S.p.A.",
		Identificativo:   "pec20261123150405abc@pec.example.test",
		Msgid:            "<1@client.example.test>",
	}
	rome, _ := time.LoadLocation("Europe/Rome")
	d.SetTime(time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC), rome)
	x, err := d.Marshal()
	if err != nil {
		panic(err)
	}
	back, _ := daticert.Parse(x)
	fmt.Println(back.Tipo, back.Giorno, back.Ora, back.Zona, back.Msgid)
	// Output: accettazione 23/11/2026 16:04:05 +0100 <1@client.example.test>
}

func ExampleParse() {
	x := []byte(`<?xml version="1.0" encoding="UTF-8"?>
<postacert tipo="avvenuta-consegna" errore="nessuno">
  <intestazione>
    <mittente>mario.rossi@pec.example.test</mittente>
    <destinatari tipo="certificato">luigi.verdi@pec.example.org</destinatari>
    <risposte>mario.rossi@pec.example.test</risposte>
    <oggetto>prova</oggetto>
  </intestazione>
  <dati>
    <gestore-emittente>Example PEC S.p.A.</gestore-emittente>
    <data zona="+0100"><giorno>23/11/2026</giorno><ora>16:04:07</ora></data>
    <identificativo>pec1@pec.example.test</identificativo>
    <msgid>&lt;1@client.example.test&gt;</msgid>
    <ricevuta tipo="completa" />
    <consegna>luigi.verdi@pec.example.org</consegna>
  </dati>
</postacert>`)
	d, err := daticert.Parse(x)
	if err != nil {
		panic(err)
	}
	t, _ := d.Time()
	fmt.Println(d.Tipo, d.Consegna, d.Ricevuta, t.UTC().Format(time.RFC3339))
	// Output: avvenuta-consegna luigi.verdi@pec.example.org completa 2026-11-23T15:04:07Z
}
