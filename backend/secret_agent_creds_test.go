package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Renewal extends by ttl and never past max_ttl from the issue.
func TestAgentCreds_RenewCappedAtMaxTTL(t *testing.T) {
	e, _, _ := newAgentRoleEnv(t, map[string]any{"ttl": "1h", "max_ttl": "2h"})
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	secret := *resp.Secret

	cases := map[string]struct {
		issued      time.Duration // before now
		min, max    time.Duration
		refusedWith string
	}{
		"fresh: a full ttl":      {issued: time.Minute, min: time.Hour - time.Second, max: time.Hour},
		"near max_ttl: the rest": {issued: 110 * time.Minute, min: 9 * time.Minute, max: 10 * time.Minute},
		"past max_ttl: refused":  {issued: 3 * time.Hour, refusedWith: "reached its max_ttl"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := secret
			s.IssueTime = time.Now().Add(-tc.issued)
			r, err := e.agentLease(logical.RenewOperation, &s)
			if err != nil {
				t.Fatal(err)
			}
			if tc.refusedWith != "" {
				if r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), tc.refusedWith) {
					t.Fatalf("want a refusal, got %#v", r)
				}
				return
			}
			if r == nil || r.IsError() || r.Secret.TTL < tc.min || r.Secret.TTL > tc.max {
				t.Fatalf("renewed ttl %v, want %v..%v (%#v)", r.Secret.TTL, tc.min, tc.max, r)
			}
		})
	}

	// The issue time carried in the lease's internal data serves when Vault
	// hands none.
	s := secret
	s.IssueTime = time.Time{}
	s.InternalData = map[string]any{}
	for k, v := range secret.InternalData {
		s.InternalData[k] = v
	}
	s.InternalData["issued_at"] = time.Now().Add(-110 * time.Minute).UTC().Format(time.RFC3339)
	if r, err := e.agentLease(logical.RenewOperation, &s); err != nil || r.IsError() || r.Secret.TTL > 10*time.Minute {
		t.Fatalf("renew by internal issue time: %#v %v", r, err)
	}
}

// Raising the role's max_ttl later does not lengthen leases already
// issued: their lease records, which tidy trusts, stay true.
func TestAgentCreds_RenewKeepsTheMaxTTLOfTheIssue(t *testing.T) {
	e, _, _ := newAgentRoleEnv(t, map[string]any{"ttl": "1h", "max_ttl": "2h"})
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	e.mustOK(logical.UpdateOperation, "agent-roles/team-a-bot", map[string]any{"max_ttl": "48h"})
	s := *resp.Secret
	s.IssueTime = time.Now().Add(-110 * time.Minute)
	// As Vault stores it: JSON numbers come back as float64.
	s.InternalData = map[string]any{}
	for k, v := range resp.Secret.InternalData {
		s.InternalData[k] = v
	}
	s.InternalData["max_ttl_seconds"] = float64(7200)
	r, err := e.agentLease(logical.RenewOperation, &s)
	if err != nil || r.IsError() || r.Secret.TTL > 10*time.Minute {
		t.Fatalf("renewed past the max_ttl of the issue: %#v %v", r, err)
	}
}
