package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// writers update the secret while readers read both paths, the
// config resizes the cache and Invalidate runs. After an update returns,
// a read of creds/<name> must answer that version or a later one: never an
// entry storage no longer holds.
func TestKeyCache_ConcurrentWritesNeverServeAReplacedEntry(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/hot", map[string]any{"provider": "anthropic", "api_key": anthropicKey("v0")})
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var stale, ok atomic.Int64
	// Readers: keep the cache warm and race the fills.
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				path := "keys/hot"
				if r%2 == 0 {
					path = "creds/hot"
				}
				_, _ = e.send(logical.ReadOperation, path, nil)
			}
		}()
	}
	// Resizes and invalidations.
	wg.Add(1)
	go func() {
		defer wg.Done()
		sizes := []int{0, 2, 10_000}
		for i := 0; !stop.Load(); i++ {
			_, _ = e.send(logical.UpdateOperation, "config", map[string]any{"key_cache_size": sizes[i%3]})
			e.b.Invalidate(ctx, "keys/hot")
		}
	}()
	// Writers: each checks a read after its write returned.
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 15 {
				resp, err := e.send(logical.UpdateOperation, "keys/hot", map[string]any{"api_key": anthropicKey(fmt.Sprintf("w%di%d", w, i))})
				if err != nil || resp == nil || resp.IsError() {
					continue
				}
				written, _ := resp.Data["version"].(int)
				ok.Add(1)
				got, err := e.send(logical.ReadOperation, "creds/hot", nil)
				if err != nil || got == nil {
					t.Errorf("read after write: %v %v", got, err)
					continue
				}
				if v := got.Data["version"].(int); v < written {
					stale.Add(1)
					t.Errorf("after the write of version %d returned, creds/hot answered version %d", written, v)
				}
			}
		}()
	}
	writers.Wait()
	t.Logf("successful writes: %d, cache len %d", ok.Load(), e.b.keyCache.len())
	stop.Store(true)
	wg.Wait()
	e.wantReadsMatchStorage("hot")
}

// delete and create again of one name, and a rename onto it, while
// readers race the fills: after each write returns, reads answer the uuid
// storage holds (or a 404 after the delete).
func TestKeyCache_ReadsRacingDeleteCreateAndRename(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/n", map[string]any{"provider": "anthropic", "api_key": anthropicKey("n0")})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			paths := []string{"keys/n", "creds/n", "keys/m", "creds/m"}
			for i := 0; !stop.Load(); i++ {
				_, _ = e.send(logical.ReadOperation, paths[(i+r)%4], nil)
			}
		}()
	}
	check := func(name, wantUUID string, when string) {
		resp, err := e.send(logical.ReadOperation, "creds/"+name, nil)
		switch {
		case err != nil:
			t.Errorf("%s: %v", when, err)
		case wantUUID == "" && resp != nil:
			t.Errorf("%s: creds/%s answered uuid %v, storage holds nothing", when, name, resp.Data["uuid"])
		case wantUUID != "" && (resp == nil || resp.Data["uuid"] != wantUUID):
			t.Errorf("%s: creds/%s answered %v, want uuid %s", when, name, resp, wantUUID)
		}
	}
	for i := range 12 {
		if resp, err := e.send(logical.DeleteOperation, "keys/n", nil); err != nil || resp.IsError() {
			t.Fatalf("delete: %v %v", resp, err)
		}
		check("n", "", "after the delete")
		resp, err := e.send(logical.CreateOperation, "keys/m", map[string]any{"provider": "anthropic", "api_key": anthropicKey(fmt.Sprintf("m%d", i))})
		if err != nil || resp.IsError() {
			t.Fatalf("create: %v %v", resp, err)
		}
		uuid := resp.Data["uuid"].(string)
		check("m", uuid, "after the create")
		if resp, err := e.send(logical.UpdateOperation, "rename/m", map[string]any{"new_name": "n"}); err != nil || resp.IsError() {
			t.Fatalf("rename: %v %v", resp, err)
		}
		check("n", uuid, "after the rename onto n")
		check("m", "", "after the rename away from m")
		if t.Failed() {
			break
		}
	}
	stop.Store(true)
	wg.Wait()
}

// lateStorage answers the first Put of key with the context's error at
// once, as the gRPC storage client does when the request's context ends,
// while the write goes on in Vault's storage and lands later (Raft commits
// a log entry it has accepted): land applies it.
type lateStorage struct {
	logical.Storage
	key     string
	mu      sync.Mutex
	pending *logical.StorageEntry
}

func (s *lateStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Key == s.key && s.pending == nil {
		s.pending = e
		return context.DeadlineExceeded
	}
	return s.Storage.Put(ctx, e)
}

func (s *lateStorage) land(t *testing.T, inner logical.Storage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		t.Fatal("no write of " + s.key + " was left pending")
	}
	if err := inner.Put(context.Background(), s.pending); err != nil {
		t.Fatal(err)
	}
}

// A key write that fails on the plugin's side but lands in storage after
// the write returned (a cancelled or timed-out gRPC storage call whose Raft
// entry commits): a read between the return and the landing must not fill
// the cache with the entry the landing replaces, or the cache would serve
// it for good. The name is never cached again.
func TestKeyCache_AWriteThatLandsAfterItFailedIsNotServedStale(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("late", anthropicKey("late1"), map[string]any{"rotation_period": "1h"})
	r.readBoth("late")

	late := &lateStorage{Storage: r.storage, key: keyStoragePrefix + "late"}
	resp, err := r.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.UpdateOperation, Path: "keys/late", Storage: late, MountPoint: "gradient/",
		Data: map[string]any{"description": "changed", "rotation_period": "2h"},
	})
	t.Logf("the update answered %v, %v", resp, err)
	r.readBoth("late") // between the failed write's return and its landing: fills the cache
	late.land(t, r.storage.Storage)

	stored, _ := getKey(context.Background(), r.storage, "late")
	got := r.mustOK(logical.ReadOperation, "keys/late", nil).Data
	if got["description"] != stored.Description || got["rotation_period"] != int64(stored.RotationPeriod.Seconds()) {
		t.Errorf("keys/late answers description %q rotation_period %v; storage holds %q %v",
			got["description"], got["rotation_period"], stored.Description, int64(stored.RotationPeriod.Seconds()))
	}
}

// The same with a new secret: after the late landing, creds/<name> answers
// the secret storage holds.
func TestKeyCache_ASecretWriteThatLandsAfterItFailedIsNotServedStale(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("late", anthropicKey("late1"), nil)
	r.readBoth("late")
	late := &lateStorage{Storage: r.storage, key: keyStoragePrefix + "late"}
	resp, err := r.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.UpdateOperation, Path: "keys/late", Storage: late, MountPoint: "gradient/",
		Data: map[string]any{"api_key": anthropicKey("late2")},
	})
	t.Logf("the update answered %v, %v", resp, err)
	r.readBoth("late")
	late.land(t, r.storage.Storage)
	stored, _ := getKey(context.Background(), r.storage, "late")
	creds := r.mustOK(logical.ReadOperation, "creds/late", nil).Data
	if creds["api_key"] != stored.APIKey || creds["version"] != stored.Version {
		t.Errorf("creds/late answers version %v (secret equal to storage's: %v); storage holds version %d",
			creds["version"], creds["api_key"] == stored.APIKey, stored.Version)
	}
	t.Logf("platform holds: %+v", r.state().AnthropicKeys)
}
