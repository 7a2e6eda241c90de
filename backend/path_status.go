package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// rateLimitNote says why rate_limit is absent.
const rateLimitNote = "no platform answer has been seen since this node started, so the platform's rate-limit budget is not known yet"

// status is the operations view: how many keys, what is coming up, what needs
// a person, and whether the scheduler is running on the node that answers.
func pathStatus(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "status$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "status"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     answered(b.handleStatusRead),
				Summary:      "Key counts, upcoming, overdue and failed rotations, scheduler and rate-limit state.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys_by_provider":       {Type: framework.TypeMap, Description: "Managed keys per provider.", Required: true},
					"keys_total":             {Type: framework.TypeInt, Description: "Managed keys.", Required: true},
					"rotation_enabled":       {Type: framework.TypeInt, Description: "Keys with a rotation period or schedule that is not paused.", Required: true},
					"rotating_next_24h":      {Type: framework.TypeInt, Description: "Keys whose next rotation is due within 24 hours (and not yet).", Required: true},
					"due":                    {Type: framework.TypeInt, Description: "Keys due now with a staged key: promoted at the next tick.", Required: true},
					"overdue":                {Type: framework.TypeInt, Description: "Keys due with no staged key.", Required: true},
					"failed":                 {Type: framework.TypeInt, Description: "Keys whose last rotation attempt failed.", Required: true},
					"scheduler_state":        {Type: framework.TypeString, Description: "running, standby (this node may not write; the active node rotates), not started, or stopped.", Required: true},
					"scheduler_last_run":     {Type: framework.TypeTime, Description: "When the scheduler last looked at the queue on this node; absent when never."},
					"scheduler_tick_seconds": {Type: framework.TypeInt, Description: "Seconds between two looks at the queue.", Required: true},
					"scheduler_queued":       {Type: framework.TypeInt, Description: "Keys in the scheduler's queue on this node.", Required: true},
					"rate_limit":             {Type: framework.TypeMap, Description: "The platform's rate-limit budget last seen; absent when not known."},
					"rate_limit_note":        {Type: framework.TypeString, Description: "Why rate_limit is absent, when it is."},
					"retirements_pending":    {Type: framework.TypeInt, Description: "Replaced keys waiting to be retired at their provider (grace period or retry).", Required: true},
					"retirements_retrying":   {Type: framework.TypeInt, Description: "Keys whose last retirement attempt failed and is retried with backoff (see retire_error).", Required: true},
					"retirements_attention":  {Type: framework.TypeInt, Description: "Keys with a replaced key that was not retired because it could not be singled out safely (see retire_error).", Required: true},
					"agent_roles":            {Type: framework.TypeInt, Description: "Agent roles (agent-roles/).", Required: true},
					"agent_leased_keys":      {Type: framework.TypeInt, Description: "Agent API keys alive under a lease of agent-creds/ (of every role, deleted ones included).", Required: true},
					"agent_static_keys":      {Type: framework.TypeInt, Description: "Agent API keys managed by static roles (agent-static-roles/).", Required: true},
					"sync_interval_seconds":  syncStatusFields["sync_interval_seconds"],
					"sync_last_run":          syncStatusFields["sync_last_run"],
					"sync_counts":            syncStatusFields["sync_counts"],
					"sync_last_error":        syncStatusFields["sync_last_error"],
				}}}},
				// The scheduler runs on the active node of the primary: ask it.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    statusHelpSynopsis,
		HelpDescription: statusHelpDescription,
	}
}

func (b *gradientBackend) handleStatusRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, keyStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	now := b.rotation.now()
	byProvider := map[string]any{platform.Anthropic: 0, platform.OpenAI: 0}
	var enabled, next24h, due, overdue, failed int
	var retiring retirementCounts
	for _, name := range names {
		k, err := getKey(ctx, req.Storage, name)
		if err != nil {
			return nil, err
		}
		if k == nil {
			continue
		}
		retiring.add(k)
		if n, ok := byProvider[k.Provider].(int); ok {
			byProvider[k.Provider] = n + 1
		}
		if k.rotationEnabled() {
			enabled++
			if k.NextVaultRotation.After(now) && !k.NextVaultRotation.After(now.Add(24*time.Hour)) {
				next24h++
			}
		}
		switch status, _ := k.rotationState(now); status {
		case rotationDue:
			due++
		case rotationOverdue:
			overdue++
		case rotationFailed:
			failed++
		}
	}

	agentRoles, agentLeased, err := countAgentRolesAndLeases(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	staticRoles, err := req.Storage.List(ctx, agentStaticStoragePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing static roles: %w", err)
	}

	state, lastRun, queued := b.rotation.status()
	data := map[string]any{
		"keys_by_provider":       byProvider,
		"keys_total":             len(names),
		"rotation_enabled":       enabled,
		"rotating_next_24h":      next24h,
		"due":                    due,
		"overdue":                overdue,
		"failed":                 failed,
		"scheduler_state":        state,
		"scheduler_tick_seconds": int64(b.rotation.tick().Seconds()),
		"scheduler_queued":       queued,
		"retirements_pending":    retiring.pending,
		"retirements_retrying":   retiring.retrying,
		"retirements_attention":  retiring.attention,
		"agent_roles":            agentRoles,
		"agent_leased_keys":      agentLeased,
		"agent_static_keys":      len(staticRoles),
	}
	if seen := b.budget.LastSeen(); seen.At.IsZero() {
		data["rate_limit_note"] = rateLimitNote
	} else {
		// The platform's own count for this token, from the headers of
		// its last answer: limit, remaining, and when the window resets.
		data["rate_limit"] = map[string]any{
			"limit":     seen.Limit,
			"remaining": seen.Remaining,
			"reset":     seen.Reset.UTC().Format(time.RFC3339),
			"seen_at":   seen.At.UTC().Format(time.RFC3339),
		}
	}
	if !lastRun.IsZero() {
		data["scheduler_last_run"] = lastRun.Format(time.RFC3339)
	}
	return &logical.Response{Data: data}, b.addSyncStatus(ctx, req.Storage, data)
}

// countAgentRolesAndLeases counts with storage Lists only: the roles, and
// the lease records of every role folder (a deleted role's included).
func countAgentRolesAndLeases(ctx context.Context, s logical.Storage) (roles, leased int, err error) {
	names, err := s.List(ctx, agentRolePrefix)
	if err != nil {
		return 0, 0, fmt.Errorf("listing agent roles: %w", err)
	}
	folders, err := s.List(ctx, agentLeasePrefix)
	if err != nil {
		return 0, 0, fmt.Errorf("listing agent leases: %w", err)
	}
	for _, folder := range folders {
		n, err := countAgentLeases(ctx, s, strings.TrimSuffix(folder, "/"))
		if err != nil {
			return 0, 0, err
		}
		leased += n
	}
	return len(names), leased, nil
}

const statusHelpSynopsis = "The mount's operations view: keys, rotations coming up, overdue and failed, scheduler state."

const statusHelpDescription = "Counts the managed keys per provider, the keys with rotation on, those rotating in the next 24 hours, those due, overdue (due with no staged next_api_key) or failed (see rotation_error on keys/<name>), and reports when the scheduler last ran on the active node. rate_limit is the platform's rate-limit budget for the token as its last answer that counted the hour reported it (limit, remaining, reset; a burst 429 does not count the hour); until a first answer, rate_limit_note says so. retirements_pending, retirements_retrying and retirements_attention count the replaced keys waiting to be retired at their provider, the keys whose last retirement attempt failed (retried with backoff), and those with a replaced key that was not touched because it could not be singled out (see retire_error on keys/<name>). agent_roles counts the agent roles and agent_leased_keys the agent API keys alive under an agent-creds/ lease; agent_static_keys counts the agent API keys managed by static roles (agent-static-roles/), which scheduler_queued counts with the keys."
