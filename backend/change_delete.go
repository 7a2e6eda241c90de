package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// deleteKeyWAL: platform key UUID was being deleted with its entry Name. A
// delete cannot be undone; settling it finishes it instead: once the
// platform no longer has the key, a minted key's service accounts are
// deleted and then the stored entry, so Vault never keeps a key the
// platform lost and never loses track of an account.
type deleteKeyWAL struct {
	walHeader
	UUID string `json:"uuid"`
	Name string `json:"name"`
}

func (w *deleteKeyWAL) kind() string                  { return walKindDelete }
func (w *deleteKeyWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *deleteKeyWAL) undone() string {
	return w.said("Vault's entry was settled against the platform (removed, with a minted key's service accounts, if the platform key is gone)")
}
func (w *deleteKeyWAL) describe() []any {
	return []any{"provider", w.Provider, "uuid", w.UUID, "name", w.Name}
}

// deleteKeyEverywhere deletes the platform key, then a minted key's service
// accounts, then the entry. The accounts go only once the key is gone: a
// platform delete that fails leaves the secret creds/ serves alive. The
// entry goes last, since until then it is what records the accounts. A
// platform 404 counts as deleted, as everywhere in Vault.
func (b *gradientBackend) deleteKeyEverywhere(ctx context.Context, s logical.Storage, c *clients, k *keyEntry) error {
	w := &deleteKeyWAL{walHeader: walHeader{Provider: k.Provider, Created: b.now().UTC()}, UUID: k.UUID, Name: k.Name}
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			err := c.platform.DeleteKey(ctx, k.Provider, k.UUID)
			if err == nil || errors.Is(err, platform.ErrNotFound) {
				return nil
			}
			// An answer that was lost: if the platform no longer has the
			// key, the delete happened.
			if !refused(err) {
				_, getErr := c.platform.GetKey(ctx, k.Provider, k.UUID)
				if errors.Is(getErr, platform.ErrNotFound) {
					b.Logger().Warn("a delete's answer was lost and the platform no longer has the key; finishing the delete", "name", k.Name, "uuid", k.UUID)
					return nil
				}
				if getErr != nil {
					return fmt.Errorf("whether platform key %s was deleted is unknown (its answer was lost and the key could not be read back); Vault keeps the entry and keeps serving the key: %w", k.UUID, err)
				}
			}
			return fmt.Errorf("platform key %s was not deleted, so Vault keeps the entry and keeps serving the key: %w", k.UUID, err)
		},
		commit: func(ctx context.Context) error {
			if err := b.retireAccountsOnDelete(ctx, c, k, b.Logger().With("name", k.Name)); err != nil {
				return err
			}
			b.names.remove(k.Provider, k.Name, k.UUID)
			return deleteKey(ctx, s, k.Name)
		},
	})
}

// undo finishes the delete if the platform no longer has its key: the
// service accounts the stored entry still records, then the entry.
func (w *deleteKeyWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := findKeyByUUID(ctx, s, w.UUID)
	if err != nil || stored == nil {
		return err
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("settling the delete of %s: %w", w.UUID, err)
	}
	if _, err := c.platform.GetKey(ctx, w.Provider, w.UUID); !errors.Is(err, platform.ErrNotFound) {
		return err // still there (the delete did not happen), or unknown
	}
	if err := b.retireAccountsOnDelete(ctx, c, stored, b.Logger().With("name", stored.Name)); err != nil {
		return err
	}
	b.names.remove(w.Provider, stored.Name, w.UUID)
	if err := deleteKey(ctx, s, stored.Name); err != nil {
		return err
	}
	b.rotation.unschedule(stored.Name)
	b.Logger().Warn("removed the entry of a key whose platform delete completed", "name", stored.Name, "uuid", w.UUID)
	return nil
}
