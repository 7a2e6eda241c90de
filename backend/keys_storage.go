package backend

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// keyStoragePrefix holds one entry per managed key, seal-wrapped.
const keyStoragePrefix = "keys/"

// rotationFields is what the scheduler keeps of anything it rotates: the
// settings and the times it acts on. Keys and static agent roles embed it,
// so both are stored with the same fields and rotated by the same code;
// encoding/json flattens it into the entry.
type rotationFields struct {
	RotationPeriod           time.Duration `json:"rotation_period,omitempty"`
	RotationSchedule         string        `json:"rotation_schedule,omitempty"`
	RotationWindow           time.Duration `json:"rotation_window,omitempty"`
	DisableAutomatedRotation bool          `json:"disable_automated_rotation,omitempty"`
	RotationSetAt            time.Time     `json:"rotation_set_at,omitzero"`
	LastVaultRotation        time.Time     `json:"last_vault_rotation,omitzero"`
	NextVaultRotation        time.Time     `json:"next_vault_rotation,omitzero"`
	RotationAttempts         int           `json:"rotation_attempts,omitempty"`
	RetryAt                  time.Time     `json:"retry_at,omitzero"`
	RotationError            string        `json:"rotation_error,omitempty"`
}

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
	rotationFields
	PreviousKeyHint string `json:"previous_key_hint,omitempty"`
	// NextAPIKey is the staged successor: a secret, sealed like APIKey and
	// never returned.
	NextAPIKey      string    `json:"next_api_key,omitempty"`
	NextKeyStagedAt time.Time `json:"next_key_staged_at,omitzero"`
	OverdueWarnedAt time.Time `json:"overdue_warned_at,omitzero"`

	// Zero-touch rotation (zero_touch.go, retire.go). ServiceAccountID is the
	// OpenAI service account that minted the current version (never its
	// key); Retiring holds the replaced keys waiting for their grace
	// period, stored with the rotation that replaced them.
	Source                  string         `json:"source,omitempty"`
	OpenAIProjectID         string         `json:"openai_project_id,omitempty"`
	ServiceAccountID        string         `json:"service_account_id,omitempty"`
	ServiceAccountProjectID string         `json:"service_account_project_id,omitempty"`
	GracePeriod             *time.Duration `json:"grace_period,omitempty"`
	RetirePrevious          bool           `json:"retire_previous,omitempty"`
	Retiring                []retirement   `json:"retiring,omitempty"`
	RetireStatus            string         `json:"retire_status,omitempty"`
	RetireError             string         `json:"retire_error,omitempty"`

	// Seen is what the last sync (or repair) saw of the key on the
	// platform (sync.go); nil until one has compared it.
	Seen *keySeen `json:"sync_seen,omitempty"`
}

func getKey(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	return getJSON[keyEntry](ctx, s, keyStoragePrefix+name, keyWhat(name))
}

// keyWhat names a key entry in errors.
func keyWhat(name string) string { return fmt.Sprintf("key %q", name) }

// getExistingKey is getKey for a key the caller named: a missing one is the
// caller's mistake.
func getExistingKey(ctx context.Context, s logical.Storage, name string) (*keyEntry, error) {
	k, err := getKey(ctx, s, name)
	if err == nil && k == nil {
		err = callerErrorf("there is no key named %q", name)
	}
	return k, err
}

func putKey(ctx context.Context, s logical.Storage, k *keyEntry) error {
	return putJSON(ctx, s, keyStoragePrefix+k.Name, keyWhat(k.Name), k)
}

func deleteKey(ctx context.Context, s logical.Storage, name string) error {
	if err := s.Delete(ctx, keyStoragePrefix+name); err != nil {
		return fmt.Errorf("deleting key %q: %w", name, err)
	}
	return nil
}

// forEachKey calls fn with every stored entry, in storage order, and stops
// at the first error. It is the one scan of the mount: adoption, rollback
// and retirement are rare, and an index would be one more thing that a
// failed write could leave inconsistent. It costs one List and one Get per
// entry (and one more List when an entry went during the scan).
func forEachKey(ctx context.Context, s logical.Storage, fn func(*keyEntry) error) error {
	names, err := s.List(ctx, keyStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	gone := false
	for _, name := range names {
		k, err := getKey(ctx, s, name)
		if err != nil {
			return err
		}
		if k == nil {
			gone = true // deleted since the List, or renamed
			continue
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	if gone {
		return renamedDuringScan(ctx, s, names)
	}
	return nil
}

// renamedDuringScan tells a rename from a delete after an entry went during
// a scan: a rename writes the new name before it deletes the old, so the new
// name is in a listing taken now, and the scan, which missed it, is
// incomplete.
func renamedDuringScan(ctx context.Context, s logical.Storage, scanned []string) error {
	now, err := s.List(ctx, keyStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	for _, name := range now {
		if !slices.Contains(scanned, name) {
			return fmt.Errorf("key %q was renamed or created while the mount's keys were read; reading them again later", name)
		}
	}
	return nil
}

// findKeysByUUID returns every entry that holds the platform key uuid:
// normally one, two only while a rename is between its two writes. Uuids
// compare case-insensitively.
func findKeysByUUID(ctx context.Context, s logical.Storage, uuid string) ([]*keyEntry, error) {
	var found []*keyEntry
	err := forEachKey(ctx, s, func(k *keyEntry) error {
		if strings.EqualFold(k.UUID, uuid) {
			found = append(found, k)
		}
		return nil
	})
	return found, err
}

// findKeyByUUID returns the entry that holds the platform key uuid, or nil.
func findKeyByUUID(ctx context.Context, s logical.Storage, uuid string) (*keyEntry, error) {
	found, err := findKeysByUUID(ctx, s, uuid)
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return found[0], nil
}
