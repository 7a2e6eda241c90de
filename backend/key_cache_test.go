package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// checkKeyWriteKeepsTheCache records a write of a key entry that did not
// pass through cacheKeepingStorage. Every test's storage runs it, so every
// road the suite drives (requests, the schedulers, the rollback, the sync,
// repairs, retirements) is checked; a test that writes storage itself, as
// another node or an earlier version would, is allowed to.
func (s *faultyStorage) checkKeyWriteKeepsTheCache(key string) {
	if !strings.HasPrefix(key, keyStoragePrefix) {
		return
	}
	pcs := make([]uintptr, 64)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		switch {
		case strings.Contains(f.Function, "cacheKeepingStorage"):
			return
		case strings.HasSuffix(f.File, "_test.go") && !strings.Contains(f.Function, "faultyStorage"):
			return
		case !strings.HasSuffix(f.File, "_test.go") && !strings.HasSuffix(f.File, "keys_storage.go") && strings.Contains(f.Function, "vault-plugin-secrets-gradient/backend."):
			s.mu.Lock()
			s.bypassed = append(s.bypassed, key+" from "+f.Function)
			s.mu.Unlock()
			return
		}
		if !more {
			return
		}
	}
}

// assertCacheHoldsWhatStorageHolds runs at the end of every test: each
// entry the key cache holds is the one storage holds, and no write passed
// around the cache.
func (e *testEnv) assertCacheHoldsWhatStorageHolds() {
	e.t.Helper()
	e.storage.mu.Lock()
	bypassed := e.storage.bypassed
	e.storage.mu.Unlock()
	for _, b := range bypassed {
		e.t.Errorf("a key entry was written around the key cache: %s", b)
	}
	for name, cached := range e.b.keyCache.snapshot() {
		stored, err := getKey(context.Background(), e.storage.Storage, name)
		if err != nil {
			e.t.Errorf("reading %s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(cached, stored) {
			e.t.Errorf("the key cache holds for %q\n%+v\nwhile storage holds\n%+v", name, cached, stored)
		}
	}
}

// snapshot is what the cache holds, for tests.
func (c *keyCache) snapshot() map[string]*keyEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	got := map[string]*keyEntry{}
	if c.entries != nil {
		for _, name := range c.entries.Keys() {
			k, _ := c.entries.Peek(name)
			got[name] = k
		}
	}
	return got
}

// readBoth reads keys/<name> and creds/<name> and returns the two answers'
// data; creds' lease is revoked by nobody: leases are Vault's.
func (e *testEnv) readBoth(name string) (key, creds map[string]any) {
	e.t.Helper()
	return e.mustOK(logical.ReadOperation, "keys/"+name, nil).Data,
		e.mustOK(logical.ReadOperation, "creds/"+name, nil).Data
}

// wantReadsMatchStorage reads name through both paths and checks the
// answers against the entry storage holds: the secret, the uuid and the
// version, and the whole of keys/<name>'s answer against what a mount
// without a cache answers.
func (e *testEnv) wantReadsMatchStorage(name string) {
	e.t.Helper()
	stored, err := getKey(context.Background(), e.storage.Storage, name)
	if err != nil {
		e.t.Fatal(err)
	}
	if stored == nil {
		for _, path := range []string{"keys/", "creds/"} {
			if resp, err := e.request(logical.ReadOperation, path+name, nil); err != nil || resp != nil {
				e.t.Errorf("%s%s: storage holds nothing, the read answered %v, %v", path, name, resp, err)
			}
		}
		return
	}
	key, creds := e.readBoth(name)
	if creds["api_key"] != stored.APIKey || creds["uuid"] != stored.UUID || creds["version"] != stored.Version {
		e.t.Errorf("creds/%s answered uuid %v version %v (secret equal: %v); storage holds uuid %s version %d",
			name, creds["uuid"], creds["version"], creds["api_key"] == stored.APIKey, stored.UUID, stored.Version)
	}
	want, err := e.b.handleKeyRead(context.Background(), &logical.Request{Storage: e.storage}, nil, stored)
	if err != nil {
		e.t.Fatal(err)
	}
	if !reflect.DeepEqual(key, want.Data) {
		e.t.Errorf("keys/%s answered\n%v\nstorage's entry answers\n%v", name, key, want.Data)
	}
}

// With the cache on (the default), a read of keys/<name> or creds/<name>
// that the cache holds makes no storage call and no platform call.
func TestKeyCache_ReadsMakeNoStorageCall(t *testing.T) {
	e := newSyncEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/hot", map[string]any{"provider": "anthropic", "api_key": anthropicKey("hot")})
	e.readBoth("hot")
	calls := e.platformCalls()
	e.storage.takeGets()
	for range 3 {
		e.readBoth("hot")
	}
	if got := e.storage.takeGets(); len(got) != 0 {
		t.Errorf("cached reads read storage: %v", got)
	}
	if n := e.platformCalls() - calls; n != 0 {
		t.Errorf("cached reads made %d platform calls", n)
	}
	e.wantReadsMatchStorage("hot")
}

// After every kind of change the plugin makes, a read returns what storage
// holds, never what the cache held before: each step first fills the cache
// with a read.
func TestKeyCache_ReadAfterEachChangeReturnsWhatStorageHolds(t *testing.T) {
	r := newSyncEnv(t, nil)
	ctx := context.Background()
	fill := func(names ...string) {
		for _, n := range names {
			if k, _ := getKey(ctx, r.storage, n); k != nil {
				r.readBoth(n)
			}
		}
	}
	uuid := r.createKey("k", anthropicKey("k1"), map[string]any{"rotation_period": "1h"})
	steps := []struct {
		name   string
		change func()
		read   []string
	}{
		{"update of the secret", func() {
			r.mustOK(logical.UpdateOperation, "keys/k", map[string]any{"api_key": anthropicKey("k2")})
		}, []string{"k"}},
		{"description update", func() {
			r.mustOK(logical.UpdateOperation, "keys/k", map[string]any{"description": "changed"})
		}, []string{"k"}},
		{"rotate now", func() {
			r.stage("k", anthropicKey("k3"))
			r.mustOK(logical.UpdateOperation, "keys/k/rotate", nil)
		}, []string{"k"}},
		{"scheduled rotation by the scheduler", func() {
			r.stage("k", anthropicKey("k4"))
			r.advance(2 * time.Hour)
			r.tick()
		}, []string{"k"}},
		{"the periodic sync sees drift", func() {
			r.modifyOutside(uuid, anthropicKey("outside"))
			r.syncAt(r.clock.Now().Add(time.Minute))
		}, []string{"k"}},
		{"drift repair", func() {
			r.mustOK(logical.UpdateOperation, "keys/k/sync", nil)
		}, []string{"k"}},
		{"rename", func() {
			r.mustOK(logical.UpdateOperation, "rename/k", map[string]any{"new_name": "k-renamed"})
		}, []string{"k", "k-renamed"}},
		{"delete", func() {
			r.mustOK(logical.DeleteOperation, "keys/k-renamed", nil)
		}, []string{"k-renamed"}},
		{"create again under the old name", func() {
			r.createKey("k", anthropicKey("k5"), nil)
		}, []string{"k"}},
		{"a create that fails to store, undone", func() {
			r.storage.failPutsUnder("keys/broken")
			r.mustServerError(logical.CreateOperation, "keys/broken", map[string]any{"provider": "anthropic", "api_key": anthropicKey("broken")})
			r.storage.failPutsUnder("")
			rollbackNow(t, r.testEnv)
		}, []string{"broken"}},
		{"an update whose storage write fails, rolled back", func() {
			r.storage.failPutsUnder("keys/k")
			r.mustServerError(logical.UpdateOperation, "keys/k", map[string]any{"api_key": anthropicKey("k6")})
			r.storage.failPutsUnder("")
			rollbackNow(t, r.testEnv)
		}, []string{"k"}},
	}
	for _, step := range steps {
		fill(step.read...)
		step.change()
		for _, n := range step.read {
			r.wantReadsMatchStorage(n)
		}
		if t.Failed() {
			t.Fatalf("after %s", step.name)
		}
	}
}

// A write that Vault applies without this process (a performance standby,
// replication) reaches the cache through Invalidate.
func TestKeyCache_InvalidateForgetsTheEntry(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/repl", map[string]any{"provider": "anthropic", "api_key": anthropicKey("r1")})
	e.readBoth("repl")

	// Another node's write, straight into storage.
	ctx := context.Background()
	k, _ := getKey(ctx, e.storage.Storage, "repl")
	k.APIKey, k.Version = anthropicKey("r2"), k.Version+1
	if err := putKey(ctx, e.storage.Storage, k); err != nil {
		t.Fatal(err)
	}
	e.b.Invalidate(ctx, "keys/repl")
	e.wantReadsMatchStorage("repl")

	// And a delete.
	if err := deleteKey(ctx, e.storage.Storage, "repl"); err != nil {
		t.Fatal(err)
	}
	e.b.Invalidate(ctx, "keys/repl")
	e.wantReadsMatchStorage("repl")
}

// racingStorage runs hook once, after a Get of key has read storage and
// before it returns: a write lands between the read and the fill.
type racingStorage struct {
	logical.Storage
	key  string
	hook func()
}

func (s *racingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	entry, err := s.Storage.Get(ctx, key)
	if key == s.key && s.hook != nil {
		hook := s.hook
		s.hook = nil
		hook()
	}
	return entry, err
}

// A read that missed and a write of the same entry interleave: the read
// fetched the old entry, the write replaced it before the read could fill
// the cache. The cache must not keep the old one.
func TestKeyCache_AFillNeverKeepsWhatAWriteReplaced(t *testing.T) {
	ctx := context.Background()
	c := &keyCache{}
	c.resize(10)
	inner := &logical.InmemStorage{}
	old := &keyEntry{Name: "x", APIKey: "old", Version: 1}
	if err := putKey(ctx, inner, old); err != nil {
		t.Fatal(err)
	}
	s := &racingStorage{Storage: inner, key: keyStoragePrefix + "x"}
	writer := cacheKeepingStorage{Storage: inner, cache: c}
	s.hook = func() {
		if err := putKey(ctx, writer, &keyEntry{Name: "x", APIKey: "new", Version: 2}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := c.get(ctx, s, "x")
	if err != nil || got.APIKey != "old" {
		t.Fatalf("the racing read answered %+v, %v; want the entry it read", got, err)
	}
	if _, held := c.snapshot()["x"]; held {
		t.Fatal("the cache kept the entry a write replaced during the read")
	}
	if got, _ := c.get(ctx, s, "x"); got.APIKey != "new" {
		t.Fatalf("the next read answered %q, want new", got.APIKey)
	}

	// A write that fails may still have landed: the name is forgotten all
	// the same.
	failing := cacheKeepingStorage{Storage: &failingPuts{inner}, cache: c}
	if err := putKey(ctx, failing, &keyEntry{Name: "x", APIKey: "maybe", Version: 3}); err == nil {
		t.Fatal("the failing write succeeded")
	}
	if _, held := c.snapshot()["x"]; held {
		t.Fatal("a failed write left the entry cached")
	}
}

type failingPuts struct{ logical.Storage }

func (failingPuts) Put(context.Context, *logical.StorageEntry) error {
	return errInjected
}

var errInjected = errors.New("injected")

// key_cache_size=0 turns the cache off: every read reads storage. It is
// bounded, shown by config, and checked.
func TestKeyCache_SizeFromConfig(t *testing.T) {
	e := newSyncEnv(t, map[string]any{"key_cache_size": 0})
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["key_cache_size"]; got != 0 {
		t.Errorf("config shows key_cache_size %v, want 0", got)
	}
	e.mustOK(logical.CreateOperation, "keys/cold", map[string]any{"provider": "anthropic", "api_key": anthropicKey("cold")})
	e.readBoth("cold") // reads sync/state once
	e.storage.takeGets()
	e.readBoth("cold")
	e.readBoth("cold")
	if got := e.storage.takeGets(); !slices.Equal(got, []string{"keys/cold", "keys/cold", "keys/cold", "keys/cold"}) {
		t.Errorf("reads with the cache off read %v, want keys/cold once each", got)
	}
	if n := e.b.keyCache.len(); n != 0 {
		t.Errorf("the cache that is off holds %d entries", n)
	}

	for _, bad := range []any{-1, maxKeyCacheSize + 1} {
		e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"key_cache_size": bad}, "key_cache_size must be between 0 (off) and 100000")
	}

	// A small cache holds at most its size; reads beyond it stay right.
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"key_cache_size": 3})
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		e.mustOK(logical.CreateOperation, "keys/"+n, map[string]any{"provider": "anthropic", "api_key": anthropicKey(n)})
		e.readBoth(n)
	}
	if n := e.b.keyCache.len(); n != 3 {
		t.Errorf("a cache of 3 holds %d entries", n)
	}
	for _, n := range []string{"a", "b", "c", "d", "e", "cold"} {
		e.wantReadsMatchStorage(n)
	}

	// Deleting the config turns it off.
	e.mustOK(logical.DeleteOperation, "config", nil)
	if n := e.b.keyCache.len(); n != 0 {
		t.Errorf("after the config's delete the cache holds %d entries", n)
	}
}

// Where writes can reach storage without passing through this process (a
// performance standby or secondary, a DR secondary), the cache stays off.
func TestKeyCache_OffWhereWritesBypassThisNode(t *testing.T) {
	for _, state := range []consts.ReplicationState{consts.ReplicationPerformanceStandby, consts.ReplicationPerformanceSecondary, consts.ReplicationDRSecondary} {
		e := newTestEnv(t, nil)
		e.mustOK(logical.CreateOperation, "keys/s", map[string]any{"provider": "anthropic", "api_key": anthropicKey("s")})
		sys := logical.TestSystemView()
		sys.ReplicationStateVal = state
		b, err := factory(context.Background(), &logical.BackendConfig{Logger: e.b.Logger(), System: sys, StorageView: e.storage}, testTuning())
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "keys/s", Storage: e.storage}); err != nil {
				t.Fatal(err)
			}
		}
		if n := b.keyCache.len(); n != 0 {
			t.Errorf("replication state %v: the cache holds %d entries", state, n)
		}
	}
}

// The read handlers share the cached entry: they must never change it.
func TestKeyCache_ReadsDoNotChangeTheEntry(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("ro", anthropicKey("ro1"), map[string]any{"rotation_period": "1h"})
	r.stage("ro", anthropicKey("ro2"))
	r.syncAt(r.clock.Now().Add(time.Minute))
	r.readBoth("ro")
	cached := r.b.keyCache.snapshot()["ro"]
	if cached == nil {
		t.Fatal("the read did not fill the cache")
	}
	before, _ := json.Marshal(cached)
	for range 3 {
		r.readBoth("ro")
		r.advance(40 * time.Minute) // due, then overdue: the read computes more
	}
	after, _ := json.Marshal(cached)
	if string(before) != string(after) {
		t.Errorf("reads changed the cached entry:\n%s\n%s", before, after)
	}
}

// BenchmarkKeyCache_Memory reports what the cache holds in memory after
// every key of a mount of 10,000 and 100,000 keys was read, at the default
// size and at the largest: entries like a rotating key's, with what the
// sync saw.
//
//	go test -run '^$' -bench KeyCache_Memory -benchtime 1x ./backend/
func BenchmarkKeyCache_Memory(b *testing.B) {
	for _, tc := range []struct{ keys, size int }{
		{10_000, defaultKeyCacheSize}, {100_000, defaultKeyCacheSize}, {100_000, maxKeyCacheSize},
	} {
		b.Run(fmt.Sprintf("keys=%d/size=%d", tc.keys, tc.size), func(b *testing.B) {
			ctx := context.Background()
			s := &logical.InmemStorage{}
			now := time.Now().UTC()
			for i := range tc.keys {
				name := fmt.Sprintf("team-a-service-%06d", i)
				period := 30 * 24 * time.Hour
				k := &keyEntry{
					Name: name, Provider: "anthropic", UUID: fmt.Sprintf("3f5b2c1e-8d4a-4b6f-9e2d-%012d", i),
					Description: "the key of one service of team A", APIKey: anthropicKey(name), Version: 3,
					CreatedAt: now, UpdatedAt: now, RotationPeriod: period, RotationSetAt: now,
					LastVaultRotation: now, NextVaultRotation: now.Add(period), PreviousKeyHint: "sk-ant-...abcd",
					Seen: &keySeen{UUID: fmt.Sprintf("3f5b2c1e-8d4a-4b6f-9e2d-%012d", i), Found: true, Name: name, UpdatedAt: now, SyncedAt: now},
				}
				if err := putKey(ctx, s, k); err != nil {
					b.Fatal(err)
				}
			}
			for range b.N {
				c := &keyCache{}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				c.resize(tc.size)
				for i := range tc.keys {
					if _, err := c.get(ctx, s, fmt.Sprintf("team-a-service-%06d", i)); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				if c.len() != min(tc.keys, tc.size) {
					b.Fatalf("the cache holds %d entries, want %d", c.len(), min(tc.keys, tc.size))
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(c.len()), "B/entry")
				runtime.KeepAlive(c)
			}
		})
	}
}
