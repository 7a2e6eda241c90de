package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Issue 19: a read of keys/<name> read the key's entry and its sync record,
// two storage reads. What the sync saw is now in the entry, written only
// when it changes, and last_synced is derived from sync/state, which the
// backend keeps in memory. These tests hold the reads to what they returned
// before, after each event that touches them.

// syncAt runs a sync at t (the sync's time is when it starts).
func (r *rotEnv) syncAt(t time.Time) map[string]any {
	r.t.Helper()
	r.advanceTo(t)
	return r.sync()
}

func (r *rotEnv) wantSynced(name, status string, at time.Time) {
	r.t.Helper()
	d := r.read(name)
	want := any(nil)
	if !at.IsZero() {
		want = at.Format(time.RFC3339)
	}
	if d["sync_status"] != status || d["last_synced"] != want {
		r.t.Errorf("keys/%s: sync_status %v, last_synced %v; want %s, %v", name, d["sync_status"], d["last_synced"], status, want)
	}
}

// putsDuring returns the storage keys fn writes.
func (e *testEnv) putsDuring(fn func()) []string {
	var mu sync.Mutex
	var puts []string
	e.storage.onPut(func(entry *logical.StorageEntry) error {
		mu.Lock()
		defer mu.Unlock()
		puts = append(puts, entry.Key)
		return nil
	})
	defer e.storage.onPut(nil)
	fn()
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(puts)
	return puts
}

// With the key cache off (key_cache_size=0), a read of keys/<name> is one
// storage Get: what the sync saw is in the entry. The cache's own tests are
// in key_cache_test.go.
func TestKeyRead_OneStorageGetNoPlatformCall(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"key_cache_size": 0})
	r.createKey("one", anthropicKey("one"), nil)

	// A mount that never synced: nothing to add to the entry.
	r.storage.takeGets()
	r.wantSynced("one", syncInSync, time.Time{})
	if got := r.storage.takeGets(); !slices.Equal(got, []string{"keys/one"}) {
		t.Errorf("a read before any sync read %v, want only keys/one", got)
	}

	t1 := t0.Add(time.Hour)
	r.syncAt(t1)
	calls := r.platformCalls()
	r.storage.takeGets()
	r.wantSynced("one", syncInSync, t1)
	if got := r.storage.takeGets(); !slices.Equal(got, []string{"keys/one"}) {
		t.Errorf("a read after a sync read %v, want only keys/one", got)
	}
	if n := r.platformCalls() - calls; n != 0 {
		t.Errorf("a read made %d platform calls, want none", n)
	}

	// A reload starts with nothing in memory: the config (for the
	// clients) and sync/state are read once, never served as zero values.
	r.restart()
	r.b.cleanSync(context.Background())
	r.storage.takeGets()
	r.wantSynced("one", syncInSync, t1)
	if got := r.storage.takeGets(); !slices.Equal(got, []string{configPath, "keys/one", syncStatePath}) {
		t.Errorf("the first read after a reload read %v, want %s, keys/one and %s", got, configPath, syncStatePath)
	}
	r.wantSynced("one", syncInSync, t1)
	if got := r.storage.takeGets(); !slices.Equal(got, []string{"keys/one"}) {
		t.Errorf("the second read after a reload read %v, want only keys/one", got)
	}
}

// A sync pass writes a key's entry only when what it saw of the key
// changed: over N unchanged keys it writes sync/state alone (plus the
// unmanaged keys' chunks, none here).
func TestSync_UnchangedKeysWriteNoKeyEntry(t *testing.T) {
	r := newSyncEnv(t, nil)
	const n = 30
	uuids := map[string]string{}
	for i := range n {
		name := "bulk-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		uuids[name] = r.createKey(name, anthropicKey(name), nil)
	}

	first := r.putsDuring(func() { r.syncAt(t0.Add(time.Hour)) })
	if keys := countPrefix(first, keyStoragePrefix); keys != n {
		t.Errorf("the first sync wrote %d key entries, want %d (what it saw of each): %v", keys, n, first)
	}

	t2 := t0.Add(2 * time.Hour)
	second := r.putsDuring(func() { r.syncAt(t2) })
	if !slices.Equal(second, []string{syncStatePath}) {
		t.Errorf("a sync over %d unchanged keys wrote %v, want only %s", n, second, syncStatePath)
	}
	for name := range uuids {
		r.wantSynced(name, syncInSync, t2)
	}

	r.modifyOutside(uuids["bulk-ca"], anthropicKey("console"))
	t3 := t0.Add(3 * time.Hour)
	third := r.putsDuring(func() { r.syncAt(t3) })
	if !slices.Equal(third, []string{"keys/bulk-ca", syncStatePath}) {
		t.Errorf("a sync that found one key changed wrote %v, want keys/bulk-ca and %s", third, syncStatePath)
	}
	r.wantSynced("bulk-ca", syncModified, t3)
	r.wantSynced("bulk-aa", syncInSync, t3)

	// Drift that persists is not written again either.
	t4 := t0.Add(4 * time.Hour)
	if fourth := r.putsDuring(func() { r.syncAt(t4) }); !slices.Equal(fourth, []string{syncStatePath}) {
		t.Errorf("a sync that found the same drift wrote %v, want only %s", fourth, syncStatePath)
	}
	r.wantSynced("bulk-ca", syncModified, t4)
}

// While a sync runs, a read on the node running it counts the keys it
// compared already, as their records did when each comparison was written.
func TestSync_ReadDuringASyncCountsTheKeysItCompared(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("k-a", anthropicKey("a"), nil)
	uuidB := r.createKey("k-b", anthropicKey("b"), nil)
	r.createKey("k-c", anthropicKey("c"), nil)
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	r.syncAt(t1)
	r.modifyOutside(uuidB, anthropicKey("console"))

	// k-b changed, so the sync writes its entry: look then, after k-a and
	// before k-c.
	var during []any
	r.storage.onPut(func(e *logical.StorageEntry) error {
		if e.Key == "keys/k-b" {
			for _, name := range []string{"k-a", "k-c"} {
				resp, err := r.handle(logical.ReadOperation, "keys/"+name, nil)
				if err != nil || resp == nil {
					return fmt.Errorf("read of %s: %v", name, err)
				}
				during = append(during, resp.Data["last_synced"])
			}
		}
		return nil
	})
	r.syncAt(t2)
	r.storage.onPut(nil)
	want := []any{t2.Format(time.RFC3339), t1.Format(time.RFC3339)}
	if !slices.Equal(during, want) {
		t.Errorf("last_synced of k-a, k-c during the sync: %v, want %v", during, want)
	}
	r.wantSynced("k-c", syncInSync, t2)
}

func countPrefix(keys []string, prefix string) int {
	n := 0
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}

// What a read shows after each event: the values the separate record gave.
func TestSync_ReadsAfterEachEvent(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuid := r.createKey("k", anthropicKey("k1"), nil)
	t1, t2 := t0.Add(time.Hour), t0.Add(2*time.Hour)
	r.syncAt(t1)
	r.syncAt(t2)
	r.wantSynced("k", syncInSync, t2)

	// Vault's own write is not drift, at once and after a sync.
	r.mustOK(logical.UpdateOperation, "keys/k/rotate", map[string]any{"api_key": anthropicKey("k2")})
	r.wantSynced("k", syncInSync, t2)

	r.modifyOutside(uuid, anthropicKey("console"))
	r.wantSynced("k", syncInSync, t2) // no sync has seen it yet
	t3 := t0.Add(3 * time.Hour)
	r.syncAt(t3)
	r.wantSynced("k", syncModified, t3)

	// A repair records what it wrote: in_sync at the repair's time.
	t4 := t0.Add(4 * time.Hour)
	r.advanceTo(t4)
	r.mustOK(logical.UpdateOperation, "keys/k/sync", nil)
	r.wantSynced("k", syncInSync, t4)
	t5 := t0.Add(5 * time.Hour)
	r.syncAt(t5)
	r.wantSynced("k", syncInSync, t5)

	// A rename by Vault: no sync has compared the key under its new name.
	r.mustOK(logical.UpdateOperation, "rename/k", map[string]any{"new_name": "k-new"})
	r.wantSynced("k-new", syncInSync, time.Time{})
	t6 := t0.Add(6 * time.Hour)
	r.syncAt(t6)
	r.wantSynced("k-new", syncInSync, t6)

	// Deleted and written again: a new key that no sync has compared.
	r.mustOK(logical.DeleteOperation, "keys/k-new", nil)
	r.createKey("k-new", anthropicKey("k3"), nil)
	r.wantSynced("k-new", syncInSync, time.Time{})

	// Deleted on the platform and created again by a repair: a new uuid,
	// in_sync as of the repair.
	r.syncAt(t0.Add(7 * time.Hour))
	r.deleteOutside(r.read("k-new")["uuid"].(string))
	t8 := t0.Add(8 * time.Hour)
	r.syncAt(t8)
	r.wantSynced("k-new", syncMissing, t8)
	t9 := t0.Add(9 * time.Hour)
	r.advanceTo(t9)
	r.mustOK(logical.UpdateOperation, "keys/k-new/sync", nil)
	r.wantSynced("k-new", syncInSync, t9)
}

// A sync that stops half-way compared the keys before the one it stopped
// at (in name order): their last_synced is that sync's, the others' the
// one before, as their records said when every comparison was written.
func TestSync_StoppedHalfWayCountsForTheKeysItCompared(t *testing.T) {
	r := newSyncEnv(t, nil)
	for _, name := range []string{"k-a", "k-b", "k-c", "k-d"} {
		r.createKey(name, anthropicKey(name), nil)
	}
	t1, t2, t3 := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour)
	r.syncAt(t1)

	stopAt := func(at time.Time, name string) {
		r.t.Helper()
		r.advanceTo(at)
		r.storage.failGetsUnder("keys/" + name)
		if _, err := r.handle(logical.UpdateOperation, "sync", nil); err == nil {
			t.Fatalf("the sync did not stop at %s", name)
		}
		r.storage.failGetsUnder("")
	}
	stopAt(t2, "k-c")
	want := map[string]time.Time{"k-a": t2, "k-b": t2, "k-c": t1, "k-d": t1}
	for name, at := range want {
		r.wantSynced(name, syncInSync, at)
	}
	// A second stop that gets less far keeps what the first compared.
	stopAt(t3, "k-b")
	want["k-a"] = t3
	check := func() {
		t.Helper()
		for name, at := range want {
			r.wantSynced(name, syncInSync, at)
		}
	}
	check()
	r.restart()
	r.b.cleanSync(context.Background())
	check()

	t4 := t0.Add(4 * time.Hour)
	r.syncAt(t4)
	for name := range want {
		want[name] = t4
	}
	check()
}

// A performance standby serves reads from the storage the active node
// writes: Vault invalidates sync/state there when the active node's sync
// rewrites it, and the standby's copy is dropped.
func TestSync_StandbyReadsAfterTheActiveNodesSync(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuid := r.createKey("k", anthropicKey("k"), nil)
	t1 := t0.Add(time.Hour)
	r.syncAt(t1)

	sys := &switchableSystemView{}
	sys.standby.Store(true)
	standby, err := factory(context.Background(), &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), System: sys, StorageView: r.storage,
	}, testTuning())
	if err != nil {
		t.Fatal(err)
	}
	standbyRead := func() map[string]any {
		t.Helper()
		resp, err := standby.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.ReadOperation, Path: "keys/k", Storage: r.storage, MountPoint: "gradient/",
		})
		if err != nil || resp == nil || resp.IsError() {
			t.Fatalf("standby read: %v %v", resp, err)
		}
		return resp.Data
	}
	if d := standbyRead(); d["last_synced"] != t1.Format(time.RFC3339) {
		t.Fatalf("standby: last_synced %v, want %v", d["last_synced"], t1)
	}

	r.modifyOutside(uuid, anthropicKey("console"))
	t2 := t0.Add(2 * time.Hour)
	r.syncAt(t2)
	standby.InvalidateKey(context.Background(), syncStatePath)
	if d := standbyRead(); d["sync_status"] != syncModified || d["last_synced"] != t2.Format(time.RFC3339) {
		t.Errorf("standby after the sync: %v %v, want %s %v", d["sync_status"], d["last_synced"], syncModified, t2)
	}
	t3 := t0.Add(3 * time.Hour)
	r.syncAt(t3) // the same drift: no key entry written, only sync/state
	standby.InvalidateKey(context.Background(), syncStatePath)
	if d := standbyRead(); d["sync_status"] != syncModified || d["last_synced"] != t3.Format(time.RFC3339) {
		t.Errorf("standby after a sync that wrote no key entry: %v %v, want %s %v", d["sync_status"], d["last_synced"], syncModified, t3)
	}
}

// Entries stored by the previous version hold nothing of the sync; its
// records (sync/keys/<name>) do. They are honoured until the active node
// folds them into the entries at start, once; records that hold agents stay
// for them.
func TestSync_RecordsOfTheEarlierVersionAreFoldedIn(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuidA := r.createKey("a", anthropicKey("a"), nil)
	r.createKey("b", anthropicKey("b"), nil)
	r.createKey("mixed", anthropicKey("mixed"), nil)
	r.modifyOutside(uuidA, anthropicKey("console"))
	t1 := t0.Add(time.Hour)
	r.syncAt(t1)
	r.mustOK(logical.ReadOperation, "keys/b/agents", nil) // records b's agents
	r.createKey("late", anthropicKey("late"), nil)

	r.storeAsEarlierVersion("a", "b")
	ctx := context.Background()

	want := func() {
		t.Helper()
		r.wantSynced("a", syncModified, t1)
		r.wantSynced("b", syncInSync, t1)
		r.wantSynced("mixed", syncInSync, t1)
		r.wantSynced("late", syncInSync, time.Time{})
	}
	// Before the fold (a standby of an upgraded cluster before the active
	// node started): read from the records.
	want()

	// The upgraded plugin starts on the active node and folds them in.
	r.restart()
	r.b.cleanSync(ctx)
	want()
	for _, name := range []string{"a", "b"} {
		if k, _ := getKey(ctx, r.storage, name); k.Seen == nil || !k.Seen.SyncedAt.Equal(t1) {
			t.Errorf("%s: the entry holds %+v after the fold, want what its record held", name, k.Seen)
		}
	}
	if rec, _ := getSyncRecord(ctx, r.storage, "a"); rec != nil {
		t.Errorf("a's record holds no agents and was kept: %+v", rec)
	}
	if rec, _ := getSyncRecord(ctx, r.storage, "b"); rec == nil || rec.AgentsSeenAt.IsZero() {
		t.Errorf("b's record holds its agents and was dropped: %+v", rec)
	}
	// The fold wrote the entries: a read after it reads the entry (the
	// key cache forgot the old one), and no record.
	r.storage.takeGets()
	r.read("a")
	if got := r.storage.takeGets(); len(got) > 1 || len(got) == 1 && got[0] != "keys/a" {
		t.Errorf("a read after the fold read %v, want keys/a at most", got)
	}
}

// storeAsEarlierVersion stores what was seen of the named keys as the
// previous version did: in a record per key, nothing in the entries, and no
// layout in sync/state.
func (r *rotEnv) storeAsEarlierVersion(names ...string) {
	t := r.t.(*testing.T)
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		k, err := getKey(ctx, r.storage, name)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := getSyncRecord(ctx, r.storage, name)
		if err != nil {
			t.Fatal(err)
		}
		if rec == nil {
			rec = &keySyncRecord{}
		}
		rec.UUID, rec.SyncedAt, rec.Found, rec.Name, rec.UpdatedAt = k.Seen.UUID, k.Seen.SyncedAt, k.Seen.Found, k.Seen.Name, k.Seen.UpdatedAt
		if err := putSyncRecord(ctx, r.storage, name, rec); err != nil {
			t.Fatal(err)
		}
		k.Seen = nil
		if err := putKey(ctx, r.storage, k); err != nil {
			t.Fatal(err)
		}
	}
	st, err := getSyncState(ctx, r.storage)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, st), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "layout")
	if err := r.storage.Put(ctx, &logical.StorageEntry{Key: syncStatePath, Value: mustJSON(t, m)}); err != nil {
		t.Fatal(err)
	}
	r.b.syncView.drop() // as a standby would, or the upgraded plugin at start
}

// Before the fold (it failed at start), a sync reads the earlier version's
// record: drift it confirmed is not fetched again, and the sync folds it.
func TestSync_EarlierRecordsCountUntilFolded(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuid := r.createKey("a", anthropicKey("a"), nil)
	r.modifyOutside(uuid, anthropicKey("console"))
	r.syncAt(t0.Add(time.Hour))
	r.storeAsEarlierVersion("a")

	calls := r.emu.Counts()["GET /v2/gen-ai/anthropic/keys/{uuid}"]
	t2 := t0.Add(2 * time.Hour)
	r.syncAt(t2)
	if n := r.emu.Counts()["GET /v2/gen-ai/anthropic/keys/{uuid}"] - calls; n != 0 {
		t.Errorf("the sync fetched drift the record had confirmed %d times, want none", n)
	}
	r.wantSynced("a", syncModified, t2)
	if k, _ := getKey(context.Background(), r.storage, "a"); k.Seen == nil {
		t.Error("the sync did not fold the record into the entry")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A downgrade and a second upgrade: the previous version never writes the
// entries of keys it finds unchanged, so they keep sync_seen from before
// the downgrade, while its syncs write what they saw in the records and
// store sync/state without the layout. The fold at the second upgrade must
// take the record when it is newer than the entry's sync_seen, or a key the
// previous version found missing reads in_sync as of that very sync.
func TestSync_FoldAfterADowngradeTakesTheNewerRecord(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuid := r.createKey("a", anthropicKey("a"), nil)
	r.syncAt(t0.Add(time.Hour))
	r.wantSynced("a", syncInSync, t0.Add(time.Hour))

	// Downgraded: the key goes on the platform, and the previous version's
	// sync at t2 records it in sync/keys/a and rewrites sync/state with its
	// own fields only.
	r.deleteOutside(uuid)
	t2 := t0.Add(2 * time.Hour)
	ctx := context.Background()
	if err := putSyncRecord(ctx, r.storage, "a", &keySyncRecord{UUID: uuid, SyncedAt: t2, Found: false}); err != nil {
		t.Fatal(err)
	}
	st, err := getSyncState(ctx, r.storage)
	if err != nil {
		t.Fatal(err)
	}
	st.LastRun = t2
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, st), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "layout")
	delete(m, "stopped")
	if err := r.storage.Put(ctx, &logical.StorageEntry{Key: syncStatePath, Value: mustJSON(t, m)}); err != nil {
		t.Fatal(err)
	}

	// Upgraded again: the active node starts and folds.
	r.restart()
	r.b.cleanSync(ctx)
	r.wantSynced("a", syncMissing, t2)
}

// A fold that stops half-way (a storage write fails, or the node goes
// down) leaves some keys folded and some not: every read stays right, and
// the next start finishes the fold. A standby never folds: it writes
// nothing.
func TestSync_FoldStoppedHalfWayAndOnAStandby(t *testing.T) {
	r := newSyncEnv(t, nil)
	uuidA := r.createKey("a", anthropicKey("a"), nil)
	r.createKey("b", anthropicKey("b"), nil)
	uuidC := r.createKey("c", anthropicKey("c"), nil)
	r.modifyOutside(uuidA, anthropicKey("console-a"))
	r.renameOutside(uuidC, "elsewhere")
	t1 := t0.Add(time.Hour)
	r.syncAt(t1)
	r.storeAsEarlierVersion("a", "b", "c")
	ctx := context.Background()
	want := func(when string) {
		t.Helper()
		for name, status := range map[string]string{"a": syncModified, "b": syncInSync, "c": syncRenamed} {
			d := r.read(name)
			if d["sync_status"] != status || d["last_synced"] != t1.Format(time.RFC3339) {
				t.Errorf("%s: keys/%s reads %v %v, want %s %v", when, name, d["sync_status"], d["last_synced"], status, t1)
			}
		}
	}

	// A standby starting writes nothing.
	sys := &switchableSystemView{}
	sys.standby.Store(true)
	standby, err := factory(ctx, &logical.BackendConfig{Logger: hclog.NewNullLogger(), System: sys, StorageView: r.storage}, testTuning())
	if err != nil {
		t.Fatal(err)
	}
	if puts := r.putsDuring(func() {
		if err := standby.Initialize(ctx, &logical.InitializationRequest{Storage: r.storage}); err != nil {
			t.Fatal(err)
		}
	}); len(puts) != 0 {
		t.Errorf("a standby starting wrote %v", puts)
	}
	want("after a standby started")

	// The active node's fold fails at b's entry.
	r.storage.onPut(func(e *logical.StorageEntry) error {
		if e.Key == "keys/b" {
			return fmt.Errorf("injected")
		}
		return nil
	})
	r.restart()
	r.storage.onPut(nil)
	want("after a fold that stopped at b")
	if st, _ := getSyncState(ctx, r.storage); st.Layout != 0 {
		t.Errorf("a fold that stopped half-way stored layout %d", st.Layout)
	}

	r.restart()
	want("after the fold")
	if st, _ := getSyncState(ctx, r.storage); st.Layout != 1 {
		t.Errorf("the fold stored layout %d, want 1", st.Layout)
	}
	for _, name := range []string{"a", "b", "c"} {
		if rec, _ := getSyncRecord(ctx, r.storage, name); rec != nil {
			t.Errorf("%s's record outlived the fold: %+v", name, rec)
		}
	}
}

// The sync writes sync_seen into the whole entry, secret included: it must
// hold the key's name lock from its read of the entry to its write, or a
// rotation finishing in between would be overwritten with the old secret.
// Checked at the sync's write, where a rotation would have to slip in.
func TestSync_WritesTheEntryUnderItsNameLock(t *testing.T) {
	r := newSyncEnv(t, nil)
	r.createKey("a", anthropicKey("a"), nil)
	var writes, unlocked int
	r.storage.onPut(func(e *logical.StorageEntry) error {
		if e.Key != "keys/a" {
			return nil
		}
		writes++
		l := locksutil.LockForKey(r.b.nameLocks, "a")
		if l.TryLock() {
			unlocked++
			l.Unlock()
		}
		return nil
	})
	r.syncAt(t0.Add(time.Hour))
	r.storage.onPut(nil)
	if writes == 0 {
		t.Fatal("the first sync of the key did not write sync_seen into its entry")
	}
	if unlocked != 0 {
		t.Errorf("the sync wrote keys/a %d times without holding its name lock", unlocked)
	}
}
