package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Every change to the platform is bracketed by a write-ahead log entry:
// written before the platform call, deleted once Vault's storage matches the
// platform. If the node dies in between, Vault's periodic rollback (on the
// node that wrote it: wal/ is local storage) calls walRollback, which compares
// storage with the entry and undoes only what storage does not reflect.
const (
	walKindCreate = "create-key"
	walKindAdopt  = "adopt-key"
	walKindRotate = "rotate-key"
	walKindRename = "rename-key"
)

// walRollbackMinAge keeps rollback away from operations still in flight; the
// longest one is bounded by a few request timeouts.
const walRollbackMinAge = 10 * time.Minute

// orphanClockSlack allows for the platform's clock being behind Vault's when
// deciding whether a key with the WAL's name was created by this operation.
const orphanClockSlack = 5 * time.Minute

// createWAL holds what rollback needs to find an orphan before its uuid is
// known: the platform key was to be created with this provider and name at or
// after Started.
type createWAL struct {
	Provider string    `json:"provider"`
	Name     string    `json:"name"`
	Started  time.Time `json:"started"`
}

// keyChangeWAL describes a change to an existing platform key: an adoption
// (Name and secret pushed; OldName is the name to restore), a rotation
// (Version is the stored version that was being replaced) or a rename (Name is
// the new name, OldName the old one). It never holds a secret: the secret to
// restore is the one still in storage.
type keyChangeWAL struct {
	Provider string `json:"provider"`
	UUID     string `json:"uuid"`
	Name     string `json:"name"`
	OldName  string `json:"old_name,omitempty"`
	Version  int    `json:"version,omitempty"`
}

// walRollback is called by Vault for WAL entries older than the minimum age.
// It takes the per-name locks the original operation held. An error keeps the
// entry for the next pass; it is never swallowed, or a key would leak.
func (b *gradientBackend) walRollback(ctx context.Context, req *logical.Request, kind string, data any) error {
	switch kind {
	case walKindCreate:
		var w createWAL
		if err := decodeWAL(data, &w); err != nil {
			return err
		}
		defer b.lockNames(w.Name)()
		return b.rollbackCreate(ctx, req, &w)
	case walKindAdopt, walKindRotate, walKindRename:
		var w keyChangeWAL
		if err := decodeWAL(data, &w); err != nil {
			return err
		}
		names := []string{w.Name}
		if w.OldName != "" {
			names = append(names, w.OldName)
		}
		defer b.lockNames(names...)()
		return b.rollbackKeyChange(ctx, req, kind, &w)
	}
	// An unknown kind cannot be acted on; keeping it would retry forever.
	b.Logger().Error("dropping write-ahead log entry of unknown kind", "kind", kind)
	return nil
}

func (b *gradientBackend) rollback(ctx context.Context, req *logical.Request, kind string, wal any) error {
	switch w := wal.(type) {
	case *createWAL:
		return b.rollbackCreate(ctx, req, w)
	case *keyChangeWAL:
		return b.rollbackKeyChange(ctx, req, kind, w)
	}
	return fmt.Errorf("no rollback for %T", wal)
}

// rollbackCreate deletes every platform key with the WAL's name that this
// operation may have created and that storage does not hold.
func (b *gradientBackend) rollbackCreate(ctx context.Context, req *logical.Request, w *createWAL) error {
	up, err := b.getUpstream(ctx, req.Storage)
	if err != nil {
		return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
	}
	stored, err := getKey(ctx, req.Storage, w.Name)
	if err != nil {
		return err
	}
	keys, err := up.platform.ListKeys(ctx, w.Provider)
	if err != nil {
		return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
	}
	for _, k := range keys {
		if k.Name != w.Name || (stored != nil && stored.UUID == k.UUID) {
			continue
		}
		if !k.CreatedAt.IsZero() && k.CreatedAt.Before(w.Started.Add(-orphanClockSlack)) {
			continue // older than this operation: not ours
		}
		if err := up.platform.DeleteKey(ctx, w.Provider, k.UUID); err != nil && !errors.Is(err, errPlatformNotFound) {
			return fmt.Errorf("rolling back the create of %q: deleting orphan %s: %w", w.Name, k.UUID, err)
		}
		b.names.remove(w.Provider, w.Name, k.UUID)
		b.Logger().Warn("deleted orphaned platform key", "name", w.Name, "provider", w.Provider, "uuid", k.UUID)
	}
	return nil
}

// rollbackKeyChange restores the platform key to what storage says, when
// storage shows that the change did not complete.
func (b *gradientBackend) rollbackKeyChange(ctx context.Context, req *logical.Request, kind string, w *keyChangeWAL) error {
	up, err := b.getUpstream(ctx, req.Storage)
	if err != nil {
		return fmt.Errorf("rolling back %s of %s: %w", kind, w.UUID, err)
	}
	stored, err := getKey(ctx, req.Storage, w.Name)
	if err != nil {
		return err
	}
	completed := stored != nil && stored.UUID == w.UUID

	var change keyChange
	switch kind {
	case walKindAdopt:
		if completed {
			return nil
		}
		// The secret the key had before cannot be restored (the platform
		// never returns it); the one pushed was verified, so it works.
		change = keyChange{Name: w.OldName}
	case walKindRename:
		if completed {
			// The new entry is stored; finish by dropping the old one if it
			// survived.
			if old, err := getKey(ctx, req.Storage, w.OldName); err != nil {
				return err
			} else if old != nil && old.UUID == w.UUID {
				return deleteKey(ctx, req.Storage, w.OldName)
			}
			return nil
		}
		change = keyChange{Name: w.OldName}
	case walKindRotate:
		if !completed || stored.Version > w.Version {
			return nil // stored, or the key is gone: nothing to restore
		}
		change = keyChange{Secret: stored.APIKey}
	}

	if _, err := up.platform.UpdateKey(ctx, w.Provider, w.UUID, change); err != nil && !errors.Is(err, errPlatformNotFound) {
		return fmt.Errorf("rolling back %s of %s: %w", kind, w.UUID, err)
	}
	if change.Name != "" {
		b.names.remove(w.Provider, w.Name, w.UUID)
		b.names.put(w.Provider, w.OldName, w.UUID)
	}
	b.Logger().Warn("rolled back incomplete platform change", "kind", kind, "uuid", w.UUID, "name", w.Name)
	return nil
}

// settleFailedCall settles the entry of a platform call that failed. A
// definite refusal (the platform answered 4xx) changed nothing, so the entry
// just goes; a 5xx, a timeout or a dropped connection may have been applied
// and is undone like any other incomplete change.
func (b *gradientBackend) settleFailedCall(ctx context.Context, req *logical.Request, walID, kind string, wal any, callErr error) {
	if platformRefused(callErr) {
		b.deleteWAL(ctx, req, walID)
		return
	}
	b.settleWAL(ctx, req, walID, kind, wal)
}

func platformRefused(err error) bool {
	var ce *callerError
	return errors.As(err, &ce) || errors.Is(err, errPlatformNotFound) ||
		errors.Is(err, errPlatformUnauthorized) || errors.Is(err, logical.ErrUpstreamRateLimited)
}

// settleWAL undoes a failed operation at once, while the caller still holds
// the name locks, and deletes the WAL entry if that worked. If it did not,
// the entry stays and Vault's periodic rollback tries again later.
func (b *gradientBackend) settleWAL(ctx context.Context, req *logical.Request, walID, kind string, wal any) {
	if err := b.rollback(ctx, req, kind, wal); err != nil {
		b.Logger().Error("immediate rollback failed; the write-ahead log keeps it for later", "kind", kind, "wal_id", walID, "error", err)
		return
	}
	b.deleteWAL(ctx, req, walID)
}

// deleteWAL removes an entry whose operation is complete. A failure is only
// logged: the rollback will find storage complete and do nothing.
func (b *gradientBackend) deleteWAL(ctx context.Context, req *logical.Request, walID string) {
	if err := framework.DeleteWAL(ctx, req.Storage, walID); err != nil {
		b.Logger().Warn("could not delete a write-ahead log entry; rollback will find nothing to undo", "wal_id", walID, "error", err)
	}
}

// decodeWAL turns the generic data Vault hands back into the entry's type.
func decodeWAL(data any, out any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("decoding a write-ahead log entry: %w", err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding a write-ahead log entry: %w", err)
	}
	return nil
}
