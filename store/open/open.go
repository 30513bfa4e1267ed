// Package open opens the store that pec.toml names: [store] url
// (PostgreSQL, shared by the nodes of a cluster) or [store] path (SQLite,
// one machine). It is the only package that imports both backends; the
// contract (package store) imports neither.
package open

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/postgres"
	"github.com/pecgo/pec/store/sqlite"
)

// Open opens the configured store, creating it (SQLite file, PostgreSQL
// schema) if needed and bringing its schema up to date. The daemons call it.
func Open(ctx context.Context, cfg config.Store) (store.Store, error) {
	switch {
	case cfg.URL != "" && cfg.Path != "":
		return nil, errors.New("store: [store] sets both path and url: keep the one this node uses")
	case cfg.URL != "":
		return openURL(ctx, cfg.URL)
	default:
		st, err := sqlite.Open(cfg.Path)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
}

// Existing opens the configured store only if it exists: for the
// operator's tool, where a wrong path must not yield an empty log that
// "verifies". A PostgreSQL store exists when its schema was created by a
// daemon.
func Existing(ctx context.Context, cfg config.Store) (store.Store, error) {
	switch {
	case cfg.URL != "" && cfg.Path != "":
		return nil, errors.New("store: [store] sets both path and url: keep the one this node uses")
	case cfg.URL != "":
		st, err := postgres.OpenExisting(ctx, cfg.URL)
		if err != nil {
			return nil, err
		}
		return st, nil
	case cfg.Path == "":
		return nil, errors.New("neither [store] path nor [store] url is set in the configuration")
	}
	if _, err := os.Stat(cfg.Path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("store %s does not exist: check [store] path in the configuration", cfg.Path)
		}
		return nil, fmt.Errorf("store %s: %w", cfg.Path, err)
	}
	return Open(ctx, cfg)
}

func openURL(ctx context.Context, url string) (store.Store, error) {
	st, err := postgres.Open(ctx, url)
	if err != nil {
		return nil, err // not a nil *postgres.Store in a non-nil interface
	}
	return st, nil
}
