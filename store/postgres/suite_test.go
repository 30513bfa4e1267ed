package postgres

import (
	"context"
	"testing"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// TestSuite runs the backends' common behaviour suite on a real
// PostgreSQL server (Debian's postgresql package, started for the test);
// two handles are two nodes sharing the database.
func TestSuite(t *testing.T) {
	pg := testenv.StartPostgres(t)
	storetest.Run(t, storetest.Backend{New: func(t *testing.T) func() store.Store {
		url := pg.NewDatabase(t)
		return func() store.Store {
			s, err := Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}})
}
