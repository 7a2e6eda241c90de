package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTypeAPIKey is the lease type of creds/<name> reads.
const secretTypeAPIKey = "gradient_api_key"

// defaultCredsTTL bounds a creds lease when config sets no creds_ttl.
const defaultCredsTTL = time.Hour

// dueLeaseTTL is the lease of a key whose rotation is due or overdue: it may
// rotate at any tick, so holders come back soon.
const dueLeaseTTL = time.Minute

// minLeaseTTL is the shortest lease handed out.
const minLeaseTTL = time.Second

// Every creds/<name> read is leased. The lease is renewable until the key
// rotates, and never past the next rotation; after a rotation renewal fails
// with a message telling the holder to read again. That failure is what
// makes Vault Agent (consul-template) fetch the new key at once: it renews a
// renewable lease and never re-reads otherwise.
func secretCreds(b *gradientBackend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeAPIKey,
		Fields: map[string]*framework.FieldSchema{
			"api_key":  {Type: framework.TypeString, Description: "The provider API key."},
			"provider": {Type: framework.TypeString, Description: "anthropic or openai."},
			"uuid":     {Type: framework.TypeString, Description: "UUID of the key on the platform."},
			"version":  {Type: framework.TypeInt, Description: "Version of the secret."},
		},
		DefaultDuration: defaultCredsTTL,
		Renew:           answerErrors(b.credsRenew),
		Revoke:          b.credsRevoke,
	}
}

// leasedCreds answers a creds read: the key, what a static-credential
// consumer needs to follow rotation, and a lease bound to the platform key
// (its uuid) and the version.
func (b *gradientBackend) leasedCreds(ctx context.Context, req *logical.Request, k *keyEntry) (*logical.Response, error) {
	ttl, err := b.credsLeaseTTL(ctx, req.Storage, k)
	if err != nil {
		return nil, err
	}
	_, rotationTTL := k.rotationState(b.rotation.now())
	data := map[string]any{
		"api_key":  k.APIKey,
		"provider": k.Provider,
		"uuid":     k.UUID,
		"version":  k.Version,
		"ttl":      rotationTTL,
	}
	last := k.LastVaultRotation
	if last.IsZero() {
		last = k.CreatedAt
	}
	data["last_vault_rotation"] = last.UTC().Format(time.RFC3339)
	switch {
	case k.RotationPeriod != 0:
		data["rotation_period"] = int64(k.RotationPeriod.Seconds())
	case k.RotationSchedule != "":
		data["rotation_schedule"] = k.RotationSchedule
		data["rotation_window"] = int64(k.RotationWindow.Seconds())
	}
	resp := b.Secret(secretTypeAPIKey).Response(data, map[string]any{
		"name":    k.Name,
		"version": k.Version,
		// The name and version alone do not tell one key from another
		// made under the same name: delete and create again (the usual
		// answer to a leak) starts again at version 1.
		"uuid": k.UUID,
	})
	resp.Secret.TTL = ttl
	return resp, nil
}

// credsLeaseTTL runs to the earlier of the next rotation and config's
// creds_ttl. Vault itself caps every lease at the mount's max lease TTL
// (framework.CalculateTTL when it registers or renews the lease).
//
// Every request to an external plugin crosses a gRPC hop, and every storage
// or system-view call from the plugin crosses it again the other way: on
// the hot path of a read, creds_ttl comes from the config the cached
// clients were built from (dropped by invalidate when config changes), not
// from storage, and the max lease TTL is left to Vault.
func (b *gradientBackend) credsLeaseTTL(ctx context.Context, s logical.Storage, k *keyEntry) (time.Duration, error) {
	ttl := defaultCredsTTL
	c, err := b.clients(ctx, s)
	switch {
	case errors.Is(err, errNotConfigured):
	case err != nil:
		return 0, err
	case c.config.CredsTTL > 0:
		ttl = c.config.CredsTTL
	}
	if k.rotationEnabled() && !k.NextVaultRotation.IsZero() {
		untilNext := k.NextVaultRotation.Sub(b.now())
		if untilNext <= 0 {
			untilNext = dueLeaseTTL
		}
		ttl = min(ttl, untilNext)
	}
	// Vault reads a zero TTL as "the mount's default", which would outlive
	// the rotation by far: a rotation less than a second away gets a second.
	return max(ttl, minLeaseTTL), nil
}

// credsRenew extends a lease while the name still holds the platform key
// the lease was issued for, at the same version.
func (b *gradientBackend) credsRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	name, version, err := leaseKey(req.Secret)
	if err != nil {
		return nil, err
	}
	k, err := getKey(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if k == nil {
		return nil, callerErrorf("key %q no longer exists; this lease cannot be renewed", name)
	}
	// Checked before the version: a key made again under the name starts
	// at version 1 and would pass for the deleted one.
	if !leaseHoldsKey(req.Secret, k) {
		return nil, callerErrorf("key %q is no longer the platform key this lease was issued for (it was deleted and made again, or re-created by a drift repair): read %screds/%s again for the current key",
			name, req.MountPoint, name)
	}
	if k.Version != version {
		return nil, callerErrorf("key %q was rotated (this lease holds version %d, the current version is %d): read %screds/%s again for the current key",
			name, version, k.Version, req.MountPoint, name)
	}
	ttl, err := b.credsLeaseTTL(ctx, req.Storage, k)
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = ttl
	return resp, nil
}

// credsRevoke ends a lease. The key is shared by every holder and by the
// platform's agents: revoking one holder's lease changes nothing anywhere.
func (b *gradientBackend) credsRevoke(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return nil, nil
}

// leaseHoldsKey reports whether the lease was issued for the platform key k
// holds now. A lease issued before leases carried the uuid is checked by
// time instead: it cannot hold the current key if that key was created on
// the platform, or its current version taken in by Vault, after the lease
// was issued. The platform's time alone misses an adopted key, made before
// the lease (in the control panel) and taken in at version 1 after the
// leaked one was deleted. (The clocks differ a little; a key made again
// within that difference of an old lease's issue is not caught, and a wrong
// refusal only makes the holder read again.)
func leaseHoldsKey(secret *logical.Secret, k *keyEntry) bool {
	if uuid, _ := secret.InternalData["uuid"].(string); uuid != "" {
		return uuid == k.UUID
	}
	return secret.IssueTime.IsZero() ||
		!k.CreatedAt.After(secret.IssueTime) && !k.LastVaultRotation.After(secret.IssueTime)
}

// leaseKey reads the name and version a lease was issued for. Vault stores
// internal data as JSON, so the version comes back as a JSON number.
func leaseKey(secret *logical.Secret) (string, int, error) {
	if secret == nil {
		return "", 0, fmt.Errorf("the lease carries no secret data")
	}
	name, _ := secret.InternalData["name"].(string)
	var version int
	switch v := secret.InternalData["version"].(type) {
	case int:
		version = v
	case float64:
		version = int(v)
	case json.Number:
		n, err := v.Int64()
		if err != nil {
			return "", 0, fmt.Errorf("the lease's version is not a number")
		}
		version = int(n)
	}
	if name == "" || version == 0 {
		return "", 0, fmt.Errorf("the lease does not name a key version")
	}
	return name, version, nil
}
