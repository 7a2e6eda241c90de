package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// agent-creds/<name> makes one agent API key per read, under a lease
// (secret_agent_creds.go) whose revocation deletes it; agent-creds-tidy
// deletes this mount's keys that no lease holds.

func pathAgentCreds(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-creds/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-credentials"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the agent role."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     answered(b.handleAgentCredsRead),
				Summary:      "Create an agent API key under a lease; revoking the lease deletes the key.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "generate"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"api_key":      {Type: framework.TypeString, Description: "The agent API key: the bearer token for the agent's endpoint.", Required: true, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
					"api_key_uuid": {Type: framework.TypeString, Description: "UUID of the key on the platform.", Required: true},
					"agent_uuid":   {Type: framework.TypeString, Description: "UUID of the agent.", Required: true},
					"agent_url":    {Type: framework.TypeString, Description: "The agent's endpoint; empty if it was not deployed when the role was written.", Required: true},
				}}}},
				// A read here creates a key on the platform.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    agentCredsHelpSynopsis,
		HelpDescription: agentCredsHelpDescription,
	}
}

// handleAgentCredsRead: parse, lock the role, count its live keys, create
// one, answer it under a lease. The role's lock makes the count and the
// create one step, so max_leases holds under concurrent reads. The count
// takes in the role's creates whose write-ahead log entries remain (an
// answer lost, a late landing possible): their keys may be alive on the
// agent until the rollback, which holds the same lock, deletes them.
func (b *gradientBackend) handleAgentCredsRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return nil, err
	}
	defer b.lockNames(roleLock(name))()
	r, err := getAgentRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, callerErrorf("there is no agent role named %q: an operator writes %sagent-roles/%s first", name, req.MountPoint, name)
	}
	live, err := countAgentLeases(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	failed, err := b.agentCreatesOfRole(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	switch {
	case live+failed < r.MaxLeases:
	case failed == 0:
		return nil, callerErrorf("agent role %q has %d live leases, its max_leases: revoke a lease (or let one expire), or ask an operator to raise max_leases", name, live)
	default:
		return nil, callerErrorf("agent role %q has %d live leases and %d failed issues whose key may exist on the platform, together its max_leases of %d: the keys of failed issues count until Vault's periodic rollback removes them (entries older than %d minutes); retry later, revoke a lease, or ask an operator to raise max_leases", name, live, failed, r.MaxLeases, int(walRollbackMinAge.Minutes()))
	}
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	key, lease, err := b.issueAgentKey(ctx, req.Storage, c, r)
	if errors.Is(err, platform.ErrNotFound) && !platform.IsPossiblyApplied(err) {
		// The platform's 404 to the create: the role's agent is gone.
		return nil, callerErrorf("agent %s of role %q no longer exists on the platform: an operator points the role at another agent (write %sagent-roles/%s agent_uuid=...) or deletes it", r.AgentUUID, name, req.MountPoint, name)
	}
	if err != nil {
		return nil, err
	}
	b.Logger().Info("agent API key issued", "role", name, "agent_uuid", r.AgentUUID, "key_uuid", lease.KeyUUID, "key_name", lease.Name)
	return b.agentCredsResponse(r, key, lease), nil
}

func pathAgentCredsTidy(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-creds-tidy$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-credentials"},
		Fields: map[string]*framework.FieldSchema{
			"new_mark": {
				Type:        framework.TypeBool,
				Description: "Choose a new mark for this mount before tidying: for a copy of the mount restored from a snapshot into another cluster with the same token, which would otherwise take the original's new keys for its own orphans. Keys under the old mark are then deleted only by their lease records and write-ahead log entries.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     answered(b.handleAgentCredsTidy),
				Summary:      "Delete this mount's agent API keys that no lease holds.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "tidy"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"agents_checked": {Type: framework.TypeInt, Description: "Agents whose keys were listed: those of every role and every live lease.", Required: true},
					"deleted":        {Type: framework.TypeStringSlice, Description: "UUIDs of the keys deleted.", Required: true},
					"in_flight":      {Type: framework.TypeInt, Description: "Keys spared because their create is still in its write-ahead log entry (the rollback decides).", Required: true},
					"mark":           {Type: framework.TypeString, Description: "This mount's mark (vault-<mark>- in its key names); empty if it never issued a key.", Required: true},
					"previous_mark":  {Type: framework.TypeString, Description: "With new_mark: the mark replaced (empty if there was none)."},
				}}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    agentTidyHelpSynopsis,
		HelpDescription: agentTidyHelpDescription,
	}
}

func (b *gradientBackend) handleAgentCredsTidy(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	data := map[string]any{}
	if d.Get("new_mark").(bool) {
		previous, mark, err := b.newAgentMountID(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		b.Logger().Warn("this mount's agent key mark was replaced: tidy no longer sweeps keys under the previous mark", "previous_mark", previous, "mark", mark)
		data["previous_mark"] = previous
	}
	res, err := b.tidyAgentKeys(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	mark, err := storedAgentMountID(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	data["agents_checked"] = res.agents
	data["deleted"] = res.deleted
	data["in_flight"] = res.inFlight
	data["mark"] = mark
	return &logical.Response{Data: data}, nil
}

type agentTidyResult struct {
	agents, inFlight int
	deleted          []string
}

// tidyAgentKeys deletes the keys that carry this mount's mark and that no
// lease record holds, on every agent a role or a lease names, and the keys
// of records more than agentLeaseGrace past their lease's end (its last
// renewal's ttl, or its longest life; agentLease.outlived). A
// key made elsewhere (another mount, the control panel) has no such mark and
// is never touched.
//
// The sweep goes by the mark, not only by the names this mount recorded,
// because some orphans have no record left anywhere: the keys issued after
// a snapshot that storage was then restored to (Vault lost their leases
// too), a create that landed after its rollback had given up or looked. The
// price is that a copy of the mount holding the same mark (that snapshot
// restored into another cluster, with the same token) takes the original's
// newer keys for orphans: agent-creds-tidy new_mark=true gives the copy a
// mark of its own (docs/agent-keys.md).
//
// The order of the reads is what makes it safe against an issue running at
// the same time: the platform's keys are listed first, then the write-ahead
// log, then the lease records. An issue writes its entry before its create
// and deletes it only after its lease record is written (or after its undo
// deleted the key), so a key in the listing either still has its entry,
// and is spared, or already has its record.
func (b *gradientBackend) tidyAgentKeys(ctx context.Context, s logical.Storage) (agentTidyResult, error) {
	var res agentTidyResult
	mark, err := storedAgentMountID(ctx, s)
	if err != nil || mark == "" {
		return agentTidyResult{deleted: []string{}}, err
	}
	agents, err := tidyAgents(ctx, s)
	if err != nil {
		return res, err
	}
	c, err := b.clients(ctx, s)
	if err != nil {
		return res, err
	}
	var candidates []platform.AgentKey
	for _, agent := range agents {
		keys, err := c.agentKeys.ListAgentKeys(ctx, agent)
		if errors.Is(err, platform.ErrNotFound) {
			continue // the agent is gone, and its keys with it
		}
		if err != nil {
			return res, err
		}
		res.agents++
		for _, k := range keys {
			if isMountAgentKey(mark, k.Name) {
				candidates = append(candidates, k)
			}
		}
	}
	inFlight, err := b.agentKeysInFlight(ctx, s)
	if err != nil {
		return res, err
	}
	leases, err := allAgentLeases(ctx, s)
	if err != nil {
		return res, err
	}
	held := map[string]bool{}
	var outlived []*agentLease
	now := b.now()
	for _, l := range leases {
		if l.outlived(now) {
			outlived = append(outlived, l)
			continue
		}
		held[strings.ToLower(l.KeyUUID)] = true
	}
	res.deleted = []string{}
	var failed []error
	for _, k := range candidates {
		switch {
		case held[strings.ToLower(k.UUID)]:
			continue
		case inFlight[k.Name]:
			res.inFlight++
			continue
		}
		if err := c.agentKeys.DeleteAgentKey(ctx, k.AgentUUID, k.UUID); err != nil && !errors.Is(err, platform.ErrNotFound) {
			failed = append(failed, fmt.Errorf("deleting agent API key %s of agent %s: %w", k.UUID, k.AgentUUID, err))
			continue
		}
		b.Logger().Warn("tidy deleted an agent API key of this mount that no lease holds", "agent_uuid", k.AgentUUID, "key_uuid", k.UUID, "key_name", k.Name)
		res.deleted = append(res.deleted, k.UUID)
	}
	// A record past its lease's end: Vault does not hold the lease (it was
	// never registered, revoked with -force, or given up), so nothing else
	// will delete its key or the record.
	for _, l := range outlived {
		if !slices.Contains(res.deleted, l.KeyUUID) {
			err := c.agentKeys.DeleteAgentKey(ctx, l.AgentUUID, l.KeyUUID)
			if err != nil && !errors.Is(err, platform.ErrNotFound) {
				failed = append(failed, fmt.Errorf("deleting agent API key %s of agent %s, whose lease ended by %s: %w", l.KeyUUID, l.AgentUUID, l.end().Format(time.RFC3339), err))
				continue
			}
			if err == nil {
				res.deleted = append(res.deleted, l.KeyUUID)
			}
		}
		if err := s.Delete(ctx, agentLeasePath(l.Role, l.KeyUUID)); err != nil {
			failed = append(failed, fmt.Errorf("deleting the lease record of agent API key %s: %w", l.KeyUUID, err))
			continue
		}
		b.Logger().Warn("tidy deleted an agent API key whose lease ended without a revocation (or was never registered)", "role", l.Role, "agent_uuid", l.AgentUUID, "key_uuid", l.KeyUUID, "lease_ends", l.end().Format(time.RFC3339), "expires_by", l.ExpiresBy.Format(time.RFC3339))
	}
	return res, errors.Join(failed...)
}

// tidyAgents are the agents of every role and every lease record, sorted.
func tidyAgents(ctx context.Context, s logical.Storage) ([]string, error) {
	set := map[string]bool{}
	roles, err := s.List(ctx, agentRolePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing agent roles: %w", err)
	}
	for _, name := range roles {
		r, err := getAgentRole(ctx, s, name)
		if err != nil {
			return nil, err
		}
		if r != nil {
			set[r.AgentUUID] = true
		}
	}
	leases, err := allAgentLeases(ctx, s)
	if err != nil {
		return nil, err
	}
	for _, l := range leases {
		set[l.AgentUUID] = true
	}
	agents := make([]string, 0, len(set))
	for a := range set {
		agents = append(agents, a)
	}
	slices.Sort(agents)
	return agents, nil
}

// agentKeysInFlight are the key names of the agent key creates whose
// write-ahead log entries remain.
func (b *gradientBackend) agentKeysInFlight(ctx context.Context, s logical.Storage) (map[string]bool, error) {
	creates, err := agentKeyCreatesInFlight(ctx, s)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, w := range creates {
		names[w.Name] = true
	}
	return names, nil
}

// agentCreatesOfRole is the number of role's creates whose write-ahead log
// entries remain. Called under the role's lock, no create of the role is
// between its entry and its lease record: each is a failed issue.
func (b *gradientBackend) agentCreatesOfRole(ctx context.Context, s logical.Storage, role string) (int, error) {
	creates, err := agentKeyCreatesInFlight(ctx, s)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, w := range creates {
		if w.Role == role {
			n++
		}
	}
	return n, nil
}

// agentKeyCreatesInFlight are the agent key creates whose write-ahead log
// entries remain. An entry that cannot be decoded is skipped: the
// rollback drops it too.
func agentKeyCreatesInFlight(ctx context.Context, s logical.Storage) ([]*agentKeyWAL, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("listing the write-ahead log: %w", err)
	}
	var out []*agentKeyWAL
	for _, id := range ids {
		entry, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return nil, fmt.Errorf("reading the write-ahead log: %w", err)
		}
		if entry == nil || entry.Kind != walKindAgentKey {
			continue
		}
		w, err := decodeWAL(entry.Kind, entry.Data)
		if err != nil {
			continue
		}
		out = append(out, w.(*agentKeyWAL))
	}
	return out, nil
}

const agentCredsHelpSynopsis = "Create an agent API key under a lease."

const agentCredsHelpDescription = "Each read creates a new API key on the role's agent, named vault-<mount mark>-<role>-<8 hex digits> so that an operator recognizes it in the control panel, and answers api_key (the secret: the bearer token for agent_url), api_key_uuid, agent_uuid and agent_url under a renewable lease of the role's ttl. Renewal never goes past the role's max_ttl from the issue (nor the mount's max lease TTL). Revoking the lease (explicitly, by prefix, or at expiry) deletes the key. A read beyond the role's max_leases live keys is refused."

const agentTidyHelpSynopsis = "Delete this mount's agent API keys that no lease holds."

const agentTidyHelpDescription = "Lists the API keys of every agent that a role or a live lease names and deletes those whose name carries this mount's mark (vault-<mount mark>-) and that no lease holds: keys left by a failure that its rollback could not finish. Keys made elsewhere carry no such mark and are never touched; a key whose create is still in flight (its write-ahead log entry remains) is left to the rollback. Lease records more than an hour past their lease's end (its ttl from the issue or the last renewal, at most its max_ttl) are ended and their keys deleted: a lease Vault never registered, or no longer holds. new_mark=true first gives the mount a new mark: for a copy restored from a snapshot into another cluster with the same token, whose tidy would otherwise delete the original mount's newer keys."
