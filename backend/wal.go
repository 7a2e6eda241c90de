package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// Every change to the platform takes one road, makeChange: a write-ahead log
// entry is written before the platform call and deleted once Vault's storage
// matches the platform. If the node dies in between, Vault's periodic
// rollback on the cluster's active node (wal/ is LocalStorage: kept from
// performance secondaries, shared by the nodes of one cluster, so a new
// active node finds what a dead one left) hands the entry back to
// walRollback, which puts the platform back in line with storage.
//
// Each kind of entry knows how to undo its change, and that undo is always
// the same idea: make the platform key (found by uuid, never by name) say
// what storage says. It is safe to run at any time, any number of times,
// because storage is the truth and the undo only copies it.
//
// Each kind of change has its file, change_<verb>.go: its entry, its undo
// and the function that sends it down this road. Handlers parse, validate
// and lock; those functions change the platform and storage.
const (
	walKindCreate   = "create-key"
	walKindAdopt    = "adopt-key"
	walKindRotate   = "rotate-key"
	walKindRename   = "rename-key"
	walKindReassign = "reassign-agents"
	walKindDelete   = "delete-key"
	walKindMint     = "mint-key"
	walKindRepair   = "repair-key"
	walKindAgentKey = "create-agent-key"
)

// walKinds makes the empty entry of each kind, for decodeWAL to fill from
// what Vault hands back.
var walKinds = map[string]func() walEntry{
	walKindCreate:   func() walEntry { return &createWAL{} },
	walKindAdopt:    func() walEntry { return &adoptWAL{} },
	walKindRotate:   func() walEntry { return &rotateWAL{} },
	walKindRename:   func() walEntry { return &renameWAL{} },
	walKindReassign: func() walEntry { return &reassignWAL{} },
	walKindDelete:   func() walEntry { return &deleteKeyWAL{} },
	walKindMint:     func() walEntry { return &mintWAL{} },
	walKindRepair:   func() walEntry { return &repairWAL{} },
	walKindAgentKey: func() walEntry { return &agentKeyWAL{} },

	walKindAgentStaticCreate:     func() walEntry { return &agentStaticCreateWAL{} },
	walKindAgentStaticRegenerate: func() walEntry { return &agentStaticRegenerateWAL{} },
	walKindAgentStaticDelete:     func() walEntry { return &agentStaticDeleteWAL{} },
}

const (
	// walRollbackMinAge keeps rollback away from operations still in
	// flight; the longest one is bounded by a few request timeouts.
	walRollbackMinAge = 10 * time.Minute
	// defaultWALMaxAge bounds how long a rollback that keeps failing is
	// retried (after config was deleted, say, or when the old secret to
	// push back was revoked at the provider). Past it the entry is dropped
	// with an error log that says what an operator must finish by hand.
	defaultWALMaxAge = 24 * time.Hour
)

// walEntry is what one write-ahead log entry holds: enough to find and undo
// its platform change, never a secret.
type walEntry interface {
	kind() string
	// undo makes the platform match storage for this change. It takes no
	// locks: a request calls it holding the locks of the change, and
	// walRollback takes them first.
	undo(ctx context.Context, b *gradientBackend, s logical.Storage) error
	// lockScope names the keys and the platform uuid whose locks the
	// change holds.
	lockScope() (names []string, uuid string)
	// describe gives the key/value pairs an operator needs to finish the
	// change by hand.
	describe() []any
	// undone says in words what a successful undo did.
	undone() string
	created() time.Time
}

// walHeader is common to every entry.
type walHeader struct {
	Provider string    `json:"provider"`
	Created  time.Time `json:"created"`
	// outcome says what the last undo actually did, when that is not its
	// usual work (nothing was left to undo, say); it is not stored.
	outcome string
}

func (h walHeader) created() time.Time { return h.Created }

// said is what undone reports: the outcome the undo recorded, or the usual.
func (h *walHeader) said(usual string) string {
	if h.outcome != "" {
		return h.outcome
	}
	return usual
}

// recordingEntry is an entry whose apply learns, between its platform calls,
// what its undo needs after a crash (a create's uuid, before the rename that
// takes its provisional name away): makeChange hands it the way to write
// itself again under its id.
type recordingEntry interface {
	recordWith(record func(ctx context.Context) error)
}

// pendingChange is one platform change on its way through makeChange.
type pendingChange struct {
	entry walEntry
	// apply makes the platform call(s). An apply of several calls whose
	// failure comes after one of them changed something says so by wrapping
	// its error in possiblyApplied, as a re-sent call does: a refusal then
	// no longer means that nothing changed.
	apply func(ctx context.Context) error
	// commit writes storage to match the platform; nil when storage keeps
	// nothing about the change (a reassign).
	commit func(ctx context.Context) error
	// lingers, when it reports true after a success, keeps the entry for
	// the periodic rollback anyway: a create sent again after a lost answer
	// succeeded, and the first one may still land.
	lingers func() bool
}

// makeChange runs a platform change through the write-ahead log and owns the
// clean-up policy:
//   - a definite refusal of a single call (the platform answered 4xx)
//     changed nothing: the entry just goes;
//   - an ambiguous failure (5xx, timeout, dropped connection) may have been
//     applied, or may still be applied after this answer: it is undone at
//     once, and the entry stays for the periodic rollback either way, which
//     catches a change that lands late;
//   - a failed storage write after the platform change is undone at once;
//     the entry goes only if that worked.
//
// The error says what happened to the platform, never more than that.
func (b *gradientBackend) makeChange(ctx context.Context, s logical.Storage, c pendingChange) error {
	walID, err := framework.PutWAL(ctx, s, c.entry.kind(), c.entry)
	if err != nil {
		return fmt.Errorf("writing the write-ahead log (nothing was changed on the platform): %w", err)
	}
	if r, ok := c.entry.(recordingEntry); ok {
		r.recordWith(func(ctx context.Context) error { return b.rewriteWAL(ctx, s, walID, c.entry) })
	}
	if err := c.apply(ctx); err != nil {
		if changedNothing(err) {
			b.deleteWAL(ctx, s, walID)
			return err
		}
		return fmt.Errorf("%w; %s", err, b.undoNow(ctx, s, walID, c.entry, true))
	}
	if c.commit != nil {
		if err := c.commit(ctx); err != nil {
			return fmt.Errorf("%w; %s", err, b.undoNow(ctx, s, walID, c.entry, c.lingers != nil && c.lingers()))
		}
	}
	if c.lingers == nil || !c.lingers() {
		b.deleteWAL(ctx, s, walID)
	}
	return nil
}

// changedNothing reports whether a failed apply left the platform and the
// provider as they were: its call was refused outright (a 4xx, or never
// sent), and no earlier call of the change possibly applied.
func changedNothing(err error) bool {
	return !platform.IsPossiblyApplied(err) && (refused(err) || providers.IsRefusal(err))
}

// undoNow undoes a failed change while the request still holds its locks,
// and says in words what came of it.
func (b *gradientBackend) undoNow(ctx context.Context, s logical.Storage, walID string, w walEntry, keepEntry bool) string {
	if err := w.undo(ctx, b, s); err != nil {
		b.Logger().Error("undoing a failed platform change failed; the write-ahead log keeps it for the periodic rollback",
			append([]any{"kind", w.kind(), "wal_id", walID, "error", err}, w.describe()...)...)
		return fmt.Sprintf("undoing the platform change failed too (%v); Vault's periodic rollback retries it", err)
	}
	if keepEntry {
		return w.undone() + "; Vault's periodic rollback checks again later, in case the platform applies the change late"
	}
	b.deleteWAL(ctx, s, walID)
	return w.undone()
}

// walRollback is called by Vault for entries older than the minimum age. It
// takes the locks the original change held. An error keeps the entry for the
// next pass, until it is older than walMaxAge.
func (b *gradientBackend) walRollback(ctx context.Context, req *logical.Request, kind string, data any) error {
	w, err := decodeWAL(kind, data)
	if err != nil {
		// An entry that cannot be read cannot be acted on; keeping it
		// would retry it for ever.
		b.Logger().Error("dropping a write-ahead log entry that cannot be read", "kind", kind, "error", err)
		return nil
	}
	unlock, err := b.lockForRollback(ctx, req.Storage, w)
	if err == nil {
		err = w.undo(ctx, b, req.Storage)
		unlock()
	}
	if err == nil {
		return nil
	}
	if age := b.now().Sub(w.created()); !w.created().IsZero() && age > b.walMaxAge {
		b.Logger().Error("giving up on a platform change that could not be rolled back; finish it by hand",
			append([]any{"kind", kind, "age", age.Round(time.Second).String(), "error", err}, w.describe()...)...)
		return nil
	}
	return err
}

// lockForRollback takes the name locks of the change, plus the lock of the
// name that storage holds the uuid under now (a later rename may have moved
// it), then the uuid's lock. Names come before the uuid everywhere, so the
// order cannot deadlock; if the uuid moved while the locks were taken, it
// tries again.
func (b *gradientBackend) lockForRollback(ctx context.Context, s logical.Storage, w walEntry) (func(), error) {
	names, uuid := w.lockScope()
	for attempt := 0; attempt < 3; attempt++ {
		var holder string
		if uuid != "" {
			k, err := findKeyByUUID(ctx, s, uuid)
			if err != nil {
				return nil, err
			}
			if k != nil {
				holder = k.Name
			}
		}
		unlockNames := b.lockNames(append(names, holder)...)
		unlockUUID := b.lockUUID(uuid)
		unlock := func() { unlockUUID(); unlockNames() }
		if uuid == "" {
			return unlock, nil
		}
		k, err := findKeyByUUID(ctx, s, uuid)
		if err != nil {
			unlock()
			return nil, err
		}
		if k == nil || k.Name == holder {
			return unlock, nil
		}
		unlock()
	}
	return nil, fmt.Errorf("platform key %s moved between names while rollback took its locks; retrying on the next pass", uuid)
}

// pushStored gives platform key uuid what storage holds for it (its name,
// its secret, or both, as change says) after an incomplete change, and
// records the platform's updated_at so that the next sync sees no drift in
// Vault's own write. A key that is gone has nothing to restore: found is
// then false and err nil. doing says which undo this is, for the error.
func (b *gradientBackend) pushStored(ctx context.Context, s logical.Storage, provider, uuid string, change platform.KeyChange, doing string) (found bool, err error) {
	c, err := b.clients(ctx, s)
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", doing, uuid, err)
	}
	pk, err := c.platform.UpdateKey(ctx, provider, uuid, change)
	if errors.Is(err, platform.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s %s: %w", doing, uuid, err)
	}
	b.recordPlatformWrite(ctx, s, uuid, pk.UpdatedAt)
	return true, nil
}

// rewriteWAL stores the entry walID again with what its apply learned. The
// framework has no update: the stored envelope is rewritten under the same
// id, so the entry keeps its age.
func (b *gradientBackend) rewriteWAL(ctx context.Context, s logical.Storage, walID string, w walEntry) error {
	stored, err := framework.GetWAL(ctx, s, walID)
	if err == nil && stored == nil {
		err = errors.New("the entry is gone")
	}
	if err != nil {
		return fmt.Errorf("reading the write-ahead log entry: %w", err)
	}
	stored.Data = w
	value, err := json.Marshal(stored)
	if err == nil {
		err = s.Put(ctx, &logical.StorageEntry{Key: framework.WALPrefix + walID, Value: value})
	}
	if err != nil {
		return fmt.Errorf("writing the write-ahead log entry: %w", err)
	}
	return nil
}

// deleteWAL removes an entry whose change is settled. A failure is only
// logged: the rollback will find storage complete and change nothing.
func (b *gradientBackend) deleteWAL(ctx context.Context, s logical.Storage, walID string) {
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		b.Logger().Warn("could not delete a write-ahead log entry; rollback will find nothing to undo", "wal_id", walID, "error", err)
	}
}

// decodeWAL turns the generic data Vault hands back into the entry's type.
func decodeWAL(kind string, data any) (walEntry, error) {
	newEntry, ok := walKinds[kind]
	if !ok {
		return nil, errors.New("unknown kind")
	}
	w := newEntry()
	raw, err := json.Marshal(data)
	if err == nil {
		err = json.Unmarshal(raw, w)
	}
	if err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return w, nil
}
