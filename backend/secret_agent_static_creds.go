package backend

import (
	"context"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// secretTypeAgentStaticKey is the lease type of agent-static-creds/<name>
// reads.
const secretTypeAgentStaticKey = "gradient_agent_static_key"

// The lease of a static role's secret works as creds/<name>'s does
// (secret_creds.go): it never outlives the next rotation, it renews while
// the role still holds the same key at the same version, and after a
// rotation its renewal is refused with a message telling the holder to read
// again, which is what makes Vault Agent fetch the new secret at once.
func secretAgentStaticCreds(b *gradientBackend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeAgentStaticKey,
		Fields: map[string]*framework.FieldSchema{
			"api_key":      {Type: framework.TypeString, Description: "The agent API key's secret."},
			"api_key_uuid": {Type: framework.TypeString, Description: "UUID of the agent API key."},
			"agent_uuid":   {Type: framework.TypeString, Description: "The agent."},
			"version":      {Type: framework.TypeInt, Description: "Version of the secret."},
		},
		DefaultDuration: defaultCredsTTL,
		Renew:           answerErrors(b.agentStaticCredsRenew),
		Revoke:          b.agentStaticCredsRevoke,
	}
}

// leasedAgentStaticCreds answers a read: the secret, what a consumer needs
// to follow rotation, and a lease bound to the key's uuid and version.
func (b *gradientBackend) leasedAgentStaticCreds(ctx context.Context, req *logical.Request, r *agentStaticEntry) (*logical.Response, error) {
	v := r.rotationView()
	ttl, err := b.credsLeaseTTL(ctx, req.Storage, v)
	if err != nil {
		return nil, err
	}
	_, rotationTTL := v.rotationState(b.rotation.now())
	last := r.LastVaultRotation
	if last.IsZero() {
		last = r.CreatedAt
	}
	data := map[string]any{
		"api_key":             r.Secret,
		"api_key_uuid":        r.KeyUUID,
		"agent_uuid":          r.AgentUUID,
		"agent_url":           r.AgentURL,
		"version":             r.Version,
		"last_vault_rotation": last.UTC().Format(time.RFC3339),
		"ttl":                 rotationTTL,
	}
	if v.rotationEnabled() && !r.NextVaultRotation.IsZero() {
		data["next_vault_rotation"] = r.NextVaultRotation.UTC().Format(time.RFC3339)
	}
	resp := b.Secret(secretTypeAgentStaticKey).Response(data, map[string]any{
		"role":    r.Name,
		"version": r.Version,
		// A role deleted and written again under the same name starts
		// again at version 1 with another key: the uuid tells them apart.
		"api_key_uuid": r.KeyUUID,
	})
	resp.Secret.TTL = ttl
	return resp, nil
}

// agentStaticCredsRenew extends a lease while the role still holds the key
// the lease was issued for, at the same version.
func (b *gradientBackend) agentStaticCredsRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	if req.Secret == nil {
		return nil, callerErrorf("the lease carries no secret data")
	}
	name, _ := req.Secret.InternalData["role"].(string)
	keyUUID, _ := req.Secret.InternalData["api_key_uuid"].(string)
	// leaseKey reads the version the way Vault hands it back (a JSON
	// number); it wants the name under "name".
	_, version, err := leaseKey(&logical.Secret{InternalData: map[string]any{"name": name, "version": req.Secret.InternalData["version"]}})
	if err != nil {
		return nil, err
	}
	r, err := getAgentStatic(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, callerErrorf("static role %q no longer exists; this lease cannot be renewed", name)
	}
	if !strings.EqualFold(r.KeyUUID, keyUUID) {
		return nil, callerErrorf("static role %q no longer holds the agent API key this lease was issued for (it was deleted and written again): read %sagent-static-creds/%s again for the current key", name, req.MountPoint, name)
	}
	if r.Version != version {
		return nil, callerErrorf("static role %q was rotated (this lease holds version %d, the current version is %d) and the secret of this lease no longer works: read %sagent-static-creds/%s again for the current key",
			name, version, r.Version, req.MountPoint, name)
	}
	ttl, err := b.credsLeaseTTL(ctx, req.Storage, r.rotationView())
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Secret: req.Secret}
	resp.Secret.TTL = ttl
	return resp, nil
}

// agentStaticCredsRevoke ends a lease. The key is the role's, shared by
// every holder: revoking one holder's lease changes nothing on the platform.
func (b *gradientBackend) agentStaticCredsRevoke(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	return nil, nil
}
