package sqlite

import (
	"github.com/pecgo/pec/store"

	"testing"
	"time"
)

// Claims record their owner; a claim ends when its item is sent, retried
// or released; ReleaseClaimsOf gives back only the named owner's items
// that it still holds.
func TestClaimOwners(t *testing.T) {
	s, _ := openTemp(t)
	for i := 0; i < 4; i++ {
		if err := s.Commit(acceptance(i, t0)); err != nil {
			t.Fatal(err)
		}
	}
	dead := store.ClaimOwner{Host: "mx1", PID: 4242, Instance: "pecmilter-1", Proc: "boot ns 17"}
	live := store.ClaimOwner{Host: "mx1", PID: 4343, Instance: "pecdeliver-1"}
	const lease = 10 * time.Minute
	d, err := s.Claim(dead, t0, lease, 3)
	if err != nil || len(d) != 3 {
		t.Fatalf("Claim = %d, %v", len(d), err)
	}
	if l, err := s.Claim(live, t0, lease, 3); err != nil || len(l) != 1 || l[0].ID != d[2].ID+1 {
		t.Fatalf("second Claim = %+v, %v; want the one unclaimed item", l, err)
	}
	// the dead owner sent one item and scheduled a retry of another
	if err := s.MarkSent(d[0].ID, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRetry(d[1].ID, "451", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	h, err := s.ClaimHolders()
	if err != nil || len(h) != 2 || h[0].ClaimOwner != dead || h[0].Items != 1 || !h[0].Until.Equal(t0.Add(lease)) ||
		h[1].ClaimOwner != live || h[1].Items != 1 {
		t.Fatalf("ClaimHolders = %+v, %v; want one item each", h, err)
	}

	at := t0.Add(2 * time.Second)
	if n, err := s.ReleaseClaimsOf(dead, at); n != 1 || err != nil {
		t.Fatalf("ReleaseClaimsOf = %d, %v; want 1", n, err)
	}
	due, _ := s.DuePending(at, 10)
	if len(due) != 1 || due[0].ID != d[2].ID {
		t.Fatalf("due after release: %+v; want only item %d (the retry waits an hour, the live claim stays)", due, d[2].ID)
	}
	if h, _ := s.ClaimHolders(); len(h) != 1 || h[0].ClaimOwner != live {
		t.Errorf("ClaimHolders after release = %+v", h)
	}
	if n, err := s.ReleaseClaimsOf(dead, at); n != 0 || err != nil {
		t.Errorf("second ReleaseClaimsOf = %d, %v; want 0", n, err)
	}

	// an item taken over after its lease belongs to the new owner only
	later := t0.Add(lease)
	taken, err := s.Claim(dead, later, lease, 10)
	if err != nil || len(taken) != 2 {
		t.Fatalf("Claim after the lease = %d, %v; want the released item and the live owner's expired one", len(taken), err)
	}
	if n, _ := s.ReleaseClaimsOf(live, later); n != 0 {
		t.Errorf("released %d items of an owner whose claims were taken over", n)
	}
	if h, _ := s.ClaimHolders(); len(h) != 1 || h[0].ClaimOwner != dead || h[0].Items != 2 {
		t.Errorf("ClaimHolders after takeover = %+v", h)
	}
}
