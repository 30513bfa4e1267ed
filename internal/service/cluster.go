package service

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pecgo/pec/config"
	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/store"
)

// The providers' index on a cluster (several nodes on one PostgreSQL
// store) is fetched from its source once for the cluster, not once per
// node: the copy lives in the store (store.Shared) and every node serves
// it, each keeping its own last good copy on disk as before.

// SharedIndexName is the store document holding the cluster's copy.
const SharedIndexName = "providers-index.ldif"

// ClusterSource is an index.Source for a node of a cluster. Fetch returns
// the cluster's copy while it is younger than Refresh; an older (or no)
// copy is refetched from Source by one node only, the one that takes the
// lease "index-fetch" (held for Lease: a node that dies while fetching is
// replaced after it), which then publishes it. The others keep the copy
// they have until it is published.
type ClusterSource struct {
	Source  index.Source
	Store   ClusterStore
	Holder  string           // who this node is, for the lease
	Refresh time.Duration    // default 24 h (RFC 6109 §4.5: a daily copy)
	Lease   time.Duration    // default 10 min
	Now     func() time.Time // default time.Now
	Log     *slog.Logger
}

// ClusterStore is what ClusterSource needs of the store.
type ClusterStore interface {
	store.Leases
	store.Shared
}

// Fetch implements index.Source.
func (c *ClusterSource) Fetch(ctx context.Context) (*index.Index, error) {
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	refresh, lease := c.Refresh, c.Lease
	if refresh == 0 {
		refresh = 24 * time.Hour
	}
	if lease == 0 {
		lease = 10 * time.Minute
	}
	data, at, ok, err := c.Store.GetShared(SharedIndexName)
	if err != nil {
		return nil, err
	}
	if ok && now.Sub(at) < refresh {
		return c.parse(data, at)
	}
	held, st, err := c.Store.Lease("index-fetch", c.Holder, now, lease)
	if err != nil {
		return nil, err
	}
	if !held {
		if ok {
			return c.parse(data, at)
		}
		return nil, fmt.Errorf("index: node %s is fetching the providers' index for the cluster (until %s) and has published no copy yet",
			st.Holder, st.Until.Format(time.RFC3339))
	}
	// the node that held the lease before may have published meanwhile
	if data, at, ok, err := c.Store.GetShared(SharedIndexName); err != nil {
		c.Store.Unlease("index-fetch", c.Holder)
		return nil, err
	} else if ok && now.Sub(at) < refresh {
		c.Store.Unlease("index-fetch", c.Holder)
		return c.parse(data, at)
	}
	ix, err := c.Source.Fetch(ctx)
	if err != nil {
		c.Store.Unlease("index-fetch", c.Holder) // let another node try
		return nil, err
	}
	var buf bytes.Buffer
	if err := ix.WriteLDIF(&buf); err != nil {
		return nil, err
	}
	if err := c.Store.PutShared(SharedIndexName, buf.Bytes(), now); err != nil {
		return nil, err
	}
	if c.Log != nil {
		c.Log.Info("providers' index fetched for the cluster and published in the store", "providers", ix.Len(), "node", c.Holder)
	}
	c.Store.Unlease("index-fetch", c.Holder)
	return ix, nil
}

func (c *ClusterSource) parse(data []byte, at time.Time) (*index.Index, error) {
	ix, err := index.ParseLDIF(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("index: the cluster's copy in the store (published %s) does not parse: %w; run pecctl index sync", at.Format(time.RFC3339), err)
	}
	return ix, nil
}

// NodeName names this node for cluster leases: its host name and its
// local directory ([store] dir, where its archives and index cache are),
// e.g. "mx1:/var/lib/pec".
func NodeName(cfg *config.Config) string {
	host, _ := os.Hostname()
	return host + ":" + cfg.Store.Dir
}

// OpenClusterIndex is OpenIndex for a node of a cluster: the source is a
// ClusterSource over st, and the node looks at the cluster's copy hourly.
func OpenClusterIndex(ctx context.Context, cfg *config.Config, st ClusterStore, log *slog.Logger) (*Index, error) {
	src, err := IndexSource(cfg)
	if err != nil {
		return nil, err
	}
	cs := &ClusterSource{Source: src, Store: st, Holder: NodeName(cfg) + "/" + filepath.Base(os.Args[0]), Log: log}
	return openIndexFrom(ctx, cfg, cs, time.Hour, log)
}
