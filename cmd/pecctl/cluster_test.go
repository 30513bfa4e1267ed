package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pecgo/pec/index"
	"github.com/pecgo/pec/internal/service"
	"github.com/pecgo/pec/internal/testenv"
	"github.com/pecgo/pec/store"
	"github.com/pecgo/pec/store/postgres"
)

// TestCluster: two nodes' pecctl on one PostgreSQL store. The daily
// archive is written once for the cluster (the second node names the
// first and where the archive is), `log verify` passes while another
// process appends, and `index sync` publishes the copy every node reads.
func TestCluster(t *testing.T) {
	pg := testenv.StartPostgres(t)
	url := pg.NewDatabase(t)
	st, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, txn := range fixtureTxns() {
		if err := st.Commit(txn); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t) // keys, roots and an index for the configurations
	if err := os.WriteFile(filepath.Join(f.dir, "providers.ldif"), index.TestLDIF(index.TestProvider{Name: provName, Domains: []string{provDom},
		Certs: []*x509.Certificate{f.prov.Cert}}), 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	var cfgs []string
	for i := 1; i <= 2; i++ {
		dir := filepath.Join(f.dir, fmt.Sprint("node", i))
		os.Mkdir(dir, 0o755)
		c := strings.Replace(string(src), fmt.Sprintf("path = %q\n", f.db), fmt.Sprintf("url = %q\ndir = %q\n", url, dir), 1)
		c = strings.Replace(c, fmt.Sprintf("cache_dir = %q", filepath.Join(f.dir, "index-cache")), fmt.Sprintf("cache_dir = %q", filepath.Join(dir, "index")), 1)
		p := filepath.Join(dir, "pec.toml")
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, p)
	}
	code, out, errOut := runCmd("log", "archive", "--day", "2024-03-02", "-config", cfgs[0])
	if code != 0 || !strings.Contains(out, "archived 2024-03-02") {
		t.Fatalf("node 1 archive: %d %s %s", code, out, errOut)
	}
	code, out, errOut = runCmd("log", "archive", "--day", "2024-03-02", "-config", cfgs[1])
	if code != 0 || !strings.Contains(out, "was written by node") || !strings.Contains(out, "node1") {
		t.Fatalf("node 2 archive: %d %q %s; want the node that wrote it", code, out, errOut)
	}
	if m, _ := filepath.Glob(filepath.Join(f.dir, "node2", "archive", "*")); len(m) != 0 {
		t.Fatalf("node 2 wrote %v", m)
	}
	if code, out, _ := runCmd("log", "archive", "--verify", "--day", "2024-03-02", "-config", cfgs[0]); code != 0 {
		t.Fatalf("verify of node 1's archive: %d %s", code, out)
	}

	// log verify while another node appends
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			at := time.Now()
			if err := st.Commit(store.Txn{Events: []store.Event{{Time: at, Point: "access", Type: "accettazione", PECID: fmt.Sprint("live-", i)}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := 0; i < 5; i++ {
		if code, out, errOut := runCmd("log", "verify", "-config", cfgs[1]); code != 0 || !strings.Contains(out, "intact") {
			t.Errorf("log verify while writing: %d %s %s", code, out, errOut)
		}
	}
	close(stop)
	wg.Wait()

	// index sync publishes the cluster's copy
	if code, out, errOut := runCmd("index", "sync", "-config", cfgs[0]); code != 0 || !strings.Contains(out, "published") {
		t.Fatalf("index sync: %d %s %s", code, out, errOut)
	}
	if data, _, ok, err := st.GetShared(service.SharedIndexName); !ok || err != nil || !strings.Contains(string(data), provDom) {
		t.Fatalf("shared copy: %v %v %q", ok, err, data)
	}
}
