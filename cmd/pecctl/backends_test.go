package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/open"
	"github.com/pecgo/pec/store/postgres"
)

// backendFixture is a fixture on one real store backend.
type backendFixture struct {
	*fixture
	backend string // "sqlite" or "postgres"
	url     string // the PostgreSQL database ("" for SQLite)
}

// forBackends runs fn on the fixture in SQLite and in a fresh PostgreSQL
// database (the same rows, the same ids), each as a subtest.
func forBackends(t *testing.T, fn func(t *testing.T, f *backendFixture)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, &backendFixture{fixture: newFixture(t), backend: "sqlite"})
	})
	t.Run("postgres", func(t *testing.T) {
		pg := testenv.StartPostgres(t)
		f := newFixture(t)
		url := pg.NewDatabase(t)
		st, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		f.all = fillFixture(t, st)
		st.Close()
		src, err := os.ReadFile(f.cfg)
		if err != nil {
			t.Fatal(err)
		}
		c := strings.Replace(string(src), fmt.Sprintf("path = %q\n", f.db), fmt.Sprintf("url = %q\ndir = %q\n", url, f.dir), 1)
		if err := os.WriteFile(f.cfg, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		fn(t, &backendFixture{fixture: f, backend: "postgres", url: url})
	})
}

// open opens the fixture's configured store.
func (f *backendFixture) open(t *testing.T) store.Store {
	t.Helper()
	cfg, err := loadConfig(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := open.Existing(context.Background(), cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
