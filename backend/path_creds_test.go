package backend

import (
	"context"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestCreds_LeaseRenewRevoke(t *testing.T) {
	r := newRotationEnv(t, map[string]any{"creds_ttl": "30m"})
	k1, k2 := anthropicKey("lease1"), anthropicKey("lease2")
	r.createKey("leased", k1, nil)

	// Every read is leased, with or without rotation settings.
	creds := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if creds.Secret == nil || !creds.Secret.Renewable || creds.Secret.TTL != 30*time.Minute {
		t.Fatalf("lease = %+v", creds.Secret)
	}
	if creds.Data["ttl"] != int64(0) || creds.Data["last_vault_rotation"] != ts(t0) {
		t.Fatalf("data = %v", creds.Data)
	}

	// With a rotation sooner than creds_ttl, the lease ends at the rotation.
	r.mustOK(logical.UpdateOperation, "keys/leased", map[string]any{"rotation_period": "10m"})
	creds = r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if creds.Secret.TTL != 10*time.Minute || creds.Data["rotation_period"] != int64(600) || creds.Data["ttl"] != int64(600) {
		t.Fatalf("lease %v, data %v", creds.Secret.TTL, creds.Data)
	}
	if _, ok := creds.Data["rotation_schedule"]; ok {
		t.Fatal("a period key reports a schedule")
	}

	// Renewal before the rotation: granted, never past it.
	r.advance(4 * time.Minute)
	resp := r.lease(logical.RenewOperation, creds.Secret)
	if resp.IsError() || resp.Secret.TTL != 6*time.Minute {
		t.Fatalf("renew before rotation: %#v", resp)
	}

	// Revoke changes nothing anywhere.
	before := r.state()
	stored, _ := getKey(context.Background(), r.storage, "leased")
	if resp := r.lease(logical.RevokeOperation, creds.Secret); resp != nil && resp.IsError() {
		t.Fatalf("revoke: %v", resp.Error())
	}
	after, _ := getKey(context.Background(), r.storage, "leased")
	if !reflect.DeepEqual(after, stored) || r.state().AnthropicKeys[0].Secret != before.AnthropicKeys[0].Secret {
		t.Fatal("revoking a lease changed the key")
	}

	// After a rotation, renewal fails and says to read again.
	r.stage("leased", k2)
	r.tickAt(t0.Add(10 * time.Minute))
	resp = r.lease(logical.RenewOperation, creds.Secret)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew after rotation: %#v", resp)
	}
	if creds = r.mustOK(logical.ReadOperation, "creds/leased", nil); creds.Data["api_key"] != k2 || creds.Data["version"] != 2 {
		t.Fatalf("read again: %v", creds.Data["version"])
	}

	// A due key without a staged successor gets short leases.
	r.advanceTo(t0.Add(25 * time.Minute))
	if creds = r.mustOK(logical.ReadOperation, "creds/leased", nil); creds.Secret.TTL != dueLeaseTTL {
		t.Fatalf("lease of an overdue key = %v", creds.Secret.TTL)
	}

	// The lease's internal data survives Vault's JSON round trip.
	creds.Secret.InternalData["version"] = float64(2)
	if resp := r.lease(logical.RenewOperation, creds.Secret); resp.IsError() {
		t.Fatalf("renew with a JSON version: %v", resp.Error())
	}
}

// lease sends a renew or revoke through HandleRequest, as Vault's expiration
// manager does.
func (r *rotEnv) lease(op logical.Operation, secret *logical.Secret) *logical.Response {
	r.t.Helper()
	s := *secret
	resp, err := r.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: "creds/leased", Secret: &s, Storage: r.storage, MountPoint: "gradient/",
	})
	if err != nil {
		r.t.Fatalf("%s: %v", op, err)
	}
	return resp
}

func TestConfig_CredsTTL(t *testing.T) {
	e := newTestEnv(t, nil)
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["creds_ttl"]; got != int64(3600) {
		t.Fatalf("default creds_ttl = %v", got)
	}
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"creds_ttl": "15m"})
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["creds_ttl"]; got != int64(900) {
		t.Fatalf("creds_ttl = %v", got)
	}
	e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"creds_ttl": "0"}, "creds_ttl must be positive")
}

func TestCreds_RenewOfADeletedKeyFails(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("leased", anthropicKey("gone1"), nil)
	creds := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	if resp := r.lease(logical.RenewOperation, creds.Secret); !resp.IsError() || !strings.Contains(resp.Error().Error(), "no longer exists") {
		t.Fatalf("renew of a deleted key: %#v", resp)
	}
	if resp := r.lease(logical.RevokeOperation, creds.Secret); resp != nil && resp.IsError() {
		t.Fatalf("revoke of a deleted key: %v", resp.Error())
	}
}

// Deleting a key and making it again under the same name (the usual answer
// to a leak) starts again at version 1: a lease of the deleted key must not
// renew against the new one. Leases carry the platform key's uuid; a lease
// issued before they did is refused when the key was created after it.
func TestCreds_RenewAfterDeleteAndRecreateFails(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("leased", anthropicKey("leaked"), nil)
	old := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	r.createKey("leased", anthropicKey("fresh"), nil)
	fresh := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if old.Data["version"] != 1 || fresh.Data["version"] != 1 || old.Data["uuid"] == fresh.Data["uuid"] {
		t.Fatalf("setup: old %v, fresh %v", old.Data, fresh.Data)
	}

	resp := r.lease(logical.RenewOperation, old.Secret)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "no longer the platform key this lease was issued for") ||
		!strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of the deleted key's lease: %#v", resp)
	}
	if resp := r.lease(logical.RenewOperation, fresh.Secret); resp.IsError() {
		t.Fatalf("renew of the new key's lease: %v", resp.Error())
	}

	// Leases issued before leases carried the uuid: judged by the time the
	// current key was created on the platform.
	k, err := getKey(context.Background(), r.storage, "leased")
	if err != nil || k == nil {
		t.Fatalf("stored key: %v", err)
	}
	legacy := func(issued time.Time) *logical.Secret {
		s := *fresh.Secret
		s.InternalData = maps.Clone(s.InternalData)
		delete(s.InternalData, "uuid")
		s.IssueTime = issued
		return &s
	}
	if resp := r.lease(logical.RenewOperation, legacy(k.CreatedAt.Add(-time.Minute))); !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of an old lease issued before the key was made: %#v", resp)
	}
	if resp := r.lease(logical.RenewOperation, legacy(k.CreatedAt.Add(time.Minute))); resp.IsError() {
		t.Fatalf("renew of an old lease issued after the key was made: %v", resp.Error())
	}
}

// A lease issued before leases carried the uuid, of a key then deleted
// (leaked) and replaced under its name by adopting a platform key made
// earlier, e.g. in the control panel: the adopted key is at version 1 and
// was created on the platform before the lease was issued, so only the time
// Vault took it in tells it from the deleted one.
func TestCreds_OldLeaseDoesNotRenewAfterDeleteAndAdopt(t *testing.T) {
	r := newRotationEnv(t, nil)
	stranger := r.createOutside("made-in-console", anthropicKey("console"))
	r.createKey("leased", anthropicKey("leaked"), nil)
	leaked := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	k, err := getKey(context.Background(), r.storage, "leased")
	if err != nil || k == nil {
		t.Fatalf("stored key: %v", err)
	}
	old := *leaked.Secret
	old.InternalData = maps.Clone(old.InternalData)
	delete(old.InternalData, "uuid")
	old.IssueTime = k.CreatedAt
	if k.LastVaultRotation.After(old.IssueTime) {
		old.IssueTime = k.LastVaultRotation
	}
	old.IssueTime = old.IssueTime.Add(time.Second)
	if resp := r.lease(logical.RenewOperation, &old); resp.IsError() {
		t.Fatalf("renew of the old lease before the delete: %v", resp.Error())
	}

	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	r.advanceTo(old.IssueTime.Add(time.Minute))
	r.mustOK(logical.CreateOperation, "keys/leased", map[string]any{"provider": "anthropic", "uuid": stranger, "api_key": anthropicKey("fresh")})
	resp := r.lease(logical.RenewOperation, &old)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of the deleted key's old lease after the adoption: %#v", resp)
	}
}
