package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The changes of a static role's agent API key, each down makeChange's road
// (wal.go): create or adopt, regenerate, delete. Their undos differ from the
// provider keys' in one way: an agent key's secret is made by the platform
// and shown once, so no undo can push a secret back. What storage holds is
// still the truth of what Vault manages; the undos make the platform hold no
// key storage does not know (create), and storage hold a secret the
// platform accepts (regenerate).

const (
	walKindAgentStaticCreate     = "create-agent-static-key"
	walKindAgentStaticRegenerate = "regenerate-agent-static-key"
	walKindAgentStaticDelete     = "delete-agent-static-key"
)

// agentStaticCreateWAL: a key named KeyName was being created on agent
// AgentUUID for role Name (or, with Adopt, key KeyUUID was being adopted).
// The name is chosen before the create and unique to it, so the undo finds
// the key of a create whose answer was lost by its name alone.
type agentStaticCreateWAL struct {
	walHeader
	Name      string `json:"name"`
	AgentUUID string `json:"agent_uuid"`
	KeyName   string `json:"api_key_name"`
	KeyUUID   string `json:"api_key_uuid,omitempty"`
	Adopt     bool   `json:"adopt,omitempty"`
}

func (w *agentStaticCreateWAL) kind() string { return walKindAgentStaticCreate }
func (w *agentStaticCreateWAL) lockScope() ([]string, string) {
	return []string{agentStaticLock(w.Name)}, ""
}
func (w *agentStaticCreateWAL) undone() string {
	if w.Adopt {
		return w.said("the adopted key stays on the platform, not managed by Vault; its secret may have been regenerated: write the role again to adopt it")
	}
	return w.said("the agent API key it created was deleted again")
}
func (w *agentStaticCreateWAL) describe() []any {
	return []any{"role", w.Name, "agent_uuid", w.AgentUUID, "api_key_name", w.KeyName, "api_key_uuid", w.KeyUUID, "adopt", w.Adopt}
}

// undo deletes every key of the agent that this create can have made (its
// uuid, or its name) unless a stored role holds it: this one, or one that
// adopted it meanwhile. An adoption is never undone on the platform: the
// key was not Vault's to delete.
func (w *agentStaticCreateWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	if w.Adopt {
		stored, err := getAgentStatic(ctx, s, w.Name)
		if err != nil {
			return err
		}
		if stored != nil && strings.EqualFold(stored.KeyUUID, w.KeyUUID) {
			w.outcome = "the role holds the adopted key, so there was nothing to undo"
		}
		return nil
	}
	ak, err := b.agentKeysOf(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the create of static role %q: %w", w.Name, err)
	}
	keys, err := ak.ListAgentKeys(ctx, w.AgentUUID)
	if errors.Is(err, platform.ErrNotFound) {
		w.outcome = "the agent is gone, and its keys with it"
		return nil
	}
	if err != nil {
		return fmt.Errorf("rolling back the create of static role %q: %w", w.Name, err)
	}
	deleted := 0
	for _, k := range keys {
		mine := k.Name == w.KeyName || (w.KeyUUID != "" && strings.EqualFold(k.UUID, w.KeyUUID))
		if !mine {
			continue
		}
		if holder, err := findAgentStaticByKey(ctx, s, k.UUID); err != nil {
			return fmt.Errorf("rolling back the create of static role %q: %w", w.Name, err)
		} else if holder != nil {
			continue
		}
		if err := ak.DeleteAgentKey(ctx, w.AgentUUID, k.UUID); err != nil && !errors.Is(err, platform.ErrNotFound) {
			return fmt.Errorf("rolling back the create of static role %q: deleting agent API key %s: %w", w.Name, k.UUID, err)
		}
		deleted++
		b.Logger().Warn("deleted the agent API key of an incomplete static role create", "role", w.Name, "agent_uuid", w.AgentUUID, "api_key_uuid", k.UUID)
	}
	if deleted == 0 {
		w.outcome = "no key of the create was on the platform, so there was nothing to delete"
	}
	return nil
}

// createAgentStatic creates the role's key on its agent and stores the role
// (version 1) with its secret.
func (b *gradientBackend) createAgentStatic(ctx context.Context, s logical.Storage, ak platform.AgentKeys, r *agentStaticEntry) error {
	r.KeyName = agentStaticKeyName(r.Name)
	w := &agentStaticCreateWAL{
		walHeader: walHeader{Created: b.now().UTC()},
		Name:      r.Name, AgentUUID: r.AgentUUID, KeyName: r.KeyName,
	}
	var created platform.AgentKey
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			var err error
			created, err = ak.CreateAgentKey(ctx, r.AgentUUID, r.KeyName)
			if errors.Is(err, platform.ErrNotFound) {
				return callerErrorf("agent_uuid: there is no agent %s on the platform (deleted meanwhile?); nothing was created", r.AgentUUID)
			}
			if err != nil {
				return fmt.Errorf("creating the agent API key: %w", err)
			}
			w.KeyUUID = created.UUID
			return nil
		},
		commit: func(ctx context.Context) error {
			// The new key's uuid lock, which an adoption holds from its
			// check that no role has the key to its store: between the
			// create and this store an adoption of the new uuid would
			// find no role holding it. (Its vault-static- name already
			// turns adoption away; this holds if the key was renamed
			// on the platform in between.) Name locks come before uuid
			// locks here as everywhere.
			defer b.lockUUID(created.UUID)()
			holder, err := findAgentStaticByKey(ctx, s, created.UUID)
			if err != nil {
				return err
			}
			if holder != nil {
				return fmt.Errorf("static role %q adopted the new agent API key %s before this role was stored; this role was not stored", holder.Name, created.UUID)
			}
			r.KeyUUID, r.Secret, r.Version = created.UUID, created.Secret, 1
			return putAgentStatic(ctx, s, r)
		},
	})
}

// adoptAgentStatic takes in an existing key of the agent. Vault cannot read
// a secret the platform made earlier, so adoption regenerates the key at
// once: from then on Vault holds the only copy of its secret, and whoever
// used the old one must read agent-static-creds/<name>.
func (b *gradientBackend) adoptAgentStatic(ctx context.Context, s logical.Storage, ak platform.AgentKeys, r *agentStaticEntry, keyUUID string) error {
	defer b.lockUUID(keyUUID)()
	holder, err := findAgentStaticByKey(ctx, s, keyUUID)
	if err != nil {
		return err
	}
	if holder != nil {
		return callerErrorf("api_key_uuid: key %s is already managed by static role %q; nothing was changed", keyUUID, holder.Name)
	}
	keys, err := ak.ListAgentKeys(ctx, r.AgentUUID)
	if err != nil {
		return fmt.Errorf("listing the API keys of agent %s: %w", r.AgentUUID, err)
	}
	var found *platform.AgentKey
	for i := range keys {
		if strings.EqualFold(keys[i].UUID, keyUUID) {
			found = &keys[i]
		}
	}
	if found == nil {
		return callerErrorf("api_key_uuid: agent %s has no API key %s; nothing was changed", r.AgentUUID, keyUUID)
	}
	if err := refuseVaultOwnedAgentKey(ctx, s, *found); err != nil {
		return err
	}
	r.KeyUUID, r.KeyName, r.Adopted = found.UUID, found.Name, true
	w := &agentStaticCreateWAL{
		walHeader: walHeader{Created: b.now().UTC()},
		Name:      r.Name, AgentUUID: r.AgentUUID, KeyName: found.Name, KeyUUID: found.UUID, Adopt: true,
	}
	var fresh platform.AgentKey
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			var err error
			fresh, err = ak.RegenerateAgentKey(ctx, r.AgentUUID, r.KeyUUID)
			if errors.Is(err, platform.ErrNotFound) {
				return callerErrorf("api_key_uuid: agent %s has no API key %s (deleted meanwhile?); nothing was changed", r.AgentUUID, keyUUID)
			}
			if err != nil {
				return fmt.Errorf("regenerating the adopted agent API key: %w", err)
			}
			return nil
		},
		commit: func(ctx context.Context) error {
			r.Secret, r.Version = fresh.Secret, 1
			return putAgentStatic(ctx, s, r)
		},
	})
}

// refuseVaultOwnedAgentKey refuses to adopt a key that something in Vault
// already owns: its owner would go on regenerating it (a static role of
// another mount) or delete it (the end of a lease, tidy), and either kills
// the secret the adopting role serves. Three signs, any one enough:
//   - its name is one a Vault mount gives the keys it makes
//     (agentStaticKeyName, agentKeyName with any mark): that covers another
//     mount's keys, of which this mount has no record, and this mount's
//     leased keys under an earlier mark;
//   - a lease record of this mount holds its uuid (a leased key renamed on
//     the platform since);
//   - an agent-creds/ create of this mount whose write-ahead log entry
//     remains gave it its name (the create's lease record may be written
//     any moment, or its undo delete the key).
func refuseVaultOwnedAgentKey(ctx context.Context, s logical.Storage, k platform.AgentKey) error {
	const why = "made by a Vault mount for its own role or lease; adopting it would let two owners regenerate or delete it"
	if strings.HasPrefix(k.Name, agentStaticPlatformPrefix) || isAnyMountAgentKey(k.Name) {
		return callerErrorf("api_key_uuid: key %s (%q) was %s; nothing was changed. Write the role without api_key_uuid for a key of its own", k.UUID, k.Name, why)
	}
	lease, err := agentLeaseOfKey(ctx, s, k.UUID)
	if err != nil {
		return err
	}
	if lease != nil {
		return callerErrorf("api_key_uuid: key %s is held by a lease of agent-creds/%s, which deletes it when the lease ends: it was %s; nothing was changed. Write the role without api_key_uuid for a key of its own", k.UUID, lease.Role, why)
	}
	creates, err := agentKeyCreatesInFlight(ctx, s)
	if err != nil {
		return err
	}
	for _, w := range creates {
		if w.Name == k.Name {
			return callerErrorf("api_key_uuid: key %s is the key of an agent-creds/%s issue still in flight: it was %s; nothing was changed. Write the role without api_key_uuid for a key of its own", k.UUID, w.Role, why)
		}
	}
	return nil
}

// agentStaticRegenerateWAL: the key of role Name was being regenerated
// while storage held Version. Version moves up when an undo stored a repair,
// so that the periodic rollback knows which stored secret it must not trust.
type agentStaticRegenerateWAL struct {
	walHeader
	Name      string `json:"name"`
	AgentUUID string `json:"agent_uuid"`
	KeyUUID   string `json:"api_key_uuid"`
	Version   int    `json:"version"`
	// Repaired says an undo stored a fresh secret as Version: the entry is
	// kept only for a lost regenerate that lands late, which the periodic
	// rollback looks for, not for a secret already known dead.
	Repaired bool `json:"repaired,omitempty"`

	record func(ctx context.Context) error
}

func (w *agentStaticRegenerateWAL) kind() string { return walKindAgentStaticRegenerate }
func (w *agentStaticRegenerateWAL) lockScope() ([]string, string) {
	return []string{agentStaticLock(w.Name)}, ""
}
func (w *agentStaticRegenerateWAL) undone() string {
	return w.said("the key was regenerated again and Vault stored the new secret")
}
func (w *agentStaticRegenerateWAL) describe() []any {
	return []any{"role", w.Name, "agent_uuid", w.AgentUUID, "api_key_uuid", w.KeyUUID, "version", w.Version}
}
func (w *agentStaticRegenerateWAL) recordWith(record func(ctx context.Context) error) {
	w.record = record
}

// undo repairs a regenerate whose outcome is unknown. A regenerate cannot be
// taken back, and after a lost answer the secret storage holds may already
// be dead; but the key's uuid is known and every regenerate yields a fresh
// valid secret, so the repair is one more regenerate, stored as the next
// version. Nothing is done when storage already holds a later version (the
// change, or a later rotation, completed) or the role no longer holds the
// key.
//
// A lost regenerate can still land after its repair and kill the repaired
// secret. So the entry stays (makeChange keeps it after an ambiguous
// failure) with the repaired version recorded, and Vault's periodic
// rollback, which comes only once the entry is older than any request can
// run, regenerates once more if storage still holds that version.
func (w *agentStaticRegenerateWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := getAgentStatic(ctx, s, w.Name)
	switch {
	case err != nil:
		return err
	case stored == nil || !strings.EqualFold(stored.KeyUUID, w.KeyUUID):
		w.outcome = "the role no longer holds the key, so there was nothing to repair"
		return nil
	case stored.Version > w.Version:
		w.outcome = "storage already holds a later secret, so there was nothing to repair"
		return nil
	}
	ak, err := b.agentKeysOf(ctx, s)
	if err != nil {
		return fmt.Errorf("repairing the regenerate of static role %q: %w", w.Name, err)
	}
	fresh, err := ak.RegenerateAgentKey(ctx, w.AgentUUID, w.KeyUUID)
	if errors.Is(err, platform.ErrNotFound) {
		w.outcome = "the key is gone from the platform, so there was nothing to repair"
		return nil
	}
	if err != nil {
		return fmt.Errorf("repairing the regenerate of static role %q: regenerating again: %w", w.Name, err)
	}
	stored.Secret = fresh.Secret
	stored.Version++
	stored.recordStaticRotation(b.rotation.now())
	if err := putAgentStatic(ctx, s, stored); err != nil {
		// The fresh secret is lost with this write; the entry stays and
		// the next pass regenerates again.
		return fmt.Errorf("repairing the regenerate of static role %q: %w", w.Name, err)
	}
	b.rotation.trackAgentStatic(stored)
	b.Logger().Warn("regenerated a static role's key again after a regenerate whose outcome was unknown", "role", w.Name, "api_key_uuid", w.KeyUUID, "version", stored.Version)
	w.Version, w.Repaired = stored.Version, true
	if w.record != nil {
		if err := w.record(ctx); err != nil {
			b.Logger().Warn("could not record the repaired version in the write-ahead log; the periodic rollback will not regenerate once more", "role", w.Name, "error", err)
		}
	}
	return nil
}

// regenerateAgentStatic gives the role's key a new secret under the same
// uuid and stores it as the next version, with what the caller set on r (a
// copy: rotation bookkeeping). It returns what storage holds afterwards:
// after a lost answer that the undo repaired, that is the repaired entry,
// and the rotation counts as done.
func (b *gradientBackend) regenerateAgentStatic(ctx context.Context, s logical.Storage, r *agentStaticEntry) (*agentStaticEntry, error) {
	ak, err := b.agentKeysOf(ctx, s)
	if err != nil {
		return nil, err
	}
	w := &agentStaticRegenerateWAL{
		walHeader: walHeader{Created: b.now().UTC()},
		Name:      r.Name, AgentUUID: r.AgentUUID, KeyUUID: r.KeyUUID, Version: r.Version,
	}
	before, old := r.Version, r.Secret
	var fresh platform.AgentKey
	err = b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			var err error
			fresh, err = ak.RegenerateAgentKey(ctx, r.AgentUUID, r.KeyUUID)
			if errors.Is(err, platform.ErrNotFound) {
				return callerErrorf("agent API key %s of static role %q is gone from the platform (deleted outside Vault, or its agent was): delete the role and write it again", r.KeyUUID, r.Name)
			}
			if err != nil {
				return fmt.Errorf("regenerating the agent API key: %w", err)
			}
			return nil
		},
		commit: func(ctx context.Context) error {
			r.Secret = fresh.Secret
			r.Version++
			return putAgentStatic(ctx, s, r)
		},
	})
	if err == nil {
		return r, nil
	}
	// No secret of the role, the one it held or the one just made, may
	// reach a log, an answer or rotation_error through upstream text.
	err = redactError(err, old, fresh.Secret)
	// The undo may have repaired a lost answer with a regenerate of its
	// own, stored as a later version: then the rotation happened.
	if stored, getErr := getAgentStatic(ctx, s, r.Name); getErr == nil && stored != nil &&
		strings.EqualFold(stored.KeyUUID, r.KeyUUID) && stored.Version > before {
		b.Logger().Warn("a regenerate's answer was lost; the key was regenerated again and the new secret stored", "role", r.Name, "version", stored.Version, "error", redactError(err, stored.Secret))
		return stored, nil
	}
	return nil, err
}

// redactedError is an error whose text leaves out secrets; errors.Is and
// errors.As still see what it wraps (a caller error stays a 400).
type redactedError struct {
	text string
	err  error
}

func (e *redactedError) Error() string { return e.text }
func (e *redactedError) Unwrap() error { return e.err }

// redactError takes the given secrets out of err's text; err itself when
// its text holds none.
func redactError(err error, secrets ...string) error {
	text := err.Error()
	for _, secret := range secrets {
		if secret != "" {
			text = strings.ReplaceAll(text, secret, "[redacted]")
		}
	}
	if text == err.Error() {
		return err
	}
	return &redactedError{text: text, err: err}
}

// agentStaticDeleteWAL: the key of role Name was being deleted. A delete
// cannot be undone; settling it finishes it: once the platform no longer
// has the key, the role goes too.
type agentStaticDeleteWAL struct {
	walHeader
	Name      string `json:"name"`
	AgentUUID string `json:"agent_uuid"`
	KeyUUID   string `json:"api_key_uuid"`
}

func (w *agentStaticDeleteWAL) kind() string { return walKindAgentStaticDelete }
func (w *agentStaticDeleteWAL) lockScope() ([]string, string) {
	return []string{agentStaticLock(w.Name)}, ""
}
func (w *agentStaticDeleteWAL) undone() string {
	return w.said("the delete was sent again and finished: the key and the role are gone")
}
func (w *agentStaticDeleteWAL) describe() []any {
	return []any{"role", w.Name, "agent_uuid", w.AgentUUID, "api_key_uuid", w.KeyUUID}
}

// undo finishes the delete while the role still holds the key: the key is
// deleted again (gone counts as deleted), then the role.
func (w *agentStaticDeleteWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	stored, err := getAgentStatic(ctx, s, w.Name)
	if err != nil {
		return err
	}
	if stored == nil || !strings.EqualFold(stored.KeyUUID, w.KeyUUID) {
		w.outcome = "the role is gone, so the delete was already finished"
		return nil
	}
	ak, err := b.agentKeysOf(ctx, s)
	if err != nil {
		return fmt.Errorf("finishing the delete of static role %q: %w", w.Name, err)
	}
	if err := ak.DeleteAgentKey(ctx, w.AgentUUID, w.KeyUUID); err != nil && !errors.Is(err, platform.ErrNotFound) {
		return fmt.Errorf("finishing the delete of static role %q: %w", w.Name, err)
	}
	if err := deleteAgentStatic(ctx, s, w.Name); err != nil {
		return err
	}
	b.rotation.unschedule(agentStaticLock(w.Name))
	return nil
}

// deleteAgentStaticEverywhere deletes the key on the platform, then the
// role. A key already gone (deleted outside Vault, or with its agent) counts
// as deleted. A refusal leaves both as they were.
func (b *gradientBackend) deleteAgentStaticEverywhere(ctx context.Context, s logical.Storage, r *agentStaticEntry) error {
	ak, err := b.agentKeysOf(ctx, s)
	if err != nil {
		return err
	}
	w := &agentStaticDeleteWAL{
		walHeader: walHeader{Created: b.now().UTC()},
		Name:      r.Name, AgentUUID: r.AgentUUID, KeyUUID: r.KeyUUID,
	}
	return b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			err := ak.DeleteAgentKey(ctx, r.AgentUUID, r.KeyUUID)
			if err == nil || errors.Is(err, platform.ErrNotFound) {
				return nil
			}
			if refused(err) {
				return fmt.Errorf("agent API key %s was not deleted, so Vault keeps the role: %w", r.KeyUUID, err)
			}
			return fmt.Errorf("deleting agent API key %s: %w", r.KeyUUID, err)
		},
		commit: func(ctx context.Context) error { return deleteAgentStatic(ctx, s, r.Name) },
	})
}
