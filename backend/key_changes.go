package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The platform changes this mount makes, each as a write-ahead log entry with
// its undo, and the function that sends it down makeChange's road. Handlers
// parse, validate and lock; these functions change the platform and storage.

// ---- create ----

// Every create (a key write, the first mint, which creates through
// createKey, and drift repair's re-create) takes one road, createChange:
// the key is sent under a provisional name unique to the call and recorded
// in the write-ahead log entry before the call, then renamed to its final
// name. A key found under the provisional name is this call's and no one
// else's, so a lost answer never leaves the plugin unable to tell its own
// key from one another client made under the final name meanwhile.

// createWAL holds what the undo of a create needs to find the key it made.
type createWAL struct {
	walHeader
	Name string `json:"name"`
	// Provisional is the name the key is created under, unique to this
	// call (see provisionalName).
	Provisional string `json:"provisional"`
	// UUID is recorded once the platform answered, or the lookup found the
	// key, and before the rename takes the provisional name away: after a
	// crash the undo finds the key by it.
	UUID string `json:"uuid,omitempty"`

	// record writes the entry again under its id (set by makeChange).
	record func(ctx context.Context) error
	// refused: the platform refused the first create outright; nothing
	// changed. resent: the create was sent a second time, so the first
	// may still land after success; the entry stays for the rollback.
	refused, resent bool
}

// provisionalMark sits between a key's name and the random part of its
// provisional name, so that an operator who sees such a key on the
// platform knows where it comes from.
const provisionalMark = ".vault-"

// provisionalName is name with a mark and 8 random hex digits, unique to one
// create. It follows the name rule (validateName): a name too long to carry
// the suffix is shortened, and a trailing period dropped, so that no two
// periods meet. The random part alone makes it unique.
func provisionalName(name string) string {
	random := make([]byte, 4)
	_, _ = rand.Read(random) // crypto/rand.Read never fails
	suffix := provisionalMark + hex.EncodeToString(random)
	base := name[:min(len(name), maxNameLength-len(suffix))]
	return strings.TrimRight(base, ".") + suffix
}

// newCreateWAL is the entry of a create of name starting now.
func newCreateWAL(provider, name string, now time.Time) *createWAL {
	return &createWAL{
		walHeader:   walHeader{Provider: provider, Created: now},
		Name:        name,
		Provisional: provisionalName(name),
	}
}

func (w *createWAL) kind() string                  { return walKindCreate }
func (w *createWAL) lockScope() ([]string, string) { return []string{w.Name}, "" }
func (w *createWAL) recordWith(record func(ctx context.Context) error) {
	w.record = record
}
func (w *createWAL) undone() string {
	return w.said("if the platform created the key, it was removed again")
}
func (w *createWAL) describe() []any {
	return []any{"provider", w.Provider, "name", w.Name, "provisional_name", w.Provisional, "uuid", w.UUID}
}

// createKey pushes a new key to the platform and stores it.
func (b *gradientBackend) createKey(ctx context.Context, s logical.Storage, c *clients, r createRequest) (*keyEntry, error) {
	if err := b.refuseDuplicateName(ctx, c, r.provider, r.name, ""); err != nil {
		return nil, err
	}
	w := newCreateWAL(r.provider, r.name, b.now().UTC())
	var k *keyEntry
	err := b.createChange(ctx, s, c, w, r.apiKey,
		func(pk platformKey) {
			k = &keyEntry{
				Name: r.name, Provider: r.provider, UUID: pk.UUID, Description: r.description,
				APIKey: r.apiKey, Version: 1, CreatedAt: pk.CreatedAt, UpdatedAt: pk.UpdatedAt,
			}
			r.zeroTouch.apply(k)
			b.rotation.onCreate(k, r.rotation)
		},
		func(ctx context.Context) error {
			b.names.put(r.provider, r.name, k.UUID)
			return putKey(ctx, s, k)
		})
	return k, err
}

// createChange sends the create of w down makeChange's road: made hands
// the platform's key (under its final name) to the caller, commit stores
// it. The failure policy: a create the platform refused outright changed
// nothing; any other failure is undone (the key found by its uuid or its
// provisional name is deleted) and the entry kept for a late landing, as
// it is after a success whose create was sent twice.
func (b *gradientBackend) createChange(ctx context.Context, s logical.Storage, c *clients, w *createWAL, secret string, made func(platformKey), commit func(context.Context) error) error {
	return b.makeChange(ctx, s, pendingChange{
		entry:     w,
		multiStep: true,
		unchanged: func() bool { return w.refused },
		lingers:   func() bool { return w.resent },
		apply: func(ctx context.Context) error {
			pk, err := b.sendCreate(ctx, c, w, secret)
			if err != nil {
				return err
			}
			made(pk)
			return nil
		},
		commit: commit,
	})
}

// sendCreate creates the key under its provisional name, records its uuid
// in the entry, and renames it to its final name.
func (b *gradientBackend) sendCreate(ctx context.Context, c *clients, w *createWAL, secret string) (platformKey, error) {
	pk, err := c.platform.CreateKey(ctx, w.Provider, w.Provisional, secret)
	if platformRefused(err) {
		w.refused = true
		return platformKey{}, err
	}
	if err != nil {
		if pk, err = b.recoverCreate(ctx, c, w, secret, err); err != nil {
			return platformKey{}, err
		}
	}
	w.UUID = pk.UUID
	// Once renamed, the key no longer carries the provisional name: the
	// entry must know its uuid first, or a crash would leave it unfound.
	if err := w.record(ctx); err != nil {
		return platformKey{}, fmt.Errorf("recording the new %s key %s in the write-ahead log before giving it its name: %w", w.Provider, pk.UUID, err)
	}
	renamed, err := c.platform.UpdateKey(ctx, w.Provider, pk.UUID, keyChange{Name: w.Name})
	if err != nil {
		return platformKey{}, fmt.Errorf("the platform created the %s key %s under the provisional name %q, but renaming it to %q failed (if refused: another key may have taken that name meanwhile): %w",
			w.Provider, pk.UUID, w.Provisional, w.Name, err)
	}
	return renamed, nil
}

// recoverCreate follows a create whose answer was lost (a timeout, a dropped
// connection, a 5xx). A create is never re-sent blindly: the platform's
// keys are looked up first. A key under the provisional name is this
// call's, and is taken. None means the create did not happen (yet): it is
// sent once more under the same name. If the first lands late, it is a
// second key under the provisional name, which the rollback deletes. A
// lookup that fails leaves the original error.
func (b *gradientBackend) recoverCreate(ctx context.Context, c *clients, w *createWAL, secret string, callErr error) (platformKey, error) {
	keys, err := c.platform.ListKeys(ctx, w.Provider)
	if err != nil {
		return platformKey{}, callErr
	}
	for _, k := range keys {
		if k.Name == w.Provisional {
			b.Logger().Info("a create's answer was lost; the key it made is on the platform under its provisional name", "name", w.Name, "provider", w.Provider, "uuid", k.UUID)
			return k, nil
		}
	}
	b.Logger().Warn("a create's answer was lost and the platform has no key under its provisional name; sending it once more", "name", w.Name, "provider", w.Provider, "provisional_name", w.Provisional)
	w.resent = true
	pk, err := c.platform.CreateKey(ctx, w.Provider, w.Provisional, secret)
	if err != nil {
		// Even a refusal now leaves the first create free to land.
		err = &possiblyApplied{err: err}
	}
	return pk, err
}

// undo deletes the keys this create made that storage does not hold: the
// one whose uuid the entry records, and every key still under the
// provisional name (a create whose answer was lost, or one that landed
// late). No other key can carry that name, so no one else's is touched.
func (w *createWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	if w.Provisional == "" && w.UUID == "" {
		// An entry from before provisional names: nothing tells its key
		// from one made elsewhere, so nothing is deleted.
		w.outcome = fmt.Sprintf("nothing was deleted: the entry predates provisional names, so a key named %q that Vault does not hold may be this create's or someone else's; check the platform", w.Name)
		b.Logger().Warn("a create's write-ahead log entry predates provisional names; check the platform by hand", w.describe()...)
		return nil
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
	}
	candidates := []string{}
	if w.UUID != "" {
		candidates = append(candidates, w.UUID)
	}
	if w.Provisional != "" {
		keys, err := c.platform.ListKeys(ctx, w.Provider)
		if err != nil {
			return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
		}
		for _, k := range keys {
			if k.Name == w.Provisional && !strings.EqualFold(k.UUID, w.UUID) {
				candidates = append(candidates, k.UUID)
			}
		}
	}
	deleted := 0
	for _, uuid := range candidates {
		if stored, err := findKeyByUUID(ctx, s, uuid); err != nil {
			return err
		} else if stored != nil {
			continue
		}
		if err := c.platform.DeleteKey(ctx, w.Provider, uuid); err != nil && !errors.Is(err, errPlatformNotFound) {
			return fmt.Errorf("rolling back the create of %q: deleting orphan %s: %w", w.Name, uuid, err)
		}
		b.names.remove(w.Provider, w.Name, uuid)
		b.Logger().Warn("deleted orphaned platform key", "name", w.Name, "provider", w.Provider, "uuid", uuid)
		deleted++
	}
	if deleted == 0 {
		w.outcome = "the platform has no key from this create that Vault does not hold"
	}
	return nil
}

// ---- adopt ----

// adoptWAL: a platform key took this name and secret; OldName is the name
// it had, restored by the undo. The secret it had cannot be restored: the
// platform never returns it.
type adoptWAL struct {
	walHeader
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	OldName string `json:"old_name"`
}

func (w *adoptWAL) kind() string                  { return walKindAdopt }
func (w *adoptWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *adoptWAL) undone() string {
	return "the key's old name was restored on the platform (the secret sent stays on it: the platform never returns the old one)"
}
func (w *adoptWAL) describe() []any {
	return []any{"provider", w.Provider, "uuid", w.UUID, "name", w.Name, "old_name", w.OldName}
}

// adoptKey takes over a key that already exists on the platform: it gets
// this name and secret, and keeps its uuid and the agents that use it. The
// caller holds the uuid's lock, so no other adoption or rename can make two
// names manage it.
func (b *gradientBackend) adoptKey(ctx context.Context, s logical.Storage, c *clients, r createRequest) (*keyEntry, error) {
	if owner, err := findKeyByUUID(ctx, s, r.adoptUUID); err != nil {
		return nil, err
	} else if owner != nil {
		return nil, callerErrorf("platform key %s is already managed by this mount as %q; a key cannot be adopted twice", r.adoptUUID, owner.Name)
	}
	current, err := c.platform.GetKey(ctx, r.provider, r.adoptUUID)
	if errors.Is(err, errPlatformNotFound) {
		return nil, callerErrorf("there is no %s key with uuid %s on the platform; check the uuid and the provider", r.provider, r.adoptUUID)
	}
	if err != nil {
		return nil, err
	}
	if err := b.refuseDuplicateName(ctx, c, r.provider, r.name, r.adoptUUID); err != nil {
		return nil, err
	}

	w := &adoptWAL{
		walHeader: walHeader{Provider: r.provider, Created: b.now().UTC()},
		UUID:      r.adoptUUID, Name: r.name, OldName: current.Name,
	}
	var k *keyEntry
	err = b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			pk, err := c.platform.UpdateKey(ctx, r.provider, r.adoptUUID, keyChange{Name: r.name, Secret: r.apiKey})
			if err != nil {
				return err
			}
			k = &keyEntry{
				Name: r.name, Provider: r.provider, UUID: r.adoptUUID, Description: r.description,
				APIKey: r.apiKey, Version: 1, CreatedAt: pk.CreatedAt, UpdatedAt: pk.UpdatedAt,
			}
			r.zeroTouch.apply(k)
			b.rotation.onCreate(k, r.rotation)
			return nil
		},
		commit: func(ctx context.Context) error {
			b.names.remove(r.provider, current.Name, r.adoptUUID)
			b.names.put(r.provider, r.name, r.adoptUUID)
			return putKey(ctx, s, k)
		},
	})
	return k, err
}

// undo gives the key its old name back unless storage holds its uuid (the
// adoption completed, or another name adopted it since).
func (w *adoptWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	if stored, err := findKeyByUUID(ctx, s, w.UUID); err != nil {
		return err
	} else if stored != nil {
		w.outcome = fmt.Sprintf("Vault holds the key as %q, so its name stays", stored.Name)
		return nil
	}
	return b.pushName(ctx, s, w.Provider, w.UUID, w.Name, w.OldName)
}

// ---- rotate ----

// rotateWAL: the secret of platform key UUID was being replaced while
// storage held Version. The undo pushes back the secret storage holds.
type rotateWAL struct {
	walHeader
	UUID    string `json:"uuid"`
	Name    string `json:"name"`
	Version int    `json:"version"`
}

func (w *rotateWAL) kind() string                  { return walKindRotate }
func (w *rotateWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *rotateWAL) undone() string {
	return w.said("the previous secret was pushed back to the platform")
}
func (w *rotateWAL) describe() []any {
	return []any{"provider", w.Provider, "uuid", w.UUID, "name", w.Name, "version", w.Version}
}

// rotateSecret verifies the new secret, pushes it to the same platform key
// (same uuid, so the agents that use it keep working) and stores k with it
// and the next version in one write. Fields the caller set on k are stored
// with it; on an error the caller discards k.
func (b *gradientBackend) rotateSecret(ctx context.Context, s logical.Storage, k *keyEntry, apiKey string) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return err
	}
	if err := c.verifier.Verify(ctx, k.Provider, apiKey); err != nil {
		return err
	}
	w := &rotateWAL{
		walHeader: walHeader{Provider: k.Provider, Created: b.now().UTC()},
		UUID:      k.UUID, Name: k.Name, Version: k.Version,
	}
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, keyChange{Secret: apiKey})
			if err != nil {
				return keyGoneIfNotFound(err, k)
			}
			k.UpdatedAt = pk.UpdatedAt
			return nil
		},
		commit: func(ctx context.Context) error {
			k.APIKey = apiKey
			k.Version++
			return putKey(ctx, s, k)
		},
	})
}

// undo pushes the stored secret back unless storage already holds a later
// version, found by uuid under whatever name the key has now.
func (w *rotateWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := findKeyByUUID(ctx, s, w.UUID)
	switch {
	case err != nil:
		return err
	case stored == nil:
		w.outcome = "the key is no longer stored, so there was nothing to push back"
		return nil
	case stored.Version > w.Version:
		w.outcome = "storage already holds the new secret, so the platform keeps it"
		return nil
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the rotation of %s: %w", w.UUID, err)
	}
	pk, err := c.platform.UpdateKey(ctx, w.Provider, w.UUID, keyChange{Secret: stored.APIKey})
	if err != nil && !errors.Is(err, errPlatformNotFound) {
		return fmt.Errorf("rolling back the rotation of %s: %w", w.UUID, err)
	}
	if err == nil {
		b.recordPlatformWrite(ctx, s, w.UUID, pk.UpdatedAt)
	}
	b.Logger().Warn("pushed the stored secret back after an incomplete rotation", "uuid", w.UUID, "name", stored.Name, "version", stored.Version)
	return nil
}

// ---- rename ----

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
	err := b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, keyChange{Name: newName})
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
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("restoring the name of %s: %w", uuid, err)
	}
	pk, err := c.platform.UpdateKey(ctx, provider, uuid, keyChange{Name: name})
	if err != nil && !errors.Is(err, errPlatformNotFound) {
		return fmt.Errorf("restoring the name of %s: %w", uuid, err)
	}
	if err == nil {
		b.recordPlatformWrite(ctx, s, uuid, pk.UpdatedAt)
	}
	b.names.remove(provider, from, uuid)
	b.names.put(provider, name, uuid)
	b.Logger().Warn("restored the name of a platform key after an incomplete change", "uuid", uuid, "name", name)
	return nil
}

// ---- delete ----

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
			if err == nil || errors.Is(err, errPlatformNotFound) {
				return nil
			}
			// An answer that was lost: if the platform no longer has the
			// key, the delete happened.
			if !platformRefused(err) {
				_, getErr := c.platform.GetKey(ctx, k.Provider, k.UUID)
				if errors.Is(getErr, errPlatformNotFound) {
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
	if _, err := c.platform.GetKey(ctx, w.Provider, w.UUID); !errors.Is(err, errPlatformNotFound) {
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

// ---- reassign ----

// reassignWAL: the agents were being moved from key From to key To.
type reassignWAL struct {
	walHeader
	From     string   `json:"from"`
	To       string   `json:"to"`
	FromName string   `json:"from_name"`
	ToName   string   `json:"to_name"`
	Agents   []string `json:"agents"`
}

func (w *reassignWAL) kind() string                  { return walKindReassign }
func (w *reassignWAL) lockScope() ([]string, string) { return []string{w.FromName, w.ToName}, "" }
func (w *reassignWAL) undone() string                { return w.said("the agents already moved were moved back") }
func (w *reassignWAL) describe() []any {
	return []any{"provider", w.Provider, "from", w.From, "to", w.To, "agents", strings.Join(w.Agents, ",")}
}

// reassignAgents switches every agent from one key to the other. Agents
// whose fields other than the key changed are returned as warnings.
func (b *gradientBackend) reassignAgents(ctx context.Context, s logical.Storage, c *clients, from, to *keyEntry, agents []platformAgent) ([]string, error) {
	w := &reassignWAL{
		walHeader: walHeader{Provider: from.Provider, Created: b.now().UTC()},
		From:      from.UUID, To: to.UUID, FromName: from.Name, ToName: to.Name,
	}
	for _, a := range agents {
		w.Agents = append(w.Agents, a.UUID)
	}
	var warnings []string
	err := b.makeChange(ctx, s, pendingChange{
		entry:     w,
		multiStep: len(agents) > 1,
		// A record of the completed move, so that the rollback of an
		// earlier failed move never undoes this one.
		commit: func(ctx context.Context) error { return putReassignDone(ctx, s, from.UUID, b.now().UTC()) },
		apply: func(ctx context.Context) error {
			for i, agent := range agents {
				after, err := c.platform.SetAgentKey(ctx, from.Provider, agent.UUID, to.UUID)
				if err != nil {
					return fmt.Errorf("moving agent %s (%s) failed after %d of %d were moved: %w", agent.Name, agent.UUID, i, len(agents), err)
				}
				if changed := agentDrift(agent, after); changed != "" {
					// Only the key was sent; if the platform changed
					// anything else, someone must look at that agent.
					b.Logger().Error("agent fields changed by a key switch", "agent", agent.UUID, "fields", changed)
					warnings = append(warnings, fmt.Sprintf("agent %s (%s): the platform changed %s while switching its key; check the agent", agent.Name, agent.UUID, changed))
				}
			}
			return nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w. %s", err, b.whereAgentsAre(ctx, c, from, to, agents))
	}
	return warnings, nil
}

// undo moves back to From every agent of the move that now uses To. If the
// From key is gone, the agents have nowhere to go back to and the move
// stands.
func (w *reassignWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	// Storage knows no agents, but it records when a move away from this
	// key last completed: a move that completed after this entry was
	// written stands.
	if done, err := getReassignDone(ctx, s, w.From); err != nil {
		return err
	} else if done.After(w.Created) {
		w.outcome = "a later reassign from this key completed, so the agents stay where it put them"
		return nil
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the reassign from %s: %w", w.From, err)
	}
	onTarget, err := c.platform.ListAgentsByKey(ctx, w.Provider, w.To)
	if errors.Is(err, errPlatformNotFound) {
		return nil // the target is gone, and the agents with it
	}
	if err != nil {
		return fmt.Errorf("rolling back the reassign from %s: %w", w.From, err)
	}
	var failed []string
	for _, a := range onTarget {
		if !slices.Contains(w.Agents, a.UUID) {
			continue
		}
		_, err := c.platform.SetAgentKey(ctx, w.Provider, a.UUID, w.From)
		if errors.Is(err, errPlatformNotFound) {
			b.Logger().Warn("the source key of a failed reassign is gone; the agents stay on the target", "from", w.From, "to", w.To)
			w.outcome = "the key the agents came from is gone, so they stay on the new key"
			return nil
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", a.UUID, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("moving agents back to %s failed: %s", w.From, strings.Join(failed, "; "))
	}
	return nil
}

// reassignDonePrefix records, per source key uuid, when a reassign away from
// it last completed.
const reassignDonePrefix = "reassigns/"

func putReassignDone(ctx context.Context, s logical.Storage, fromUUID string, at time.Time) error {
	entry, err := logical.StorageEntryJSON(reassignDonePrefix+strings.ToLower(fromUUID), map[string]time.Time{"completed": at})
	if err == nil {
		err = s.Put(ctx, entry)
	}
	if err != nil {
		return fmt.Errorf("recording the completed reassign: %w", err)
	}
	return nil
}

func getReassignDone(ctx context.Context, s logical.Storage, fromUUID string) (time.Time, error) {
	entry, err := s.Get(ctx, reassignDonePrefix+strings.ToLower(fromUUID))
	if err != nil || entry == nil {
		return time.Time{}, err
	}
	var rec map[string]time.Time
	if err := entry.DecodeJSON(&rec); err != nil {
		return time.Time{}, fmt.Errorf("decoding the reassign record: %w", err)
	}
	return rec["completed"], nil
}

// whereAgentsAre asks the platform where each agent of a failed move is now,
// so the caller learns the state rather than a guess.
func (b *gradientBackend) whereAgentsAre(ctx context.Context, c *clients, from, to *keyEntry, agents []platformAgent) string {
	// A key that is gone has no agents.
	onFrom, errFrom := c.platform.ListAgentsByKey(ctx, from.Provider, from.UUID)
	if errors.Is(errFrom, errPlatformNotFound) {
		errFrom = nil
	}
	onTo, errTo := c.platform.ListAgentsByKey(ctx, to.Provider, to.UUID)
	if errors.Is(errTo, errPlatformNotFound) {
		errTo = nil
	}
	if errFrom != nil || errTo != nil {
		return "Where the agents are now could not be read back from the platform: list them with keys/<name>/agents"
	}
	var back, moved, elsewhere []string
	for _, a := range agents {
		label := fmt.Sprintf("%s (%s)", a.Name, a.UUID)
		switch {
		case containsAgent(onFrom, a.UUID):
			back = append(back, label)
		case containsAgent(onTo, a.UUID):
			moved = append(moved, label)
		default:
			elsewhere = append(elsewhere, label)
		}
	}
	parts := []string{"Now:"}
	add := func(what string, list []string) {
		if len(list) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s;", what, strings.Join(list, ", ")))
		}
	}
	add(fmt.Sprintf("on %q", from.Name), back)
	add(fmt.Sprintf("on %q", to.Name), moved)
	add("on neither key", elsewhere)
	return strings.TrimSuffix(strings.Join(parts, " "), ";")
}

func containsAgent(agents []platformAgent, uuid string) bool {
	return slices.ContainsFunc(agents, func(a platformAgent) bool { return a.UUID == uuid })
}

// ---- delete ----
