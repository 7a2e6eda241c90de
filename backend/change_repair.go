package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Repairs of drift, each down makeChange's road: a key renamed or modified
// outside Vault gets Vault's name and secret back on the same uuid (a
// repair-key entry); a key deleted outside Vault is created again under its
// name with Vault's secret (a create-key entry, whose undo deletes the new
// key if storage never took its uuid).

// repairWAL: platform key UUID was being given the name and secret storage
// holds. The undo does the same again: storage is the truth, and pushing it
// twice changes nothing.
type repairWAL struct {
	walHeader
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
	Drift string `json:"drift"`
}

func (w *repairWAL) kind() string                  { return walKindRepair }
func (w *repairWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *repairWAL) undone() string {
	return "the name and secret Vault holds were pushed to the platform key again"
}
func (w *repairWAL) describe() []any {
	return []any{"provider", w.Provider, "uuid", w.UUID, "name", w.Name, "drift", w.Drift}
}

// undo pushes the stored name and secret to the key, found by uuid under
// whatever name storage holds it now. A key deleted since, on the platform
// or in Vault, leaves nothing to do.
func (w *repairWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := findKeyByUUID(ctx, s, w.UUID)
	if err != nil || stored == nil {
		return err
	}
	found, err := b.pushStored(ctx, s, w.Provider, w.UUID, platform.KeyChange{Name: stored.Name, Secret: stored.APIKey}, "finishing the repair of")
	if found {
		b.names.put(w.Provider, stored.Name, w.UUID)
	}
	return err
}

// repairOutcome is what a repair did, for the response.
type repairOutcome struct {
	drift   string
	action  string
	key     *keyEntry
	oldUUID string
	// lostAgents are the agents last known to use the deleted key, seen at
	// agentsSeenAt; known is false when the plugin never saw its agents.
	lostAgents   []agentRef
	agentsSeenAt time.Time
	known        bool
}

// repairKey puts the platform key back the way Vault holds it. The caller
// holds the key's name lock and uuid lock. Nothing is changed when the key
// changed again on the platform since the sync that found the drift: the
// caller must sync and look again.
func (b *gradientBackend) repairKey(ctx context.Context, s logical.Storage, mount string, k *keyEntry) (*repairOutcome, error) {
	st, err := b.cachedSyncState(ctx, s)
	if err != nil {
		return nil, err
	}
	seen, err := seenOf(ctx, s, st, k)
	if err != nil {
		return nil, err
	}
	if !seen.compares(k) {
		return nil, callerErrorf("no sync has compared key %q with the platform yet: run vault write -f %ssync, then read %skeys/%s", k.Name, mount, mount, k.Name)
	}
	drift, _ := syncStatus(k, seen)
	out := &repairOutcome{drift: drift, key: k}
	if drift == syncInSync {
		out.action = "nothing to repair: the last sync found the key as Vault holds it"
		return out, nil
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return nil, err
	}
	if err := b.refuseChangedSince(ctx, c, mount, k, seen, drift); err != nil {
		return nil, err
	}
	// The secret goes back to agents: it must still work. A key revoked at
	// the provider (perhaps the reason it was changed in the control panel)
	// is never pushed back.
	if err := c.verifier.Verify(ctx, k.Provider, k.APIKey); err != nil {
		return nil, fmt.Errorf("the secret Vault holds for %q was not pushed back: %w; write a new api_key to %skeys/%s instead", k.Name, err, mount, k.Name)
	}
	if drift != syncModified {
		// The name must be free: another key may have taken it since.
		if err := b.refuseTakenName(ctx, c, mount, k); err != nil {
			return nil, err
		}
	}

	if drift == syncMissing {
		rec, recErr := getSyncRecord(ctx, s, k.Name)
		if recErr != nil {
			return nil, recErr
		}
		out.oldUUID = k.UUID
		if rec != nil && strings.EqualFold(rec.UUID, k.UUID) {
			out.lostAgents, out.agentsSeenAt, out.known = rec.Agents, rec.AgentsSeenAt, !rec.AgentsSeenAt.IsZero()
		}
		out.key, err = b.recreateKey(ctx, s, c, k)
		out.action = "created the key again on the platform under the same name with the secret Vault holds; it has a new uuid"
	} else {
		out.key, err = b.pushStoredKey(ctx, s, c, k, seen, drift)
		out.action = "pushed the secret Vault holds to the same platform key (same uuid)"
		if drift == syncRenamed {
			out.action = fmt.Sprintf("renamed the platform key from %q back to %q and pushed the secret Vault holds (same uuid)", seen.Name, k.Name)
		}
	}
	if err != nil {
		return nil, err
	}
	b.Logger().Info("drift repaired", "name", k.Name, "drift", drift, "uuid", out.key.UUID, "old_uuid", out.oldUUID)
	return out, nil
}

// seenNow is what a repair that the platform answered with pk leaves
// seen of the key: what Vault just wrote is what the platform holds, so a
// read shows in_sync without another sync. It is stored with the repair's
// entry, in the same write.
func (b *gradientBackend) seenNow(pk platform.Key) *keySeen {
	return &keySeen{UUID: pk.UUID, SyncedAt: b.now().UTC(), Found: true, Name: pk.Name, UpdatedAt: pk.UpdatedAt}
}

// refuseChangedSince compares the platform key now with what the sync that
// found the drift recorded. Vault's own writes since (a rotation) are not a
// change: their updated_at is in the entry.
func (b *gradientBackend) refuseChangedSince(ctx context.Context, c *clients, mount string, k *keyEntry, rec *keySeen, drift string) error {
	now, err := c.platform.GetKey(ctx, k.Provider, k.UUID)
	gone := errors.Is(err, platform.ErrNotFound)
	if err != nil && !gone {
		return err
	}
	seen := rec.UpdatedAt
	if k.UpdatedAt.After(seen) {
		seen = k.UpdatedAt
	}
	var what string
	switch {
	case drift == syncMissing && !gone:
		what = "it exists on the platform again"
	case drift == syncMissing:
		return nil
	case gone:
		what = "it was deleted from the platform since"
	case now.Name != rec.Name:
		what = fmt.Sprintf("it was renamed again, from %q to %q", rec.Name, now.Name)
	case now.UpdatedAt.After(seen):
		what = fmt.Sprintf("it was modified again (updated_at %s, the sync saw %s)", now.UpdatedAt.Format(time.RFC3339Nano), rec.UpdatedAt.Format(time.RFC3339Nano))
	default:
		return nil
	}
	return callerErrorf("platform key %s (%q) changed since the sync at %s that found it %s: %s. Nothing was changed: run vault write -f %ssync, read %skeys/%s, and repair again if it still drifts",
		k.UUID, k.Name, rec.SyncedAt.Format(time.RFC3339), drift, what, mount, mount, k.Name)
}

// refuseTakenName refuses a repair that would give k's name to a second
// platform key. The platform is listed afresh: this is no time for a cached
// answer.
func (b *gradientBackend) refuseTakenName(ctx context.Context, c *clients, mount string, k *keyEntry) error {
	uuid, err := b.names.lookup(ctx, c.platform, k.Provider, k.Name, 0, c.config.RequestTimeout)
	if err != nil {
		return fmt.Errorf("checking the platform for a key with the same name (nothing was changed): %w", err)
	}
	if uuid == "" || strings.EqualFold(uuid, k.UUID) {
		return nil
	}
	return callerErrorf("another %s platform key, %s, is named %q now (made or renamed outside Vault); nothing was changed. Rename or delete that key on the platform and repair again; or, to manage that key under this name instead, delete %skeys/%s and write it again with uuid=%s",
		k.Provider, uuid, k.Name, mount, k.Name, uuid)
}

// pushStoredKey gives the platform key the name and secret storage holds.
func (b *gradientBackend) pushStoredKey(ctx context.Context, s logical.Storage, c *clients, k *keyEntry, rec *keySeen, drift string) (*keyEntry, error) {
	w := &repairWAL{
		walHeader: walHeader{Provider: k.Provider, Created: b.now().UTC()},
		UUID:      k.UUID, Name: k.Name, Drift: drift,
	}
	repaired := *k
	err := b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, platform.KeyChange{Name: k.Name, Secret: k.APIKey})
			if err != nil {
				return keyGoneIfNotFound(err, k)
			}
			repaired.UpdatedAt = pk.UpdatedAt
			repaired.Seen = b.seenNow(pk)
			return nil
		},
		commit: func(ctx context.Context) error {
			if rec.Name != k.Name {
				b.names.remove(k.Provider, rec.Name, k.UUID)
			}
			b.names.put(k.Provider, k.Name, k.UUID)
			return putKey(ctx, s, &repaired)
		},
	})
	return &repaired, err
}

// recreateKey creates the key again under its name with the stored secret
// and stores the new uuid in the same entry: settings, version and rotation
// state stay. It takes the road of every create (createChange).
func (b *gradientBackend) recreateKey(ctx context.Context, s logical.Storage, c *clients, k *keyEntry) (*keyEntry, error) {
	w := newCreateWAL(k.Provider, k.Name, b.now().UTC())
	recreated := *k
	err := b.createChange(ctx, s, c, w, k.APIKey,
		func(made platform.Key) {
			recreated.UUID, recreated.CreatedAt, recreated.UpdatedAt = made.UUID, made.CreatedAt, made.UpdatedAt
			recreated.Seen = b.seenNow(made)
		},
		func(ctx context.Context) error {
			b.names.remove(k.Provider, k.Name, k.UUID)
			b.names.put(k.Provider, k.Name, recreated.UUID)
			return putKey(ctx, s, &recreated)
		})
	return &recreated, err
}
