package postgres

import (
	"context"
	"testing"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/storetest"
)

// BenchmarkCommits: commit throughput on a local PostgreSQL with fsync
// and synchronous_commit on (a commit is on disk, as with SQLite's
// synchronous=FULL), one node and two nodes writing at once
// (go test -run '^$' -bench Commits ./store/postgres).
func BenchmarkCommits(b *testing.B) {
	pg := testenv.StartPostgresWith(b, true)
	for _, w := range []int{1, 2} {
		b.Run(map[int]string{1: "nodes=1", 2: "nodes=2"}[w], func(b *testing.B) {
			url := pg.NewDatabase(b)
			storetest.BenchCommits(b, w, func() store.Store {
				s, err := Open(context.Background(), url)
				if err != nil {
					b.Fatal(err)
				}
				return s
			})
		})
	}
}
