package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// secretTypeAgentKey is the lease type of agent-creds/<name> reads: one
// agent API key per lease, deleted on the platform when the lease ends.
const secretTypeAgentKey = "gradient_agent_api_key"

func secretAgentCreds(b *gradientBackend) *framework.Secret {
	return &framework.Secret{
		Type: secretTypeAgentKey,
		Fields: map[string]*framework.FieldSchema{
			"api_key":      {Type: framework.TypeString, Description: "The agent API key.", DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
			"api_key_uuid": {Type: framework.TypeString, Description: "UUID of the key on the platform."},
			"agent_uuid":   {Type: framework.TypeString, Description: "UUID of the agent."},
			"agent_url":    {Type: framework.TypeString, Description: "The agent's endpoint."},
		},
		DefaultDuration: defaultAgentRoleTTL,
		Renew:           answerErrors(b.agentCredsRenew),
		Revoke:          b.agentCredsRevoke,
	}
}

// agentCredsResponse is the one answer that carries an agent key's secret.
// The lease's internal data is everything its revocation needs, so it works
// after the role is deleted; the issue time caps renewal at max_ttl.
func (b *gradientBackend) agentCredsResponse(r *agentRole, key platform.AgentKey, l *agentLease) *logical.Response {
	resp := b.Secret(secretTypeAgentKey).Response(map[string]any{
		"api_key":      key.Secret,
		"api_key_uuid": l.KeyUUID,
		"agent_uuid":   l.AgentUUID,
		"agent_url":    r.AgentURL,
	}, map[string]any{
		"role":       l.Role,
		"agent_uuid": l.AgentUUID,
		"key_uuid":   l.KeyUUID,
		"key_name":   l.Name,
		"issued_at":  l.IssuedAt.Format(time.RFC3339),
		// The max_ttl at the issue bounds every renewal, whatever the
		// role says later: the lease record's ExpiresBy, which tidy
		// trusts, stays true.
		"max_ttl_seconds": int64(r.MaxTTL.Seconds()),
	})
	resp.Secret.TTL = r.TTL
	resp.Secret.MaxTTL = r.MaxTTL
	return resp
}

// leaseOf reads what a lease was issued for.
func leaseOf(secret *logical.Secret) (*agentLease, error) {
	if secret == nil {
		return nil, fmt.Errorf("the lease carries no secret data")
	}
	str := func(k string) string { s, _ := secret.InternalData[k].(string); return s }
	l := &agentLease{Role: str("role"), AgentUUID: str("agent_uuid"), KeyUUID: strings.ToLower(str("key_uuid")), Name: str("key_name")}
	if !platform.IsUUID(l.AgentUUID) || !platform.IsUUID(l.KeyUUID) || validateName(l.Role) != nil {
		return nil, fmt.Errorf("the lease does not name an agent API key")
	}
	l.IssuedAt, _ = time.Parse(time.RFC3339, str("issued_at"))
	switch v := secret.InternalData["max_ttl_seconds"].(type) {
	case int64:
		l.maxTTL = time.Duration(v) * time.Second
	case float64: // after Vault's JSON round trip
		l.maxTTL = time.Duration(v) * time.Second
	case json.Number:
		n, _ := v.Int64()
		l.maxTTL = time.Duration(n) * time.Second
	}
	if !secret.IssueTime.IsZero() {
		l.IssuedAt = secret.IssueTime
	}
	return l, nil
}

// agentCredsRenew extends a lease by the role's ttl, never past max_ttl
// from the issue (the smaller of the role's now and at the issue) nor the
// mount's max lease TTL (framework.CalculateTTL).
// A lease whose role was deleted is not renewed; it stays revocable.
func (b *gradientBackend) agentCredsRenew(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	l, err := leaseOf(req.Secret)
	if err != nil {
		return nil, err
	}
	r, err := getAgentRole(ctx, req.Storage, l.Role)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, callerErrorf("agent role %q was deleted: this lease cannot be renewed (it stays revocable, and its key is deleted when it expires)", l.Role)
	}
	// CalculateTTL's only errors say that the lease is past its max
	// (max_ttl, or the mount's max lease TTL): the holder's to act on.
	ttl, warnings, err := framework.CalculateTTL(b.System(), req.Secret.Increment, r.TTL, 0, r.MaxTTL, l.maxTTL, l.IssuedAt)
	if err != nil || ttl <= 0 {
		return nil, callerErrorf("this lease has reached its max_ttl (%s from its issue) or the mount's max lease TTL: read %sagent-creds/%s again for a new key", r.MaxTTL, req.MountPoint, l.Role)
	}
	if err := b.recordLeaseEnd(ctx, req.Storage, l, ttl); err != nil {
		return nil, err
	}
	resp := &logical.Response{Secret: req.Secret, Warnings: warnings}
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = r.MaxTTL
	return resp, nil
}

// recordLeaseEnd moves the lease record's LeaseEnds to the end of the
// renewal granting ttl now: one storage write per renewal, which keeps tidy
// from ending a lease that is renewed (agentLease.outlived). It never moves
// LeaseEnds earlier (a later record only makes tidy wait longer), so two
// renewals answered out of order cannot leave it short of Vault's expiry.
// A failed write fails the renewal: Vault then keeps the lease's previous
// end, which the record still holds. A lease without a record is refused:
// no record holds its key, so the key is gone or the next tidy deletes it.
func (b *gradientBackend) recordLeaseEnd(ctx context.Context, s logical.Storage, issued *agentLease, ttl time.Duration) error {
	defer b.lockUUID(issued.KeyUUID)()
	l, err := getAgentLease(ctx, s, issued.Role, issued.KeyUUID)
	if err != nil {
		return err
	}
	if l == nil {
		return callerErrorf("agent API key %s has no lease record on this mount any more (its lease was revoked, or tidy ended it): this lease cannot be renewed; read agent-creds/%s again for a new key", issued.KeyUUID, issued.Role)
	}
	end := l.leaseEndsAt(b.now().UTC(), ttl)
	if !end.After(l.LeaseEnds) {
		return nil
	}
	l.LeaseEnds = end
	return putAgentLease(ctx, s, l)
}

// agentCredsRevoke deletes the lease's key on the platform (change_agent_key.go).
// An error makes Vault's expiration manager retry; it names the key's uuid,
// never its secret.
func (b *gradientBackend) agentCredsRevoke(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	l, err := leaseOf(req.Secret)
	if err != nil {
		return nil, err
	}
	return nil, b.revokeAgentKey(ctx, req.Storage, l)
}
