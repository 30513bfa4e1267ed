package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// TestSuite runs the backends' common behaviour suite on SQLite; two
// handles are two processes sharing the file.
func TestSuite(t *testing.T) {
	storetest.Run(t, storetest.Backend{New: func(t *testing.T) func() store.Store {
		path := filepath.Join(t.TempDir(), "pec.db")
		return func() store.Store {
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}})
}
