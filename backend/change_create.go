package backend

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// A key's first write: create makes a new platform key, adopt takes over
// one already there. Each takes makeChange's road with its entry and undo.

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
