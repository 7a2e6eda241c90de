package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// A key's first write: create makes a new platform key, adopt takes over
// one already there. Each takes makeChange's road with its entry and undo.

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
	// resent: the create was sent a second time, so the first may still
	// land after success; the entry stays for the rollback.
	resent bool
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

// provisionalPattern matches a name provisionalName made.
var provisionalPattern = regexp.MustCompile(`\.vault-[0-9a-f]{8}$`)

// isProvisional reports whether a platform key's name is a provisional one:
// the key is a create of a Vault mount in flight, or one its rollback will
// delete.
func isProvisional(name string) bool {
	return provisionalPattern.MatchString(name)
}

// newCreateWAL is the entry of a create of name starting now.
func newCreateWAL(provider, name string, now time.Time) *createWAL {
	return &createWAL{
		walHeader:   walHeader{Provider: provider, Created: now},
		Name:        name,
		Provisional: provisionalName(name),
	}
}

func (w *createWAL) kind() string { return walKindCreate }

// lockScope holds the new key's uuid too, once the entry records it: an
// adoption of that key (which holds its uuid) and this rollback then never
// interleave.
func (w *createWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
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
		func(pk platform.Key) {
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
func (b *gradientBackend) createChange(ctx context.Context, s logical.Storage, c *clients, w *createWAL, secret string, made func(platform.Key), commit func(context.Context) error) error {
	return b.makeChange(ctx, s, pendingChange{
		entry:   w,
		lingers: func() bool { return w.resent },
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
func (b *gradientBackend) sendCreate(ctx context.Context, c *clients, w *createWAL, secret string) (platform.Key, error) {
	pk, err := c.platform.CreateKey(ctx, w.Provider, w.Provisional, secret)
	if refused(err) {
		return platform.Key{}, err // refused outright: nothing changed
	}
	if err != nil {
		if pk, err = b.recoverCreate(ctx, c, w, secret, err); err != nil {
			return platform.Key{}, err
		}
	}
	w.UUID = pk.UUID
	// Once renamed, the key no longer carries the provisional name: the
	// entry must know its uuid first, or a crash would leave it unfound.
	if err := w.record(ctx); err != nil {
		return platform.Key{}, fmt.Errorf("recording the new %s key %s in the write-ahead log before giving it its name: %w", w.Provider, pk.UUID, err)
	}
	renamed, err := c.platform.UpdateKey(ctx, w.Provider, pk.UUID, platform.KeyChange{Name: w.Name})
	if err != nil {
		// The key exists: even a refused rename leaves a change to undo.
		return platform.Key{}, platform.PossiblyApplied(fmt.Errorf("the platform created the %s key %s under the provisional name %q, but renaming it to %q failed (if refused: another key may have taken that name meanwhile): %w",
			w.Provider, pk.UUID, w.Provisional, w.Name, err))
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
func (b *gradientBackend) recoverCreate(ctx context.Context, c *clients, w *createWAL, secret string, callErr error) (platform.Key, error) {
	keys, err := c.platform.ListKeys(ctx, w.Provider)
	if err != nil {
		return platform.Key{}, callErr
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
		err = platform.PossiblyApplied(err)
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
		if err := c.platform.DeleteKey(ctx, w.Provider, uuid); err != nil && !errors.Is(err, platform.ErrNotFound) {
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
	// The create that made it holds its name lock, not its uuid's: taking
	// the key now would leave two names managing it once that create
	// renames and stores it.
	if isProvisional(current.Name) {
		return nil, callerErrorf("platform key %s is named %q, a provisional name: a create of a Vault mount is in flight on it, or left it for its rollback, which deletes it; it cannot be adopted", r.adoptUUID, current.Name)
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
