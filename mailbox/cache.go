package mailbox

import (
	"strings"
	"sync"
	"time"

	"github.com/pecgo/pec/point"
	"github.com/pecgo/pec/store"
)

// DefaultCacheTTL is how long Cache keeps a mailbox's row.
const DefaultCacheTTL = 10 * time.Second

// maxCacheEntries bounds the cache: past it the expired entries go, and
// all of them if that is not enough.
const maxCacheEntries = 50000

// Cache is the registry as the points read it (point.MailboxRegistry):
// each address's row is read from the store at most once per TTL, so a
// change made with pecctl mailbox is in force within TTL on every node,
// without a restart. Errors are not cached: a store that cannot be read
// makes the caller fail closed.
type Cache struct {
	Store    store.Mailboxes
	TTL      time.Duration // 0: DefaultCacheTTL
	ReadOnly time.Duration // the read-only period; 0: DefaultReadOnly
	// Wall gives the time the entries age by (nil: time.Now); the state
	// itself is judged at the instant the caller passes.
	Wall func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	m       store.Mailbox
	ok      bool
	fetched time.Time
}

var _ point.MailboxRegistry = (*Cache)(nil)

func (c *Cache) wall() time.Time {
	if c.Wall == nil {
		return time.Now()
	}
	return c.Wall()
}

func (c *Cache) get(addr string) (store.Mailbox, bool, error) {
	addr = strings.ToLower(addr)
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	now := c.wall()
	c.mu.Lock()
	e, hit := c.entries[addr]
	c.mu.Unlock()
	if hit && now.Sub(e.fetched) < ttl && !now.Before(e.fetched) {
		return e.m, e.ok, nil
	}
	m, ok, err := c.Store.Mailbox(addr)
	if err != nil {
		return store.Mailbox{}, false, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	if len(c.entries) >= maxCacheEntries {
		// mail to many unknown addresses must not grow it without end
		for a, e := range c.entries {
			if now.Sub(e.fetched) >= ttl || now.Before(e.fetched) {
				delete(c.entries, a)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			clear(c.entries)
		}
	}
	c.entries[addr] = cacheEntry{m: m, ok: ok, fetched: now}
	c.mu.Unlock()
	return m, ok, nil
}

// MailboxStatus implements point.MailboxRegistry.
func (c *Cache) MailboxStatus(addr string, now time.Time) (point.MailboxStatus, bool, error) {
	m, ok, err := c.get(addr)
	if err != nil || !ok {
		return point.MailboxStatus{}, false, err
	}
	return point.MailboxStatus{State: Effective(m, now, c.ReadOnly), Options: m.Options}, true, nil
}

// MailboxOptions implements point.MailboxRegistry.
func (c *Cache) MailboxOptions(addr string) (store.MailboxOptions, bool, error) {
	m, ok, err := c.get(addr)
	return m.Options, ok, err
}
