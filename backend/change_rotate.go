package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// A new secret on the same platform key: rotate pushes one a person staged,
// mint makes one as an OpenAI service account (see zero_touch.go for the
// settings). Minting takes makeChange's road like every platform change:
// the write-ahead log entry (with the account's name, chosen in advance from
// the key's name and version) comes first, then the account is created, its
// key verified and pushed to the same platform key, and only the account's
// id is stored with the version it serves, never its key outside the sealed
// api_key.

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
	if _, err := b.pushStored(ctx, s, w.Provider, w.UUID, platform.KeyChange{Secret: stored.APIKey}, "rolling back the rotation of"); err != nil {
		return err
	}
	b.Logger().Warn("pushed the stored secret back after an incomplete rotation", "uuid", w.UUID, "name", stored.Name, "version", stored.Version)
	return nil
}

// serviceAccountName is the name of the account that mints version of the
// key name: chosen before the create, so a rollback finds it by name when the
// create's answer was lost.
func serviceAccountName(name string, version int) string {
	return fmt.Sprintf("%s%s-v%d", serviceAccountNamePrefix, name, version)
}

// mintWAL: a service account named AccountName was being minted in
// ProjectID for key Name; with UUID set, its key was being pushed to that
// platform key while storage held Version. The undo pushes the stored secret
// back, then deletes every account with that name that no stored version
// references.
type mintWAL struct {
	walHeader
	Name        string `json:"name"`
	UUID        string `json:"uuid,omitempty"`
	Version     int    `json:"version"`
	ProjectID   string `json:"project_id"`
	AccountName string `json:"account_name"`
	// AccountID is known only in memory, once OpenAI answered.
	AccountID string `json:"-"`
}

func (w *mintWAL) kind() string                  { return walKindMint }
func (w *mintWAL) lockScope() ([]string, string) { return []string{w.Name}, w.UUID }
func (w *mintWAL) undone() string {
	return "the stored secret stays on the platform and the service account minted for it was deleted"
}
func (w *mintWAL) describe() []any {
	return []any{"name", w.Name, "uuid", w.UUID, "version", w.Version, "openai_project_id", w.ProjectID, "service_account_name", w.AccountName}
}

// undo puts the platform back on the stored secret (unless storage holds a
// later version: the mint completed), and only then deletes the accounts
// this mint can have made: deleting one whose key the platform may still
// use would cut the agents off.
func (w *mintWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the mint of %q: %w", w.Name, err)
	}
	if w.UUID != "" {
		stored, err := findKeyByUUID(ctx, s, w.UUID)
		if err != nil {
			return err
		}
		if stored != nil && stored.Version <= w.Version {
			if _, err := c.platform.UpdateKey(ctx, platform.OpenAI, w.UUID, platform.KeyChange{Secret: stored.APIKey}); err != nil && !errors.Is(err, platform.ErrNotFound) {
				return fmt.Errorf("rolling back the mint of %q: pushing the stored secret back: %w", w.Name, err)
			}
		}
	}
	referenced, err := referencedServiceAccounts(ctx, s)
	if err != nil {
		return err
	}
	candidates := map[string]bool{}
	if w.AccountID != "" {
		candidates[w.AccountID] = true
	}
	accounts, err := c.admin.ListServiceAccounts(ctx, w.ProjectID)
	if err != nil && !errors.Is(err, providers.ErrNotFound) {
		return fmt.Errorf("rolling back the mint of %q: %w", w.Name, err)
	}
	for _, a := range accounts {
		if a.Name == w.AccountName {
			candidates[a.ID] = true
		}
	}
	for id := range candidates {
		if referenced[id] {
			continue // a stored version's: the mint completed, or a later one did
		}
		if err := c.admin.DeleteServiceAccount(ctx, w.ProjectID, id); err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("rolling back the mint of %q: deleting service account %s: %w", w.Name, id, err)
		}
		b.Logger().Warn("deleted a service account minted by an incomplete rotation", "name", w.Name, "service_account_id", id, "openai_project_id", w.ProjectID)
	}
	return nil
}

// referencedServiceAccounts are the accounts some stored entry holds: the
// current version's, or one waiting for retirement.
func referencedServiceAccounts(ctx context.Context, s logical.Storage) (map[string]bool, error) {
	refs := map[string]bool{}
	err := forEachKey(ctx, s, func(k *keyEntry) error {
		for _, u := range k.secretUses() {
			if u.serviceAccountID != "" {
				refs[u.serviceAccountID] = true
			}
		}
		return nil
	})
	return refs, err
}

// mintAccount creates the account named in w and verifies its key. Once the
// account exists, a failure is possiblyApplied: the undo must delete it.
func (b *gradientBackend) mintAccount(ctx context.Context, c *clients, w *mintWAL) (providers.MintedAccount, error) {
	acct, err := c.admin.CreateServiceAccount(ctx, w.ProjectID, w.AccountName)
	w.AccountID = acct.ID
	if err != nil && providers.IsRefusal(err) && projectArchived(ctx, c, w.ProjectID) {
		// Archived since the key was written: permanent, so a caller
		// error (the scheduler waits for the next period, not minutes).
		stays := "the current key stays"
		if w.UUID == "" {
			stays = "nothing was changed" // the first version: no key yet
		}
		return providers.MintedAccount{}, callerErrorf("key %q mints into OpenAI project %q, which is archived: OpenAI makes no service accounts there, so nothing was minted and %s; set the key's openai_project_id to an active project", w.Name, w.ProjectID, stays)
	}
	if err != nil {
		return providers.MintedAccount{}, fmt.Errorf("minting a key: %w", err)
	}
	if err := c.verifier.Verify(ctx, platform.OpenAI, acct.APIKey); err != nil {
		return providers.MintedAccount{}, platform.PossiblyApplied(fmt.Errorf("the freshly minted key failed verification: %w", err))
	}
	return acct, nil
}

// projectArchived asks OpenAI, after it refused a service account, whether
// the project is archived: one more Admin API call on that failure only,
// none on a mint that works.
func projectArchived(ctx context.Context, c *clients, projectID string) bool {
	return errors.Is(c.admin.GetProject(ctx, projectID), providers.ErrProjectArchived)
}

// mintNext mints the key's next secret and pushes it to the same platform
// key: the minting twin of rotateSecret. k is a copy with the rotation
// bookkeeping set (recordRotation); on an error the caller discards it.
func (b *gradientBackend) mintNext(ctx context.Context, s logical.Storage, k *keyEntry) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return err
	}
	if c.config.OpenAIAdminKey == "" {
		return callerErrorf("key %q mints its secrets but config has no openai_admin_key: write one to config", k.Name)
	}
	// The list may have narrowed since the key was written: a mint into a
	// project it no longer lists is refused, and the current key stays.
	if !c.config.allowsOpenAIProject(k.OpenAIProjectID) {
		return callerErrorf("key %q mints into OpenAI project %q, which config's openai_project_ids no longer lists: nothing was minted and the current key stays; set the key's openai_project_id to a listed project, or ask an operator to add the project to openai_project_ids", k.Name, k.OpenAIProjectID)
	}
	w := &mintWAL{
		walHeader: walHeader{Provider: platform.OpenAI, Created: b.now().UTC()},
		Name:      k.Name, UUID: k.UUID, Version: k.Version, ProjectID: k.OpenAIProjectID,
		AccountName: serviceAccountName(k.Name, k.Version+1),
	}
	var minted providers.MintedAccount
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			var err error
			if minted, err = b.mintAccount(ctx, c, w); err != nil {
				return err
			}
			pk, err := c.platform.UpdateKey(ctx, k.Provider, k.UUID, platform.KeyChange{Secret: minted.APIKey})
			if err != nil {
				// The account is made: the undo must delete it.
				return platform.PossiblyApplied(keyGoneIfNotFound(err, k))
			}
			k.UpdatedAt = pk.UpdatedAt
			return nil
		},
		commit: func(ctx context.Context) error {
			k.APIKey = minted.APIKey
			k.Version++
			k.ServiceAccountID, k.ServiceAccountProjectID = minted.ID, w.ProjectID
			return putKey(ctx, s, k)
		},
	})
}

// rotateOrMint rotates k (a copy with recordRotation applied) to apiKey, or
// mints its next secret when apiKey is "" (callers allow that only for a
// minted key).
func (b *gradientBackend) rotateOrMint(ctx context.Context, s logical.Storage, k *keyEntry, apiKey string) error {
	if apiKey == "" {
		return b.mintNext(ctx, s, k)
	}
	return b.rotateSecret(ctx, s, k, apiKey)
}

// mintFirst mints the first secret of a key created without api_key, then
// creates (or adopts) the platform key with it through createKey's own road.
func (b *gradientBackend) mintFirst(ctx context.Context, s logical.Storage, c *clients, r createRequest) (*keyEntry, error) {
	if r.adoptUUID == "" {
		// Refuse a taken name before minting for nothing.
		if err := b.refuseDuplicateName(ctx, c, r.provider, r.name, ""); err != nil {
			return nil, err
		}
	}
	w := &mintWAL{
		walHeader: walHeader{Provider: platform.OpenAI, Created: b.now().UTC()},
		Name:      r.name, ProjectID: *r.zeroTouch.projectID, AccountName: serviceAccountName(r.name, 1),
	}
	var k *keyEntry
	err := b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			minted, err := b.mintAccount(ctx, c, w)
			if err != nil {
				return err
			}
			r.apiKey = minted.APIKey
			r.zeroTouch.serviceAccountID, r.zeroTouch.serviceAccountProject = minted.ID, w.ProjectID
			if r.adoptUUID != "" {
				k, err = b.adoptKey(ctx, s, c, r)
			} else {
				k, err = b.createKey(ctx, s, c, r)
			}
			if err != nil {
				// The account is made: the undo must delete it.
				return platform.PossiblyApplied(err)
			}
			return nil
		},
	})
	return k, err
}
