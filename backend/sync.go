package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Drift is what changed on the platform behind Vault's back: a managed key
// deleted, renamed or modified in the control panel or with doctl, and keys
// that this mount does not manage. A sync lists the platform's keys (both
// providers, pages of 200) and compares them with storage; it runs every
// sync_interval on the active node, and on request at sync.
//
// What a sync saw of each managed key (keySeen) is kept in the key's entry,
// so a read of keys/<name> is one storage read, and it is written only when
// it changes: a sync of 10,000 unchanged keys writes no key entry, only the
// mount's sync/state. The time shown on a read (last_synced) is derived
// from the entry and sync/state together (keySyncedAt), and the status from
// what was seen and the entry, so a write Vault makes after the sync (a
// rotation, a repair) counts at once without another sync. The agents last
// seen using a key stay in a record of their own (sync/keys/<name>): a read
// of keys/<name>/agents writes them, and should not rewrite the secret's
// entry. Versions before this one kept what was seen in that record too;
// initializeSync folds those records into the entries once (Layout).
//
// Vault records the platform's updated_at from every answer to its own
// writes (create, adopt, rotate, rename, repair): only a later updated_at
// means a change made elsewhere.

const (
	syncStatePath       = "sync/state"
	syncKeyPrefix       = "sync/keys/"
	syncUnmanagedPrefix = "sync/unmanaged/"
	// unmanagedChunk keys per storage entry keeps each entry far below the
	// storage backends' entry size limits (512 KiB in Consul) even with
	// long names: 10,000 unmanaged keys are 20 entries.
	unmanagedChunk = 500

	defaultSyncInterval = 10 * time.Minute
	// defaultSyncTick is how often the periodic sync looks at whether one
	// is due; the interval itself is config's sync_interval.
	defaultSyncTick = time.Minute
)

// Sync statuses of a managed key. When several apply, the first of missing,
// renamed, modified_outside wins: a rename also moves updated_at.
const (
	syncInSync   = "in_sync"
	syncMissing  = "missing"
	syncRenamed  = "renamed"
	syncModified = "modified_outside"
)

// keySeen is what a sync (or a repair) saw of one managed key on the
// platform, kept in the key's entry.
type keySeen struct {
	// UUID is the key it is about; what was seen of another uuid (the key
	// was created again by a repair) is ignored.
	UUID string `json:"uuid"`
	// SyncedAt is when the sync that found Found, Name and UpdatedAt as
	// they are started (or when a repair wrote them). Later syncs that find
	// the same do not write it again: keySyncedAt adds them.
	SyncedAt  time.Time `json:"synced_at"`
	Found     bool      `json:"found"`
	Name      string    `json:"name,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// same reports that s and o saw the same of the same key.
func (s *keySeen) same(o *keySeen) bool {
	return s != nil && o != nil && strings.EqualFold(s.UUID, o.UUID) && s.Found == o.Found &&
		s.Name == o.Name && s.UpdatedAt.Equal(o.UpdatedAt)
}

// keySyncRecord holds the agents last seen using one managed key. Records
// stored by earlier versions also hold what the last sync saw of the key
// (the fields now in keySeen): they are read only until initializeSync has
// folded them into the entries.
type keySyncRecord struct {
	// UUID is the key the record is about; a record about another uuid
	// (the name was deleted and written again since) is ignored.
	UUID string `json:"uuid"`
	// Earlier versions: when the sync that wrote Found, Name and UpdatedAt
	// started; zero while only agents were recorded.
	SyncedAt  time.Time `json:"synced_at,omitzero"`
	Found     bool      `json:"found"`
	Name      string    `json:"name,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Agents are the agents last seen using the key, at AgentsSeenAt: by a
	// read of keys/<name>/agents or a reassign. Listing the agents of
	// every key at every sync would cost one call per key; these two
	// already have the list in hand.
	Agents       []agentRef `json:"agents,omitempty"`
	AgentsSeenAt time.Time  `json:"agents_seen_at,omitzero"`
}

// seen is what an earlier version's record says the last sync saw; nil
// when it says nothing.
func (r *keySyncRecord) seen() *keySeen {
	if r == nil || r.SyncedAt.IsZero() {
		return nil
	}
	return &keySeen{UUID: r.UUID, SyncedAt: r.SyncedAt, Found: r.Found, Name: r.Name, UpdatedAt: r.UpdatedAt}
}

type agentRef struct {
	UUID string `json:"uuid"`
	Name string `json:"name"`
}

// syncState is the mount's record of its last sync.
type syncState struct {
	// LastRun is when the last completed sync started.
	LastRun time.Time  `json:"last_run,omitzero"`
	Counts  syncCounts `json:"counts"`
	// Chunks is how many sync/unmanaged/ entries the last sync wrote.
	Chunks int `json:"chunks"`
	// LastError is why the last periodic sync failed, at LastErrorAt;
	// cleared by a sync that completes.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Stopped are the syncs that stopped half-way since the last completed
	// one, newest first: each compared the keys up to Through (in name
	// order). A key it found unchanged was not written, so its
	// last_synced comes from here. An older one is kept only while it went
	// further than every newer one.
	Stopped []stoppedSync `json:"stopped,omitempty"`
	// Layout 1: what each key was seen as is in its entry, and the records
	// of earlier versions were folded into them.
	Layout int `json:"layout,omitempty"`
}

type stoppedSync struct {
	Started time.Time `json:"started"`
	Through string    `json:"through"`
}

// keySyncedAt is when the last sync that compared the key named name
// started, given that one that started at seenAt did. Every completed sync
// compares every key stored when it lists them, and a key is stored with
// what was seen of it only from its first comparison on (a rename drops
// it): a completed sync later than seenAt compared it; so did a stopped
// one that got as far as its name.
func (st *syncState) keySyncedAt(name string, seenAt time.Time) time.Time {
	at := seenAt
	if st.LastRun.After(at) {
		at = st.LastRun
	}
	for _, p := range st.Stopped {
		if name <= p.Through {
			if p.Started.After(at) {
				at = p.Started
			}
			break
		}
	}
	return at
}

// addStopped records a sync that started at started and compared the keys
// up to through.
func (st *syncState) addStopped(started time.Time, through string) {
	kept := []stoppedSync{{Started: started, Through: through}}
	for _, p := range st.Stopped {
		if p.Through > through {
			kept = append(kept, p)
		}
	}
	st.Stopped = kept
}

type syncCounts struct {
	InSync    int `json:"in_sync"`
	Missing   int `json:"missing"`
	Renamed   int `json:"renamed"`
	Modified  int `json:"modified_outside"`
	Unmanaged int `json:"unmanaged"`
}

func (c syncCounts) asMap() map[string]any {
	return map[string]any{
		syncInSync: c.InSync, syncMissing: c.Missing, syncRenamed: c.Renamed,
		syncModified: c.Modified, "unmanaged": c.Unmanaged,
	}
}

func (c *syncCounts) add(status string) {
	switch status {
	case syncMissing:
		c.Missing++
	case syncRenamed:
		c.Renamed++
	case syncModified:
		c.Modified++
	default:
		c.InSync++
	}
}

// unmanagedKey is a platform key that no key of this mount holds. The
// platform never returns a secret, so there is none to keep.
type unmanagedKey struct {
	Provider  string    `json:"provider"`
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// driftOf compares a key as Vault holds it with what the platform showed.
func driftOf(k *keyEntry, found bool, pk platform.Key) string {
	switch {
	case !found:
		return syncMissing
	case pk.Name != k.Name:
		return syncRenamed
	// A zero updated_at in Vault (an answer that lacked it) gives nothing
	// to compare with: the key is not called modified on that alone.
	case !k.UpdatedAt.IsZero() && pk.UpdatedAt.After(k.UpdatedAt):
		return syncModified
	}
	return syncInSync
}

// syncStatus is the key's status as of what was seen: in_sync, with no
// time, when no sync has compared this key (by uuid) yet.
func syncStatus(k *keyEntry, seen *keySeen) (status string, syncedAt time.Time) {
	if !seen.compares(k) {
		return syncInSync, time.Time{}
	}
	return driftOf(k, seen.Found, platform.Key{Name: seen.Name, UpdatedAt: seen.UpdatedAt}), seen.SyncedAt
}

func (s *keySeen) compares(k *keyEntry) bool {
	return s != nil && !s.SyncedAt.IsZero() && strings.EqualFold(s.UUID, k.UUID)
}

// seenOf is what the last sync saw of k: from its entry, or, before the
// records of earlier versions were folded in (st.Layout 0), from its
// record.
func seenOf(ctx context.Context, s logical.Storage, st *syncState, k *keyEntry) (*keySeen, error) {
	if st.Layout >= 1 {
		return k.Seen, nil
	}
	rec, err := getSyncRecord(ctx, s, k.Name)
	return newerSeen(k, k.Seen, rec.seen()), err
}

// newerSeen is the later of what the entry and an earlier version's record
// say was seen of k. Both can hold something: after a downgrade and a
// second upgrade, the entries of keys the earlier version found unchanged
// keep what was seen before the downgrade, and its syncs wrote the records.
func newerSeen(k *keyEntry, inEntry, inRecord *keySeen) *keySeen {
	if inRecord.compares(k) && (!inEntry.compares(k) || inRecord.SyncedAt.After(inEntry.SyncedAt)) {
		return inRecord
	}
	return inEntry
}

// ---- storage ----

func getSyncRecord(ctx context.Context, s logical.Storage, name string) (*keySyncRecord, error) {
	return getJSON[keySyncRecord](ctx, s, syncKeyPrefix+name, fmt.Sprintf("the sync record of %q", name))
}

func putSyncRecord(ctx context.Context, s logical.Storage, name string, r *keySyncRecord) error {
	return putJSON(ctx, s, syncKeyPrefix+name, fmt.Sprintf("the sync record of %q", name), r)
}

func getSyncState(ctx context.Context, s logical.Storage) (*syncState, error) {
	st := &syncState{}
	entry, err := s.Get(ctx, syncStatePath)
	if err != nil {
		return nil, fmt.Errorf("reading the sync state: %w", err)
	}
	if entry != nil {
		if err := entry.DecodeJSON(st); err != nil {
			return nil, fmt.Errorf("decoding the sync state: %w", err)
		}
	}
	return st, nil
}

// syncStateView keeps sync/state in memory for reads of keys/<name>, which
// need its times (keySyncedAt) at every read. It is what this node last
// wrote, or read: a write by this node replaces it, and invalidate drops it
// when the entry changes under a standby. Empty (a new or reloaded plugin),
// it is read from storage.
type syncStateView struct {
	// writeMu orders this node's writes of sync/state, so that the one
	// kept is the one stored last.
	writeMu sync.Mutex

	mu  sync.Mutex
	st  *syncState
	gen uint64
	// running is how far the sync running on this node got: a read here
	// counts the keys it compared already, as a stopped sync's.
	running stoppedSync
}

// compared notes that the sync that started at started compared the keys
// up to through; zero when no sync runs.
func (v *syncStateView) compared(started time.Time, through string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running = stoppedSync{Started: started, Through: through}
}

// keySyncedAt is syncState.keySyncedAt with the sync running on this node.
func (v *syncStateView) keySyncedAt(st *syncState, name string, seenAt time.Time) time.Time {
	at := st.keySyncedAt(name, seenAt)
	v.mu.Lock()
	defer v.mu.Unlock()
	if r := v.running; r.Through != "" && name <= r.Through && r.Started.After(at) {
		at = r.Started
	}
	return at
}

func (v *syncStateView) drop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = nil
	v.gen++
}

// cachedSyncState returns sync/state, from memory when it holds it. The
// caller must not change it.
func (b *gradientBackend) cachedSyncState(ctx context.Context, s logical.Storage) (*syncState, error) {
	v := b.syncView
	v.mu.Lock()
	st, gen := v.st, v.gen
	v.mu.Unlock()
	if st != nil {
		return st, nil
	}
	st, err := getSyncState(ctx, s)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	// Kept only if nothing was written or invalidated during the read:
	// the read may have returned what was there before.
	if v.gen == gen {
		v.st = st
	}
	return st, nil
}

// putSyncStateLocked stores st and keeps it in memory. The caller holds
// writeMu, across its read of the state too.
func (b *gradientBackend) putSyncStateLocked(ctx context.Context, s logical.Storage, st *syncState) error {
	v := b.syncView
	v.drop()
	entry, err := logical.StorageEntryJSON(syncStatePath, st)
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("storing the sync state: %w", err)
	}
	kept := *st
	kept.Stopped = slices.Clone(st.Stopped)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st = &kept
	v.gen++
	return nil
}

// readUnmanaged returns the unmanaged keys the last sync found.
func readUnmanaged(ctx context.Context, s logical.Storage, st *syncState) ([]unmanagedKey, error) {
	var all []unmanagedKey
	for i := range st.Chunks {
		entry, err := s.Get(ctx, syncUnmanagedPrefix+strconv.Itoa(i))
		if err != nil {
			return nil, fmt.Errorf("reading unmanaged platform keys: %w", err)
		}
		if entry == nil {
			continue
		}
		var chunk []unmanagedKey
		if err := entry.DecodeJSON(&chunk); err != nil {
			return nil, fmt.Errorf("decoding unmanaged platform keys: %w", err)
		}
		all = append(all, chunk...)
	}
	return all, nil
}

// writeUnmanaged stores keys in chunks and drops the chunks of an earlier,
// longer list. It returns the number of chunks.
func writeUnmanaged(ctx context.Context, s logical.Storage, keys []unmanagedKey, previous int) (int, error) {
	n := 0
	for start := 0; start < len(keys); start += unmanagedChunk {
		entry, err := logical.StorageEntryJSON(syncUnmanagedPrefix+strconv.Itoa(n), keys[start:min(start+unmanagedChunk, len(keys))])
		if err == nil {
			err = s.Put(ctx, entry)
		}
		if err != nil {
			return 0, fmt.Errorf("storing unmanaged platform keys: %w", err)
		}
		n++
	}
	for i := n; i < previous; i++ {
		if err := s.Delete(ctx, syncUnmanagedPrefix+strconv.Itoa(i)); err != nil {
			return 0, fmt.Errorf("dropping old unmanaged platform keys: %w", err)
		}
	}
	return n, nil
}

// ---- the sync ----

// syncResult is what one sync found.
type syncResult struct {
	started time.Time
	counts  syncCounts
	// drifted maps the name of every key not in sync to its status.
	drifted map[string]string
}

// runSync lists the platform's keys and compares them with storage. One
// runs at a time per node. A listing that fails fails the sync before
// anything is recorded: a key must never be called missing because a page
// did not arrive.
//
// Every platform request waits for the mount's rate budget like any other,
// one at a time: a sync of 10,000 keys is 50 pages per provider, spread at
// the budget's pace, and a request from a handler waits behind at most the
// one page already reserved, never behind the whole sync. The periodic
// sync's requests first wait for the background share too (runTick).
func (b *gradientBackend) runSync(ctx context.Context, s logical.Storage) (_ *syncResult, err error) {
	b.syncer.runMu.Lock()
	defer b.syncer.runMu.Unlock()

	c, err := b.clients(ctx, s)
	if err != nil {
		return nil, err
	}
	res := &syncResult{started: b.now().UTC().Truncate(time.Second), drifted: map[string]string{}}
	listing := map[string]map[string]platform.Key{}
	for _, provider := range platform.Providers() {
		keys, err := c.platform.ListKeys(ctx, provider)
		if err != nil {
			return nil, fmt.Errorf("sync: %w (nothing was recorded)", err)
		}
		byUUID := make(map[string]platform.Key, len(keys))
		for _, k := range keys {
			byUUID[strings.ToLower(k.UUID)] = k
		}
		listing[provider] = byUUID
	}

	names, err := s.List(ctx, keyStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	before, err := getSyncState(ctx, s)
	if err != nil {
		return nil, err
	}
	// In name order, so that a sync that stops half-way can say which keys
	// it compared by the last name alone (syncState.Stopped).
	sort.Strings(names)
	through := ""
	defer func() {
		if err != nil && through != "" {
			b.recordStopped(ctx, s, res.started, through)
		}
		b.syncView.compared(time.Time{}, "")
	}()
	managed := map[string]bool{}
	for _, name := range names {
		if err = ctx.Err(); err != nil {
			return nil, err
		}
		status, uuid, err := b.syncKey(ctx, s, c, name, listing, res.started, before.Layout < 1)
		if err != nil {
			return nil, fmt.Errorf("sync of %q: %w", name, err)
		}
		through = name
		b.syncView.compared(res.started, name)
		if uuid == "" {
			continue // deleted meanwhile
		}
		managed[strings.ToLower(uuid)] = true
		res.counts.add(status)
		if status != syncInSync {
			res.drifted[name] = status
		}
	}

	// Keys Vault created or renamed while the loop ran are not in names,
	// but may be in the listing: they are managed, not someone else's.
	if err := addLateKeys(ctx, s, names, managed); err != nil {
		return nil, err
	}
	var unmanaged []unmanagedKey
	for _, provider := range platform.Providers() {
		for uuid, k := range listing[provider] {
			if !managed[uuid] {
				unmanaged = append(unmanaged, unmanagedKey{Provider: provider, UUID: k.UUID, Name: k.Name, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt})
			}
		}
	}
	sort.Slice(unmanaged, func(i, j int) bool { return unmanaged[i].UUID < unmanaged[j].UUID })
	res.counts.Unmanaged = len(unmanaged)

	if err = b.recordCompleted(ctx, s, res, unmanaged); err != nil {
		return nil, err
	}
	b.dropStaleSyncRecords(ctx, s)
	b.Logger().Info("sync done", "in_sync", res.counts.InSync, "missing", res.counts.Missing, "renamed", res.counts.Renamed,
		"modified_outside", res.counts.Modified, "unmanaged", res.counts.Unmanaged)
	return res, nil
}

// recordCompleted stores the unmanaged keys and sync/state of a completed
// sync.
func (b *gradientBackend) recordCompleted(ctx context.Context, s logical.Storage, res *syncResult, unmanaged []unmanagedKey) error {
	b.syncView.writeMu.Lock()
	defer b.syncView.writeMu.Unlock()
	st, err := getSyncState(ctx, s)
	if err != nil {
		return err
	}
	if st.Chunks, err = writeUnmanaged(ctx, s, unmanaged, st.Chunks); err != nil {
		return err
	}
	st.LastRun, st.Counts, st.LastError, st.LastErrorAt = res.started, res.counts, "", time.Time{}
	// Every stored key was compared, and what an earlier version's record
	// said of it is folded into its entry.
	st.Stopped, st.Layout = nil, 1
	return b.putSyncStateLocked(ctx, s, st)
}

// addLateKeys adds to managed the uuids of keys stored under names that
// were not in seen.
func addLateKeys(ctx context.Context, s logical.Storage, seen []string, managed map[string]bool) error {
	names, err := s.List(ctx, keyStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	known := make(map[string]bool, len(seen))
	for _, n := range seen {
		known[n] = true
	}
	for _, n := range names {
		if known[n] {
			continue
		}
		k, err := getKey(ctx, s, n)
		if err != nil {
			return err
		}
		if k != nil {
			managed[strings.ToLower(k.UUID)] = true
		}
	}
	return nil
}

// confirms reports that the last sync already confirmed what the listing
// shows of k: drift that persists is not fetched again at every sync (100
// keys left renamed on purpose would otherwise cost 600 requests an hour).
// A uuid once gone stays gone; a key the platform shows exactly as before
// has not changed since.
func (s *keySeen) confirms(k *keyEntry, found bool, pk platform.Key) bool {
	if !s.compares(k) || s.Found != found {
		return false
	}
	return !found || (s.Name == pk.Name && s.UpdatedAt.Equal(pk.UpdatedAt))
}

// syncKey compares one stored key with the listing, under its name lock, and
// records what it found in the key's entry when that differs from what is
// there (a key found as before costs no write). Drift seen in the listing is
// confirmed with a get of the key itself, unless the last sync confirmed the
// same: the listing is older than the entry may be (a create, a rename or a
// rotation by Vault that finished meanwhile). legacy says that records of
// earlier versions may still hold what was seen. It returns the key's uuid,
// or "" when the key was deleted meanwhile.
func (b *gradientBackend) syncKey(ctx context.Context, s logical.Storage, c *clients, name string, listing map[string]map[string]platform.Key, started time.Time, legacy bool) (string, string, error) {
	defer b.lockNames(name)()
	k, err := getKey(ctx, s, name)
	if err != nil || k == nil {
		return "", "", err
	}
	seen := k.Seen
	if legacy {
		rec, err := getSyncRecord(ctx, s, name)
		if err != nil {
			return "", "", err
		}
		seen = newerSeen(k, seen, rec.seen())
	}
	pk, found := listing[k.Provider][strings.ToLower(k.UUID)]
	status := driftOf(k, found, pk)
	if status != syncInSync && !seen.confirms(k, found, pk) {
		current, err := c.platform.GetKey(ctx, k.Provider, k.UUID)
		switch {
		case errors.Is(err, platform.ErrNotFound):
			pk, found = platform.Key{}, false
		case err != nil:
			return "", "", err
		default:
			pk, found = current, true
		}
		status = driftOf(k, found, pk)
	}
	if was, _ := syncStatus(k, seen); status != syncInSync && was != status {
		b.Logger().Warn("drift found", "name", name, "uuid", k.UUID, "status", status, "platform_name", pk.Name)
	}
	next := &keySeen{UUID: k.UUID, SyncedAt: started, Found: found, Name: pk.Name, UpdatedAt: pk.UpdatedAt}
	if next.same(k.Seen) {
		return status, k.UUID, nil
	}
	k.Seen = next
	return status, k.UUID, putKey(ctx, s, k)
}

// dropStaleSyncRecords deletes the records of keys that are gone (deleted or
// renamed by Vault). A failure is only logged: the next sync tries again,
// and a stale record is never read for another key (its uuid differs).
func (b *gradientBackend) dropStaleSyncRecords(ctx context.Context, s logical.Storage) {
	names, err := s.List(ctx, syncKeyPrefix)
	if err != nil {
		b.Logger().Warn("listing sync records failed", "error", err)
		return
	}
	for _, name := range names {
		func() {
			defer b.lockNames(name)()
			if k, err := getKey(ctx, s, name); err != nil || k != nil {
				return
			}
			if err := s.Delete(ctx, syncKeyPrefix+name); err != nil {
				b.Logger().Warn("dropping a stale sync record failed", "name", name, "error", err)
			}
		}()
	}
}

// recordStopped records in sync/state that the sync that started at started
// stopped after comparing the keys up to through, so that their
// last_synced counts it. Best effort: when the write fails too (storage
// down, or the node shutting down), their last_synced stays that of the
// sync before, which also compared them.
func (b *gradientBackend) recordStopped(ctx context.Context, s logical.Storage, started time.Time, through string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	b.syncView.writeMu.Lock()
	defer b.syncView.writeMu.Unlock()
	st, err := getSyncState(ctx, s)
	if err == nil {
		st.addStopped(started, through)
		err = b.putSyncStateLocked(ctx, s, st)
	}
	if err != nil {
		b.Logger().Warn("could not record how far a stopped sync got; the keys it compared show the sync before", "error", err)
	}
}

// foldLegacyRecords moves what the records of earlier versions say the last
// sync saw into the key entries, once, on the active node at start: after
// it (Layout 1) a read of keys/<name> reads the entry alone. Records that
// hold no agents are deleted. A failure is logged and leaves Layout 0:
// reads keep reading the records, and the next completed sync folds them.
func (b *gradientBackend) foldLegacyRecords(ctx context.Context, s logical.Storage) {
	st, err := getSyncState(ctx, s)
	if err != nil || st.Layout >= 1 {
		return
	}
	b.syncer.runMu.Lock()
	defer b.syncer.runMu.Unlock()
	names, err := s.List(ctx, syncKeyPrefix)
	if err == nil {
		for _, name := range names {
			if err = b.foldLegacyRecord(ctx, s, name); err != nil {
				break
			}
		}
	}
	if err == nil {
		b.syncView.writeMu.Lock()
		st, err = getSyncState(ctx, s)
		if err == nil {
			st.Layout = 1
			err = b.putSyncStateLocked(ctx, s, st)
		}
		b.syncView.writeMu.Unlock()
	}
	if err != nil && !errors.Is(err, logical.ErrReadOnly) {
		b.Logger().Warn("could not fold the sync records of an earlier version into the key entries; reads keep reading both until a sync completes", "error", err)
	}
}

func (b *gradientBackend) foldLegacyRecord(ctx context.Context, s logical.Storage, name string) error {
	defer b.lockNames(name)()
	rec, err := getSyncRecord(ctx, s, name)
	if err != nil || rec == nil {
		return err
	}
	k, err := getKey(ctx, s, name)
	if err != nil {
		return err
	}
	if k != nil {
		if seen := newerSeen(k, k.Seen, rec.seen()); seen != k.Seen {
			k.Seen = seen
			if err := putKey(ctx, s, k); err != nil {
				return err
			}
		}
	}
	if len(rec.Agents) == 0 && rec.AgentsSeenAt.IsZero() {
		return s.Delete(ctx, syncKeyPrefix+name)
	}
	return nil
}

// noteAgents records the agents just seen using k. The caller holds k's name
// lock. It is best effort: a node that may not write (a performance
// standby serving a read) keeps nothing, and a failure is only logged.
func (b *gradientBackend) noteAgents(ctx context.Context, s logical.Storage, k *keyEntry, agents []platform.Agent) {
	rec, err := getSyncRecord(ctx, s, k.Name)
	if err != nil {
		return
	}
	if rec == nil || !strings.EqualFold(rec.UUID, k.UUID) {
		rec = &keySyncRecord{UUID: k.UUID}
	}
	rec.Agents = rec.Agents[:0]
	for _, a := range agents {
		rec.Agents = append(rec.Agents, agentRef{UUID: a.UUID, Name: a.Name})
	}
	rec.AgentsSeenAt = b.now().UTC()
	if err := putSyncRecord(ctx, s, k.Name, rec); err != nil && !errors.Is(err, logical.ErrReadOnly) {
		b.Logger().Debug("could not record the agents of a key", "name", k.Name, "error", err)
	}
}

// ---- the periodic sync ----

// syncScheduler runs the periodic sync on the active node.
type syncScheduler struct {
	b *gradientBackend

	// Set before Initialize; tests replace it. b's clock is the time.
	tick time.Duration // 0: no background ticker (tests tick by hand)

	mu          sync.Mutex
	storage     logical.Storage
	started     time.Time
	lastAttempt time.Time
	loop        tickerLoop

	// runMu runs one sync at a time, periodic or requested.
	runMu sync.Mutex

	// folding is the fold of an earlier version's records started by
	// Initialize; stopFold cancels it. It runs in the background because
	// Vault waits for every mount's Initialize before the node serves
	// requests: a mount with many old records must not hold up an unseal
	// or a failover. Until it is done, reads use the records (Layout 0).
	folding  sync.WaitGroup
	stopFold context.CancelFunc
}

func newSyncScheduler(b *gradientBackend) *syncScheduler {
	return &syncScheduler{b: b, tick: defaultSyncTick}
}

func (b *gradientBackend) initializeSync(_ context.Context, req *logical.InitializationRequest) error {
	s := b.syncer
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.WriteSafeReplicationState() {
		// Not Initialize's context: it ends when Initialize returns.
		ctx, cancel := context.WithCancel(context.Background())
		s.stopFold = cancel
		s.folding.Add(1)
		go func() {
			defer s.folding.Done()
			b.foldLegacyRecords(ctx, req.Storage)
		}()
	}
	s.storage = req.Storage
	s.started = s.b.now()
	s.loop.start(s.tick, false, s.runTick)
	return nil
}

func (b *gradientBackend) cleanSync(context.Context) {
	s := b.syncer
	s.mu.Lock()
	stopAndWait := s.loop.detach()
	if s.stopFold != nil {
		s.stopFold()
	}
	s.mu.Unlock()
	stopAndWait()
	s.folding.Wait()
}

// runTick starts a sync when one is due. Like the rotation scheduler it acts
// only where storage may be written (the active node of the primary, or a
// local mount): a standby or a performance standby never calls the
// platform for it. A sync is due sync_interval after the last completed one
// (kept in storage, so a failover or a reload keeps the pace), or after this
// node started when none ever completed, and never sooner than
// sync_interval after this node's last attempt (a platform that is down is
// not asked every tick).
func (s *syncScheduler) runTick(ctx context.Context) {
	s.mu.Lock()
	storage := s.storage
	s.mu.Unlock()
	if storage == nil || !s.b.WriteSafeReplicationState() {
		return
	}
	cfg, err := getConfig(ctx, storage)
	if err != nil || cfg == nil {
		return
	}
	interval := cfg.syncInterval()
	if interval <= 0 {
		return
	}
	st, err := getSyncState(ctx, storage)
	if err != nil {
		s.b.Logger().Error("reading the sync state failed; retrying next tick", "error", err)
		return
	}
	now := s.b.now()
	s.mu.Lock()
	base := st.LastRun
	if base.IsZero() {
		base = s.started
	}
	if s.lastAttempt.After(base) {
		base = s.lastAttempt
	}
	if now.Before(base.Add(interval)) {
		s.mu.Unlock()
		return
	}
	s.lastAttempt = now
	s.mu.Unlock()

	// Scheduled work: every platform request of the periodic sync first
	// waits for the background share of the budget, as rotations do, so
	// scheduler_headroom_percent of it stays free for requests.
	background := platform.WithBudgetClass(ctx, platform.ClassBackground)
	// The tidy of agent API keys rides on the sync's pace: one listing per
	// agent that a role or a lease names, nothing on a mount that never
	// issued one (path_agent_creds.go).
	defer func() {
		if res, err := s.b.tidyAgentKeys(background, storage); err != nil {
			s.b.Logger().Error("periodic tidy of agent API keys failed; trying again after sync_interval", "error", err)
		} else if len(res.deleted) > 0 {
			s.b.Logger().Warn("periodic tidy deleted agent API keys of this mount that no lease held", "count", len(res.deleted))
		}
	}()
	if _, err := s.b.runSync(background, storage); err != nil {
		msg := err.Error()
		s.b.Logger().Error("periodic sync failed; trying again after sync_interval", "error", msg)
		// Record it for status; the key entries are untouched.
		s.b.syncView.writeMu.Lock()
		if st, err := getSyncState(ctx, storage); err == nil {
			st.LastError, st.LastErrorAt = msg, now.UTC()
			_ = s.b.putSyncStateLocked(ctx, storage, st)
		}
		s.b.syncView.writeMu.Unlock()
	}
}

// syncInterval is the configured interval; nil (configs written before it
// existed) means the default.
func (c *gradientConfig) syncInterval() time.Duration {
	if c.SyncInterval == nil {
		return defaultSyncInterval
	}
	return *c.SyncInterval
}

// noteAgentsMoved adds agents that a reassign moved to k to the ones last
// seen using it. The caller holds k's name lock.
func (b *gradientBackend) noteAgentsMoved(ctx context.Context, s logical.Storage, k *keyEntry, moved []platform.Agent) {
	rec, err := getSyncRecord(ctx, s, k.Name)
	if err != nil {
		return
	}
	var all []platform.Agent
	if rec != nil && strings.EqualFold(rec.UUID, k.UUID) {
		for _, a := range rec.Agents {
			if !containsAgent(moved, a.UUID) {
				all = append(all, platform.Agent{UUID: a.UUID, Name: a.Name})
			}
		}
	}
	b.noteAgents(ctx, s, k, append(all, moved...))
}

// recordPlatformWrite stores the platform's updated_at from the answer to a
// write Vault made outside a handler's commit (an undo), so that the next
// sync does not take Vault's own push for a change made elsewhere. The
// caller holds the key's locks. A failure is only logged: it costs a
// modified_outside that a repair clears.
func (b *gradientBackend) recordPlatformWrite(ctx context.Context, s logical.Storage, uuid string, updatedAt time.Time) {
	k, err := findKeyByUUID(ctx, s, uuid)
	if err != nil || k == nil || !updatedAt.After(k.UpdatedAt) {
		return
	}
	k.UpdatedAt = updatedAt
	if err := putKey(ctx, s, k); err != nil {
		b.Logger().Warn("could not record the platform's updated_at after an undo; the next sync may report modified_outside", "uuid", uuid, "error", err)
	}
}
