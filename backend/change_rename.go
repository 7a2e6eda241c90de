package backend

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// renameWAL: platform key UUID was being renamed from OldName to Name.
type renameWAL struct {
	walHeader
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	OldName string `json:"old_name"`
}

func (w *renameWAL) kind() string                  { return walKindRename }
func (w *renameWAL) lockScope() ([]string, string) { return []string{w.Name, w.OldName}, w.UUID }
func (w *renameWAL) undone() string                { return w.said("the old name was restored on the platform") }
func (w *renameWAL) describe() []any {
	return []any{"provider", w.Provider, "uuid", w.UUID, "name", w.Name, "old_name", w.OldName}
}

// renameKey renames the platform key and moves the Vault entry. The caller
// holds both names' locks and the uuid's.
func (b *gradientBackend) renameKey(ctx context.Context, s logical.Storage, c *clients, k *keyEntry, newName string) (*keyEntry, error) {
	if err := b.refuseDuplicateName(ctx, c, k.Provider, newName, k.UUID); err != nil {
		return nil, err
	}
	w := &renameWAL{
		walHeader: walHeader{Provider: k.Provider, Created: b.now().UTC()},
		UUID:      k.UUID, Name: newName, OldName: k.Name,
	}
	renamed := *k
	renamed.Name = newName
	// No sync has compared the key under its new name: it reads in_sync
	// with no last_synced until one does, as before what was seen moved
	// into the entry (the record stayed under the old name and was dropped).
	renamed.Seen = nil
	err := b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, platform.KeyChange{Name: newName})
			if err != nil {
				return keyGoneIfNotFound(err, k)
			}
			renamed.UpdatedAt = pk.UpdatedAt
			return nil
		},
		commit: func(ctx context.Context) error {
			b.names.remove(k.Provider, k.Name, k.UUID)
			b.names.put(k.Provider, newName, k.UUID)
			if err := putKey(ctx, s, &renamed); err != nil {
				return err
			}
			if err := deleteKey(ctx, s, k.Name); err != nil {
				// Put storage back as it was, so the undo sees the old
				// name alone and restores it on the platform.
				if undoErr := deleteKey(ctx, s, newName); undoErr != nil {
					return fmt.Errorf("%w; removing the new entry failed too: %v", err, undoErr)
				}
				return err
			}
			return nil
		},
	})
	return &renamed, err
}

// undo gives the platform key the name storage holds it under. If storage
// holds it under the new name too, the rename completed and only a leftover
// old entry is dropped.
func (w *renameWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := findKeysByUUID(ctx, s, w.UUID)
	if err != nil {
		return err
	}
	if len(stored) == 0 {
		w.outcome = "the key is no longer stored, so there was no name to restore"
		return nil
	}
	for _, k := range stored {
		if k.Name == w.Name {
			w.outcome = fmt.Sprintf("storage already holds the key as %q, so the rename stands", w.Name)
			for _, old := range stored {
				if old.Name == w.OldName {
					return deleteKey(ctx, s, old.Name)
				}
			}
			return nil
		}
	}
	if len(stored) > 1 {
		return fmt.Errorf("platform key %s is stored under %d names; delete all but one by hand", w.UUID, len(stored))
	}
	return b.pushName(ctx, s, w.Provider, w.UUID, w.Name, stored[0].Name)
}

// pushName sets the platform key's name back to name (it had from before)
// and keeps the name cache in step. A key that is gone counts as done.
func (b *gradientBackend) pushName(ctx context.Context, s logical.Storage, provider, uuid, from, name string) error {
	if _, err := b.pushStored(ctx, s, provider, uuid, platform.KeyChange{Name: name}, "restoring the name of"); err != nil {
		return err
	}
	b.names.remove(provider, from, uuid)
	b.names.put(provider, name, uuid)
	b.Logger().Warn("restored the name of a platform key after an incomplete change", "uuid", uuid, "name", name)
	return nil
}
