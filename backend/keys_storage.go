package backend

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// keyStoragePrefix holds one entry per managed key, seal-wrapped.
const keyStoragePrefix = "keys/"

// keyEntry is a managed key as stored in Vault.
type keyEntry struct {
	Name        string    `json:"name"`
	Provider    string    `json:"provider"`
	UUID        string    `json:"uuid"`
	Description string    `json:"description"`
	APIKey      string    `json:"api_key"`
	Version     int       `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`

	// Rotation settings and state (rotation_settings.go, rotation.go). The
	// times the scheduler acts on are stored, so a restart, a reload or a
	// failover rebuilds the same plan. Times are UTC.
	RotationPeriod           time.Duration `json:"rotation_period,omitempty"`
	RotationSchedule         string        `json:"rotation_schedule,omitempty"`
	RotationWindow           time.Duration `json:"rotation_window,omitempty"`
	DisableAutomatedRotation bool          `json:"disable_automated_rotation,omitempty"`
	RotationSetAt            time.Time     `json:"rotation_set_at,omitzero"`
	LastVaultRotation        time.Time     `json:"last_vault_rotation,omitzero"`
	NextVaultRotation        time.Time     `json:"next_vault_rotation,omitzero"`
	PreviousKeyHint          string        `json:"previous_key_hint,omitempty"`
	// NextAPIKey is the staged successor: a secret, sealed like APIKey and
	// never returned.
	NextAPIKey       string    `json:"next_api_key,omitempty"`
	NextKeyStagedAt  time.Time `json:"next_key_staged_at,omitzero"`
	RotationAttempts int       `json:"rotation_attempts,omitempty"`
	RetryAt          time.Time `json:"retry_at,omitzero"`
	RotationError    string    `json:"rotation_error,omitempty"`
	OverdueWarnedAt  time.Time `json:"overdue_warned_at,omitzero"`
}

func getKey(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	entry, err := s.Get(ctx, keyStoragePrefix+name)
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", name, err)
	}
	if entry == nil {
		return nil, nil
	}
	k := &keyEntry{}
	if err := entry.DecodeJSON(k); err != nil {
		return nil, fmt.Errorf("decoding key %q: %w", name, err)
	}
	return k, nil
}

func putKey(ctx context.Context, s logical.Storage, k *keyEntry) error {
	entry, err := logical.StorageEntryJSON(keyStoragePrefix+k.Name, k)
	if err != nil {
		return err
	}
	if err := s.Put(ctx, entry); err != nil {
		return fmt.Errorf("storing key %q: %w", k.Name, err)
	}
	return nil
}

func deleteKey(ctx context.Context, s logical.Storage, name string) error {
	if err := s.Delete(ctx, keyStoragePrefix+name); err != nil {
		return fmt.Errorf("deleting key %q: %w", name, err)
	}
	return nil
}

// findKeyByUUID returns the name under which this mount manages the platform
// key uuid, or "". It reads every entry: adoption is rare, and an index would
// be one more thing a failed write could leave inconsistent.
func findKeyByUUID(ctx context.Context, s logical.Storage, uuid string) (string, error) {
	names, err := s.List(ctx, keyStoragePrefix)
	if err != nil {
		return "", fmt.Errorf("listing keys: %w", err)
	}
	for _, name := range names {
		k, err := getKey(ctx, s, name)
		if err != nil {
			return "", err
		}
		if k != nil && k.UUID == uuid {
			return name, nil
		}
	}
	return "", nil
}

// keyHandler handles a request on an existing key.
type keyHandler func(ctx context.Context, req *logical.Request, d *framework.FieldData, k *keyEntry) (*logical.Response, error)

// withKey starts every handler that acts on one existing key the same way:
// a bad name is a 400 quoting the rule, a missing key is Vault's 404 (no
// response), and handlers that change the key hold its lock throughout.
func (b *gradientBackend) withKey(lock bool, h keyHandler) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		name := d.Get("name").(string)
		if err := validateName(name); err != nil {
			return errorResponse(err)
		}
		if lock {
			defer b.lockNames(name)()
		}
		k, err := getKey(ctx, req.Storage, name)
		if err != nil || k == nil {
			return nil, err
		}
		return h(ctx, req, d, k)
	}
}

// lockNames takes the per-name locks for every name, in the stable order
// locksutil gives, and returns the function that releases them.
func (b *gradientBackend) lockNames(names ...string) func() {
	locks := locksutil.LocksForKeys(b.nameLocks, names)
	for _, l := range locks {
		l.Lock()
	}
	return func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
	}
}
