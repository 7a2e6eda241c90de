package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/hashicorp/vault/sdk/logical"
)

// The platform changes this mount makes, each as a write-ahead log entry with
// its undo, and the function that sends it down makeChange's road. Handlers
// parse, validate and lock; these functions change the platform and storage.

// ---- create ----

// createWAL holds what the undo of a create needs to find the key it made
// when the platform's answer was lost and its uuid is unknown.
type createWAL struct {
	walHeader
	Name string `json:"name"`
	// Started and Deadline bound, on this node's clock, when the platform
	// can have created the key (see newCreateWAL).
	Started  time.Time `json:"started"`
	Deadline time.Time `json:"deadline"`
	// Seen are the keys with the name that recoverCreate found after the
	// answer was lost. This call may have made them or not, so it never
	// takes them, and the undo never deletes them.
	Seen []string `json:"seen,omitempty"`
	// UUID is known only in memory, once the platform answered; the undo
	// of a failed storage write then deletes exactly that key.
	UUID string `json:"-"`
}

// createTimeouts is how many request timeouts after its start a create can
// still land: the first call, the lookup after a lost answer and the one
// re-sent call each take at most one, and a request the platform accepted
// is applied within one more after the client gave up on it, or not at
// all. Every kind of create (create, drift repair's re-create, the first
// mint, which creates through createKey) takes this one window.
const createTimeouts = 4

// newCreateWAL is the entry of a create of name starting now.
func newCreateWAL(provider, name string, now time.Time, timeout time.Duration) *createWAL {
	return &createWAL{
		walHeader: walHeader{Provider: provider, Created: now},
		Name:      name,
		Started:   now,
		Deadline:  now.Add(createTimeouts * timeout),
	}
}

// seenAny reports whether recoverCreate recorded keys the undo must spare.
func (w *createWAL) seenAny() bool { return len(w.Seen) > 0 }

func (w *createWAL) kind() string                  { return walKindCreate }
func (w *createWAL) lockScope() ([]string, string) { return []string{w.Name}, "" }
func (w *createWAL) undone() string {
	return w.said("if the platform created the key, it was removed again")
}
func (w *createWAL) describe() []any {
	return []any{"provider", w.Provider, "name", w.Name, "started", w.Started.Format(time.RFC3339)}
}

// createKey pushes a new key to the platform and stores it.
func (b *gradientBackend) createKey(ctx context.Context, s logical.Storage, c *clients, r createRequest) (*keyEntry, error) {
	if err := b.refuseDuplicateName(ctx, c, r.provider, r.name, ""); err != nil {
		return nil, err
	}
	w := newCreateWAL(r.provider, r.name, b.now().UTC(), c.config.RequestTimeout)
	var k *keyEntry
	resent := false
	err := b.makeChange(ctx, s, pendingChange{
		entry:   w,
		rewrite: w.seenAny,
		lingers: func() bool { return resent },
		apply: func(ctx context.Context) error {
			pk, err := c.platform.CreateKey(ctx, r.provider, r.name, r.apiKey)
			if err != nil && !refused(err) {
				pk, resent, err = b.recoverCreate(ctx, s, c, w, r, err)
			}
			if err != nil {
				return err
			}
			w.UUID = pk.UUID
			k = &keyEntry{
				Name: r.name, Provider: r.provider, UUID: pk.UUID, Description: r.description,
				APIKey: r.apiKey, Version: 1, CreatedAt: pk.CreatedAt, UpdatedAt: pk.UpdatedAt,
			}
			r.zeroTouch.apply(k)
			b.rotation.onCreate(k, r.rotation)
			return nil
		},
		commit: func(ctx context.Context) error {
			b.names.put(r.provider, r.name, k.UUID)
			return putKey(ctx, s, k)
		},
	})
	return k, err
}

// recoverCreate follows a create whose answer was lost (a timeout, a dropped
// connection, a 5xx). A create is never re-sent blindly: the platform's
// keys are looked up first. None with the name means the create did not
// happen (yet), and it is sent once more. Any key with the name may be this
// call's or one another client made meanwhile: nothing tells them apart, so
// the create fails, takes nothing, and records the keys as seen so that no
// undo deletes them. A lookup that fails leaves the original error. Either
// way makeChange undoes and keeps the entry for the periodic rollback.
// resent reports that the create was sent again: the first may still land.
func (b *gradientBackend) recoverCreate(ctx context.Context, s logical.Storage, c *clients, w *createWAL, r createRequest, callErr error) (pk platform.Key, resent bool, err error) {
	_, named, err := w.lookUp(ctx, s, c)
	if err != nil {
		return platform.Key{}, false, callErr
	}
	if len(named) > 0 {
		w.Seen = named
		b.Logger().Warn("a create's answer was lost and a key with its name is on the platform; not taking it", "name", r.name, "provider", r.provider, "uuids", strings.Join(named, ","))
		return platform.Key{}, false, nameAppeared(r, named, callErr)
	}
	b.Logger().Warn("a create's answer was lost and the platform has no such key; sending it once more", "name", r.name, "provider", r.provider)
	pk, err = c.platform.CreateKey(ctx, r.provider, r.name, r.apiKey)
	if err != nil {
		// Even a refusal now leaves the first create free to land.
		err = platform.PossiblyApplied(err)
	}
	return pk, true, err
}

// nameAppeared says that a key with the create's name is on the platform
// after the answer was lost, and what to do. It wraps the lost answer, so
// the failure stays ambiguous: the entry is kept for a late landing.
// A re-create's entry stays as it was, and a managed entry adopts no other
// uuid: the advice then starts with deleting the entry.
func nameAppeared(r createRequest, uuids []string, callErr error) error {
	uuid := uuids[0]
	if len(uuids) > 1 {
		uuid = "<one of them>"
	}
	adopt := fmt.Sprintf("writing keys/%s again with provider=%s, api_key and uuid=%s", r.name, r.provider, uuid)
	stored, again := "stores nothing", "write again"
	if r.recreate {
		adopt = fmt.Sprintf("deleting keys/%s and writing it again with provider=%s, api_key and uuid=%s", r.name, r.provider, uuid)
		stored, again = "keeps its entry as it was", "repair again"
	}
	return fmt.Errorf("the platform's answer to the create of %s key %q was lost, and a key with that name is on the platform now (uuid %s): "+
		"it may be this create's or one made elsewhere meanwhile, so Vault did not take it and %s. "+
		"If it is yours, an operator can adopt it by %s; if not, delete or rename it on the platform and %s. The lost answer: %w",
		r.provider, r.name, strings.Join(uuids, ", "), stored, adopt, again, callErr)
}

// undo deletes the key this create made, if storage does not hold it. With
// the uuid unknown, the key is the one named like the WAL whose creation
// time, on the platform's clock, falls inside the call's window, and that
// recoverCreate did not see (those may be someone else's). Two such keys
// cannot be told apart: then nothing is deleted and the error names them.
func (w *createWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
	}
	var orphans []string
	if w.UUID != "" {
		if stored, err := findKeyByUUID(ctx, s, w.UUID); err != nil {
			return err
		} else if stored == nil {
			orphans = append(orphans, w.UUID)
		}
	} else {
		found, _, err := w.lookUp(ctx, s, c)
		if err != nil {
			return fmt.Errorf("rolling back the create of %q: %w", w.Name, err)
		}
		for _, k := range found {
			orphans = append(orphans, k.UUID)
		}
	}
	switch len(orphans) {
	case 0:
		w.outcome = "the platform has no key from this create that Vault does not hold"
		if len(w.Seen) > 0 {
			w.outcome = fmt.Sprintf("the platform key(s) with the name found after the lost answer (%s) were left as they are", strings.Join(w.Seen, ", "))
		}
		return nil
	case 1:
	default:
		return fmt.Errorf("rolling back the create of %q: %d keys with that name were created while the create was in flight (%s) and Vault holds none of them; they may include someone else's, so none was deleted: delete the ones this mount made by hand",
			w.Name, len(orphans), strings.Join(orphans, ", "))
	}
	if err := c.platform.DeleteKey(ctx, w.Provider, orphans[0]); err != nil && !errors.Is(err, platform.ErrNotFound) {
		return fmt.Errorf("rolling back the create of %q: deleting orphan %s: %w", w.Name, orphans[0], err)
	}
	b.names.remove(w.Provider, w.Name, orphans[0])
	b.Logger().Warn("deleted orphaned platform key", "name", w.Name, "provider", w.Provider, "uuid", orphans[0])
	return nil
}

// lookUp lists the provider's keys named like the WAL: named are all their
// uuids; found are those the create can have made (created inside its
// window), that it did not see earlier and that storage does not hold. The
// platform's clock is not this node's: its offset is measured from the Date
// header of the listing itself, and its timestamps have one-second
// resolution, so the window widens by the measurement's uncertainty and one
// second.
func (w *createWAL) lookUp(ctx context.Context, s logical.Storage, c *clients) (found []platform.Key, named []string, err error) {
	keys, err := c.platform.ListKeys(ctx, w.Provider)
	if err != nil {
		return nil, nil, err
	}
	lo, hi, ok := c.platform.ClockOffset()
	if !ok {
		lo, hi = -unknownClockSlack, unknownClockSlack
	}
	earliest := w.Started.Add(lo).Add(-time.Second)
	latest := w.Deadline.Add(hi).Add(time.Second)
	for _, k := range keys {
		if k.Name != w.Name {
			continue
		}
		named = append(named, k.UUID)
		if k.CreatedAt.Before(earliest) || k.CreatedAt.After(latest) || slices.ContainsFunc(w.Seen, func(u string) bool { return strings.EqualFold(u, k.UUID) }) {
			continue
		}
		if stored, err := findKeyByUUID(ctx, s, k.UUID); err != nil {
			return nil, nil, err
		} else if stored == nil {
			found = append(found, k)
		}
	}
	return found, named, nil
}

// unknownClockSlack is the platform clock's assumed offset when no answer
// has carried a Date header: wide, so that an orphan is still found.
const unknownClockSlack = 5 * time.Minute

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
	if errors.Is(err, platform.ErrNotFound) {
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
			pk, err := c.platform.UpdateKey(ctx, r.provider, r.adoptUUID, platform.KeyChange{Name: r.name, Secret: r.apiKey})
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
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, platform.KeyChange{Secret: apiKey})
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
	pk, err := c.platform.UpdateKey(ctx, w.Provider, w.UUID, platform.KeyChange{Secret: stored.APIKey})
	if err != nil && !errors.Is(err, platform.ErrNotFound) {
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
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("restoring the name of %s: %w", uuid, err)
	}
	pk, err := c.platform.UpdateKey(ctx, provider, uuid, platform.KeyChange{Name: name})
	if err != nil && !errors.Is(err, platform.ErrNotFound) {
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
func (b *gradientBackend) reassignAgents(ctx context.Context, s logical.Storage, c *clients, from, to *keyEntry, agents []platform.Agent) ([]string, error) {
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
	if errors.Is(err, platform.ErrNotFound) {
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
		if errors.Is(err, platform.ErrNotFound) {
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
func (b *gradientBackend) whereAgentsAre(ctx context.Context, c *clients, from, to *keyEntry, agents []platform.Agent) string {
	// A key that is gone has no agents.
	onFrom, errFrom := c.platform.ListAgentsByKey(ctx, from.Provider, from.UUID)
	if errors.Is(errFrom, platform.ErrNotFound) {
		errFrom = nil
	}
	onTo, errTo := c.platform.ListAgentsByKey(ctx, to.Provider, to.UUID)
	if errors.Is(errTo, platform.ErrNotFound) {
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

func containsAgent(agents []platform.Agent, uuid string) bool {
	return slices.ContainsFunc(agents, func(a platform.Agent) bool { return a.UUID == uuid })
}

// ---- delete ----
