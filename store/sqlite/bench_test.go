package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// BenchmarkCommits: commit throughput with one writer and with two
// processes writing one file (go test -run '^$' -bench Commits ./store/sqlite).
func BenchmarkCommits(b *testing.B) {
	for _, w := range []int{1, 2} {
		b.Run(map[int]string{1: "writers=1", 2: "writers=2"}[w], func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "pec.db")
			storetest.BenchCommits(b, w, func() store.Store {
				s, err := Open(path)
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
