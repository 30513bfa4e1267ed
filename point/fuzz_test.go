package point_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/pecgo/pec/point"
)

// The roles see hostile input from the Internet: no input may panic
// (a panic drops the milter connection and Postfix tempfails forever).
func FuzzRoles(f *testing.F) {
	files, _ := filepath.Glob("../build/testdata/golden/*.eml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("From: a@b\r\nTo: c@d\r\nX-Ricevuta: accettazione\r\nContent-Type: multipart/signed; boundary=x\r\n\r\n--x\r\n\r\n--x--\r\n"))
	f.Add([]byte("X-Trasporto: errore\r\n\r\n"))
	e := newIncoming(&testing.T{})
	in := e.incoming()
	ae := newEnv(&testing.T{})
	acc := ae.access(scanner{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		in.Check(context.Background(), point.Envelope{MailFrom: "x@mail.example.org", Rcpts: []string{luigi}}, raw, at)
		acc.Check(context.Background(), point.Envelope{MailFrom: mario, Rcpts: []string{luigi}, AuthUser: mario}, raw, at)
	})
}
