package build_test

import (
	"bytes"
	"crypto/x509"
	"strings"
	"testing"

	"github.com/pecgo/pec/build"
	"github.com/pecgo/pec/daticert"
	"github.com/pecgo/pec/verify"
)

// bigOriginal is the fixture with a 1 MB attachment (base64, 76 columns).
func bigOriginal() string {
	line := strings.Repeat("QUJD", 19) + "\r\n"
	return strings.Replace(original, "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg==\r\n",
		strings.Repeat(line, (1<<20)/len(line)), 1)
}

func benchEnvelope(b *testing.B, raw string) {
	f := newFixture(b)
	o, err := build.ParseOriginal([]byte(raw))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := o.Tx(f.a.NewIDAt(at), o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
		if _, err := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"}); err != nil {
			b.Fatal(err)
		}
		if _, err := f.a.Accettazione(at, tx); err != nil {
			b.Fatal(err)
		}
	}
}

// One acceptance: the signed transport envelope plus the signed receipt.
func BenchmarkAcceptSmall(b *testing.B) { benchEnvelope(b, original) }
func BenchmarkAccept1MB(b *testing.B)   { benchEnvelope(b, bigOriginal()) }

func BenchmarkVerify1MB(b *testing.B) {
	f := newFixture(b)
	o, _ := build.ParseOriginal([]byte(bigOriginal()))
	tx := o.Tx("pec1@pec-a.example.test", o.From[0], func(string) daticert.DestTipo { return daticert.Certificato })
	m, _ := f.a.TransportEnvelope(at, tx, o, []string{"luigi.verdi@pec-b.example.test"})
	raw := m.Bytes()
	pool := x509.NewCertPool()
	pool.AddCert(f.pki.Root.Cert)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if r := verify.Message(raw, pool); !r.Valid() {
			b.Fatal(r.Err)
		}
	}
	_ = bytes.MinRead
}
