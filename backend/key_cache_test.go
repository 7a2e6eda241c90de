package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		case strings.Contains(f.Function, "cacheKeepingStorage."):
			return
		case strings.HasSuffix(f.Function, "backend.putKey") || strings.HasSuffix(f.Function, "backend.putJSON") || strings.HasSuffix(f.Function, "backend.deleteKey") || strings.Contains(f.Function, "faultyStorage"):
			// The writers of key entries, and the test storage: look
			// at who called them.
		case strings.HasSuffix(f.File, "_test.go"):
			return // a test writing storage as another node would
		case strings.Contains(f.Function, "vault-plugin-secrets-gradient/backend."):
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
			v, _ := c.entries.Peek(name)
			got[name] = v.k
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
					CreatedAt: now, UpdatedAt: now, PreviousKeyHint: "sk-ant-...abcd",
					rotationFields: rotationFields{RotationPeriod: period, RotationSetAt: now, LastVaultRotation: now, NextVaultRotation: now.Add(period)},
					Seen:           &keySeen{UUID: fmt.Sprintf("3f5b2c1e-8d4a-4b6f-9e2d-%012d", i), Found: true, Name: name, UpdatedAt: now, SyncedAt: now},
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
				if c.len() > min(tc.keys, tc.size) || c.bytes > keyCacheMaxBytes {
					b.Fatalf("the cache holds %d entries, estimated at %d B, over its bounds", c.len(), c.bytes)
				}
				b.ReportMetric(float64(c.len()), "entries")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(c.len()), "B/entry")
				runtime.KeepAlive(c)
				runtime.KeepAlive(s)
			}
		})
	}
}

// bigEntry is the largest entry the plugin stores, or near it: the longest
// description, long errors, a staged key and every waiting retirement.
func bigEntry(i int) *keyEntry {
	k := typicalEntry(i)
	k.Description = strings.Repeat("d", maxDescriptionLength)
	k.NextAPIKey = anthropicKey(k.Name + "-next")
	k.RotationError, k.RetireError = strings.Repeat("e", 300), strings.Repeat("r", 300)
	for v := range maxPendingRetirements {
		k.Retiring = append(k.Retiring, retirement{Version: v, KeyHint: "sk-ant-...abcd", PartialKeyHint: "sk-ant-api03-AAAA",
			KeySHA256: strings.Repeat("f", 64), DueAt: t0, NextTry: t0})
	}
	return k
}

// typicalEntry is a rotating key with what the sync saw of it.
func typicalEntry(i int) *keyEntry {
	name := fmt.Sprintf("team-a-service-%06d", i)
	uuid := fmt.Sprintf("3f5b2c1e-8d4a-4b6f-9e2d-%012d", i)
	period := 30 * 24 * time.Hour
	return &keyEntry{
		Name: name, Provider: "anthropic", UUID: uuid,
		Description: "the key of one service of team A", APIKey: anthropicKey(name), Version: 3,
		CreatedAt: t0, UpdatedAt: t0, PreviousKeyHint: "sk-ant-...abcd",
		rotationFields: rotationFields{RotationPeriod: period, RotationSetAt: t0, LastVaultRotation: t0, NextVaultRotation: t0.Add(period)},
		Seen:           &keySeen{UUID: uuid, Found: true, Name: name, UpdatedAt: t0, SyncedAt: t0},
	}
}

// The memory bound rests on the estimate of each entry (its stored size
// plus entryOverhead): it must never be below what a decoded entry takes,
// for a typical entry and for the largest.
func TestKeyCache_CostIsNeverBelowTheMemoryTaken(t *testing.T) {
	for _, tc := range []struct {
		name  string
		entry func(int) *keyEntry
	}{{"typical", typicalEntry}, {"largest", bigEntry}} {
		ctx := context.Background()
		s := &logical.InmemStorage{}
		const n = 300
		for i := range n {
			if err := putKey(ctx, s, tc.entry(i)); err != nil {
				t.Fatal(err)
			}
		}
		c := &keyCache{}
		c.resize(n)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			if _, err := c.get(ctx, s, tc.entry(i).Name); err != nil {
				t.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		taken := int(after.HeapAlloc-before.HeapAlloc) / n
		estimated := c.bytes / n
		t.Logf("%s entry: %d B in memory, estimated %d B", tc.name, taken, estimated)
		if estimated < taken {
			t.Errorf("a %s entry takes %d B and is estimated at %d B: the memory bound does not hold", tc.name, taken, estimated)
		}
		// The storage must outlive the measure: were it collected, its
		// bytes would hide the entries'.
		runtime.KeepAlive(s)
		runtime.KeepAlive(c)
	}
}

// The cache holds at most key_cache_size entries and at most its byte
// bound, whichever comes first, and reads beyond either stay right.
func TestKeyCache_MemoryIsBounded(t *testing.T) {
	ctx := context.Background()
	s := &logical.InmemStorage{}
	const n = 50
	for i := range n {
		if err := putKey(ctx, s, bigEntry(i)); err != nil {
			t.Fatal(err)
		}
	}
	c := &keyCache{}
	c.resize(n)
	c.maxBytes = 10 * bigEntry(0).cost(t) // room for 10
	for i := range n {
		k, err := c.get(ctx, s, bigEntry(i).Name)
		if err != nil || k == nil || k.Name != bigEntry(i).Name {
			t.Fatalf("read %d: %v, %v", i, k, err)
		}
		if c.bytes > c.maxBytes {
			t.Fatalf("the cache holds %d B, over its bound of %d", c.bytes, c.maxBytes)
		}
	}
	if got := c.len(); got != 10 {
		t.Errorf("the cache holds %d big entries, want the 10 its bytes allow", got)
	}
	c.forget(bigEntry(n - 1).Name)
	c.resize(3)
	if c.len() != 3 || c.bytes != 3*bigEntry(0).cost(t) {
		t.Errorf("after a resize to 3: %d entries, %d B", c.len(), c.bytes)
	}
}

func (k *keyEntry) cost(t *testing.T) int {
	e, err := logical.StorageEntryJSON(keyStoragePrefix+k.Name, k)
	if err != nil {
		t.Fatal(err)
	}
	return entryCost(e)
}

// Names whose write failed are never cached again; past maxDoubtfulNames
// of them the cache turns itself off for the backend's life.
func TestKeyCache_FailedWritesTurnItOff(t *testing.T) {
	ctx := context.Background()
	inner := &logical.InmemStorage{}
	c := &keyCache{}
	c.resize(10_000)
	broken := cacheKeepingStorage{Storage: &failingPuts{inner}, cache: c}
	working := cacheKeepingStorage{Storage: inner, cache: c}
	for i := range maxDoubtfulNames + 1 {
		k := &keyEntry{Name: fmt.Sprintf("k%d", i), APIKey: "x"}
		_ = putKey(ctx, broken, k)
		if err := putKey(ctx, working, k); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := c.get(ctx, working, "k0"); err != nil {
				t.Fatal(err)
			}
			if c.len() != 0 {
				t.Fatal("a name whose write failed was cached")
			}
		}
	}
	if _, err := c.get(ctx, working, "k5"); err != nil {
		t.Fatal(err)
	}
	c.resize(10_000)
	if c.len() != 0 || !c.off {
		t.Errorf("after %d failed writes the cache holds %d entries (off: %v)", maxDoubtfulNames+1, c.len(), c.off)
	}
}

// Every storage the plugin reaches is the wrapper's: the requests'
// (HandleRequest, HandleExistenceCheck) and the one Initialize hands the
// schedulers; and no code reaches the mount's storage another way.
func TestKeyCache_EveryStorageComesThroughTheWrapper(t *testing.T) {
	r := newSyncEnv(t, nil)
	for what, s := range map[string]logical.Storage{"the rotation scheduler": r.b.rotation.storage, "the sync": r.b.syncer.storage} {
		if w, ok := s.(cacheKeepingStorage); !ok || w.cache != r.b.keyCache {
			t.Errorf("%s keeps a storage that is not the key cache's: %T", what, s)
		}
	}
	req := &logical.Request{Operation: logical.ReadOperation, Path: "keys/none", Storage: r.storage}
	if _, err := r.b.HandleRequest(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if req.Storage != logical.Storage(r.storage) {
		t.Errorf("HandleRequest left the request holding %T", req.Storage)
	}
	files, _ := filepath.Glob("*.go")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(src), "StorageView") {
			t.Errorf("%s reaches the mount's storage through StorageView, around the key cache", f)
		}
	}
}

// A reload, an upgrade or a failover starts a new backend: its cache is
// empty, and its first reads answer what storage holds.
func TestKeyCache_ANewBackendStartsEmpty(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("k", anthropicKey("k1"), nil)
	r.readBoth("k")
	// What another version or node wrote meanwhile.
	k, _ := getKey(context.Background(), r.storage.Storage, "k")
	k.APIKey, k.Version = anthropicKey("k2"), 2
	if err := putKey(context.Background(), r.storage.Storage, k); err != nil {
		t.Fatal(err)
	}
	r.restart()
	if n := r.b.keyCache.len(); n != 0 {
		t.Fatalf("a new backend's cache holds %d entries", n)
	}
	r.wantReadsMatchStorage("k")
}
