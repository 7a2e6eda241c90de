package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/hashicorp/vault/sdk/logical"
)

// The key cache keeps decoded key entries for the two hot reads,
// keys/<name> and creds/<name>, so that a read makes no storage call, as
// Vault's transit engine keeps its policies. Its one promise: a read never
// returns an entry that storage no longer holds once the write that
// replaced it has returned. Why that holds:
//
//   - Every write of the mount's storage passes through cacheKeepingStorage:
//     HandleRequest (requests, renewals, revocations, the periodic rollback
//     and the periodic function) and Initialize (the schedulers) hand it to
//     everything below them, and nothing else in the plugin reaches storage
//     (TestKeyCache_EveryStorageComesThroughTheWrapper). A write or delete
//     of keys/<name> forgets the name before and after it is made. A write
//     that fails may still land later (a Raft entry committed after the call
//     gave up): its name is never cached again by this backend.
//   - A read that misses fills the cache only if no key write began or
//     ended while it read storage (the write count), so a slow read can
//     never put back what a write replaced meanwhile.
//   - Writes that do not pass through this process reach the cache through
//     Invalidate (replication, performance standbys): it forgets the name.
//     The cache is kept only where no such write happens (the active node
//     of a primary or a local mount, Vault's WriteSafeReplicationState), so
//     even a missed invalidation cannot matter.
//   - What Vault itself does to storage behind the plugin's back (a Raft
//     snapshot restore, a remount, a seal) it does only after tearing the
//     mount down, and a reload, an upgrade or a failover starts a new
//     backend: each starts with an empty cache (acceptance
//     TestCluster/cached_reads_*).
//
// Entries are shared by concurrent reads and must never be changed: the
// read handlers only read them (TestKeyCache_ReadsDoNotChangeTheEntry), and
// every change road reads its own copy from storage under the name's lock.
type keyCache struct {
	mu sync.Mutex
	// entries is nil while the cache is off.
	entries *simplelru.LRU[string, cachedKey]
	// bytes is what the entries held are estimated to take in memory; it
	// never exceeds keyCacheMaxBytes.
	bytes int
	// writes counts the key writes begun and ended and the invalidations;
	// a fill compares it before and after its storage read.
	writes uint64
	// doubtful are the names whose write failed: a failed write may still
	// land later (a Raft entry committed after the call gave up), after
	// any fill could be checked against it, so these names are never
	// cached again by this backend. Past maxDoubtfulNames the cache turns
	// itself off until the plugin restarts (off).
	doubtful map[string]struct{}
	off      bool
	// maxBytes is keyCacheMaxBytes unless a test sets it.
	maxBytes int
}

// cachedKey is an entry with what it is estimated to take in memory.
type cachedKey struct {
	k    *keyEntry
	cost int
}

const (
	// defaultKeyCacheSize is how many decoded entries a mount keeps when
	// config sets no key_cache_size: every key of a mount of 10,000, about
	// 10 MiB of typical entries (BenchmarkKeyCache_Memory).
	defaultKeyCacheSize = 10_000
	// maxKeyCacheSize bounds key_cache_size.
	maxKeyCacheSize = 100_000
	// keyCacheMaxBytes bounds the memory the entries take, whatever their
	// number and size: a key with a long description and a hundred
	// waiting retirements takes seven times a typical one.
	keyCacheMaxBytes = 128 << 20
	// entryOverhead is added to twice an entry's stored size to estimate
	// what its decoded form takes (a typical entry takes about 1.6 times
	// its JSON, the largest about 1.4 times); the estimate is never below
	// what was measured (TestKeyCache_CostIsNeverBelowTheMemoryTaken).
	entryOverhead = 512
	// maxDoubtfulNames bounds the names remembered after failed writes.
	maxDoubtfulNames = 1_000
)

// get returns the entry stored under name, from memory when the cache
// holds it, or nil when there is none.
func (c *keyCache) get(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	c.mu.Lock()
	if c.entries != nil {
		if v, ok := c.entries.Get(name); ok {
			c.mu.Unlock()
			return v.k, nil
		}
	}
	before := c.writes
	c.mu.Unlock()

	entry, err := s.Get(ctx, keyStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", keyWhat(name), err)
	}
	k, err := decodeJSON[keyEntry](entry, keyWhat(name))
	if err != nil || k == nil {
		// A missing name is not remembered: a 404 is rare, and a create
		// would have to forget it.
		return k, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cost := entryCost(entry)
	_, doubtful := c.doubtful[name]
	if c.entries == nil || c.writes != before || doubtful || cost > c.byteBound() {
		return k, nil
	}
	c.entries.Add(name, cachedKey{k: k, cost: cost})
	c.bytes += cost
	for c.bytes > c.byteBound() {
		c.entries.RemoveOldest()
	}
	return k, nil
}

// entryCost estimates what the decoded form of a stored entry takes.
func entryCost(e *logical.StorageEntry) int { return 2*len(e.Value) + entryOverhead }

func (c *keyCache) byteBound() int {
	if c.maxBytes > 0 {
		return c.maxBytes
	}
	return keyCacheMaxBytes
}

// forget drops name and tells fills in flight that a write happened.
func (c *keyCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.entries != nil {
		c.entries.Remove(name)
	}
}

// distrust forgets name for good: a write of it failed.
func (c *keyCache) distrust(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	if c.doubtful == nil {
		c.doubtful = map[string]struct{}{}
	}
	c.doubtful[name] = struct{}{}
	if c.entries != nil {
		c.entries.Remove(name)
	}
	if len(c.doubtful) > maxDoubtfulNames {
		c.off, c.entries, c.bytes = true, nil, 0
	}
}

// resize keeps at most size entries, the least recently read going first;
// 0 turns the cache off and empties it.
func (c *keyCache) resize(size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	switch {
	case size <= 0 || c.off:
		c.entries, c.bytes = nil, 0
	case c.entries == nil:
		// NewLRU fails only for a size below 1.
		c.entries, _ = simplelru.NewLRU(size, func(_ string, v cachedKey) { c.bytes -= v.cost })
	default:
		c.entries.Resize(size)
	}
}

// len is how many entries the cache holds.
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		return 0
	}
	return c.entries.Len()
}

// cacheKeepingStorage is the mount's storage as every part of the plugin
// sees it: writes of keys/<name> keep the key cache right.
type cacheKeepingStorage struct {
	logical.Storage
	cache *keyCache
}

func (s cacheKeepingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	return s.write(e.Key, func() error { return s.Storage.Put(ctx, e) })
}

func (s cacheKeepingStorage) Delete(ctx context.Context, key string) error {
	return s.write(key, func() error { return s.Storage.Delete(ctx, key) })
}

// write forgets a key entry before and after it is written; a failed write
// makes the name doubtful for good.
func (s cacheKeepingStorage) write(key string, write func() error) error {
	name, isKey := strings.CutPrefix(key, keyStoragePrefix)
	if !isKey {
		return write()
	}
	s.cache.forget(name)
	err := write()
	if err != nil {
		s.cache.distrust(name)
	} else {
		s.cache.forget(name)
	}
	return err
}

// keepingCache wraps s, once.
func (b *gradientBackend) keepingCache(s logical.Storage) logical.Storage {
	if s == nil {
		return nil
	}
	if w, wrapped := s.(cacheKeepingStorage); wrapped && w.cache == b.keyCache {
		return s
	}
	return cacheKeepingStorage{Storage: s, cache: b.keyCache}
}

// readKey is getKey for the read handlers: from the cache when the config
// allows it. The cache is sized from the config the clients are built
// from, so a mount whose config turns it off never fills it, also right
// after a restart.
func (b *gradientBackend) readKey(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	if _, err := b.clients(ctx, s); err != nil {
		// Not configured, or the config cannot be read: storage answers.
		return getKey(ctx, s, name)
	}
	return b.keyCache.get(ctx, s, name)
}

// sizeKeyCache applies cfg's key_cache_size, or turns the cache off where
// writes can reach storage without passing through this process.
func (b *gradientBackend) sizeKeyCache(cfg *gradientConfig) {
	size := cfg.keyCacheSize()
	if b.System() != nil && !b.WriteSafeReplicationState() {
		size = 0
	}
	b.keyCache.resize(size)
}

// keyCacheSize is the config's key_cache_size, or the default.
func (c *gradientConfig) keyCacheSize() int {
	if c.KeyCacheSize == nil {
		return defaultKeyCacheSize
	}
	return *c.KeyCacheSize
}
