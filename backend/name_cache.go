package backend

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// nameCache remembers which names each provider's keys have on the platform,
// for the duplicate-name check on create. The platform cannot filter keys by
// name, so the check lists every key of the provider; the cache lets a bulk
// import pay for one listing per ttl instead of one per key, and singleflight
// lets concurrent creates share one listing in flight. The plugin's own
// creates, renames and deletes update the cached names directly, so a cached
// listing stays correct for everything this mount does.
type nameCache struct {
	mu        sync.Mutex
	snapshots map[string]*nameSnapshot // by provider
	flight    singleflight.Group
	now       func() time.Time
}

type nameSnapshot struct {
	fetched time.Time
	uuids   map[string]string // name -> uuid of the first key with that name
}

// newNameCache reads the time from now, the backend's clock.
func newNameCache(now func() time.Time) *nameCache {
	return &nameCache{snapshots: map[string]*nameSnapshot{}, now: now}
}

// lookup returns the uuid of a platform key of provider named name, or "".
// With ttl 0 every call lists the platform (concurrent calls still share one
// listing in flight). The shared listing runs detached from any one
// caller's cancellation, bounded by timeout: one caller that gives up must
// not fail the others waiting on the same listing.
func (c *nameCache) lookup(ctx context.Context, p platform.Client, provider, name string, ttl, timeout time.Duration) (string, error) {
	c.mu.Lock()
	snap := c.snapshots[provider]
	if snap != nil && ttl > 0 && c.now().Sub(snap.fetched) < ttl {
		uuid := snap.uuids[name]
		c.mu.Unlock()
		return uuid, nil
	}
	c.mu.Unlock()

	flight := c.flight.DoChan(provider, func() (any, error) {
		// A listing that finished between the check above and this flight
		// is as good as a new one.
		c.mu.Lock()
		snap := c.snapshots[provider]
		c.mu.Unlock()
		if snap != nil && ttl > 0 && c.now().Sub(snap.fetched) < ttl {
			return snap, nil
		}
		started := c.now()
		listCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		keys, err := p.ListKeys(listCtx, provider)
		if err != nil {
			return nil, err
		}
		fresh := &nameSnapshot{fetched: started, uuids: make(map[string]string, len(keys))}
		for _, k := range keys {
			if _, seen := fresh.uuids[k.Name]; !seen {
				fresh.uuids[k.Name] = k.UUID
			}
		}
		c.mu.Lock()
		c.snapshots[provider] = fresh
		c.mu.Unlock()
		return fresh, nil
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-flight:
		if res.Err != nil {
			return "", res.Err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		return res.Val.(*nameSnapshot).uuids[name], nil
	}
}

// put records that this mount gave a platform key the name.
func (c *nameCache) put(provider, name, uuid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if snap := c.snapshots[provider]; snap != nil {
		snap.uuids[name] = uuid
	}
}

// remove records that no platform key has the name any more (after this
// mount deleted or renamed the key that had it).
func (c *nameCache) remove(provider, name, uuid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if snap := c.snapshots[provider]; snap != nil && snap.uuids[name] == uuid {
		delete(snap.uuids, name)
	}
}

// reset forgets everything, e.g. when config points at another platform.
func (c *nameCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snapshots = map[string]*nameSnapshot{}
}
