package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// agent-roles/<name> says which agent a dynamic agent API key is made for,
// and how long and how many: agent-creds/<name> (path_agent_creds.go)
// makes one key per lease under it.

// agentRolePrefix holds one entry per role. A role holds no secret.
const agentRolePrefix = "agent-roles/"

const (
	defaultAgentRoleTTL       = time.Hour
	defaultAgentRoleMaxTTL    = 24 * time.Hour
	defaultAgentRoleMaxLeases = 100
	// maxAgentRoleMaxLeases bounds max_leases: each lease is a key on the
	// agent and two platform calls of the mount's hourly budget.
	maxAgentRoleMaxLeases = 10_000
)

// agentRole is a role as stored. AgentName and AgentURL are what the GET
// of the agent answered when the role was last written: a lease answers
// the url without another platform call.
type agentRole struct {
	Name      string        `json:"name"`
	AgentUUID string        `json:"agent_uuid"`
	AgentName string        `json:"agent_name"`
	AgentURL  string        `json:"agent_url"`
	TTL       time.Duration `json:"ttl"`
	MaxTTL    time.Duration `json:"max_ttl"`
	MaxLeases int           `json:"max_leases"`
}

func getAgentRole(ctx context.Context, s logical.Storage, name string) (*agentRole, error) {
	return getJSON[agentRole](ctx, s, agentRolePrefix+name, fmt.Sprintf("agent role %q", name))
}

func putAgentRole(ctx context.Context, s logical.Storage, r *agentRole) error {
	return putJSON(ctx, s, agentRolePrefix+r.Name, fmt.Sprintf("agent role %q", r.Name), r)
}

// roleLock is the name under which a role's work is serialized in the
// per-name lock set: the count of its leases and the create it allows are
// one step, so max_leases holds under concurrent reads. The prefix keeps it
// apart from key names.
func roleLock(name string) string { return "agent-role:" + name }

func pathAgentRolesList(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-roles/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-roles"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback:     answered(b.handleAgentRolesList),
				Summary:      "List the agent roles.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Description: "Role names, sorted."},
				}}}},
			},
		},
		HelpSynopsis:    agentRolesListHelpSynopsis,
		HelpDescription: agentRolesListHelpDescription,
	}
}

func pathAgentRole(b *gradientBackend) *framework.Path {
	return &framework.Path{
		// Anything reaches the handler, so a bad name gets the rule's 400.
		Pattern:      "agent-roles/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-role"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the role: " + nameRule + "."},
			"agent_uuid": {
				Type:        framework.TypeString,
				Description: "UUID of the agent whose API keys the role makes (8-4-4-4-12 hexadecimal digits). Required on create; the agent must exist.",
			},
			"ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Lease of each key; default 1h.",
			},
			"max_ttl": {
				Type:        framework.TypeDurationSecond,
				Description: "Longest a key lives, renewals included, from its issue; default 24h. Vault's mount max lease TTL caps it too.",
			},
			"max_leases": {
				Type:        framework.TypeInt,
				Description: "Most keys of this role alive at once; default 100.",
			},
		},
		ExistenceCheck: b.agentRoleExists,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.CreateOperation: changeOperation(answered(b.handleAgentRoleWrite), "Create an agent role (the agent is checked with one platform call).", "create", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentRoleResponseFields}}}),
			logical.UpdateOperation: changeOperation(answered(b.handleAgentRoleWrite), "Update an agent role; fields left out keep their value.", "update", map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentRoleResponseFields}}}),
			logical.ReadOperation: &framework.PathOperation{
				Callback:     answered(b.handleAgentRoleRead),
				Summary:      "Read an agent role.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses:    map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: agentRoleResponseFields}}},
			},
			logical.DeleteOperation: changeOperation(answered(b.handleAgentRoleDelete), "Delete an agent role; its outstanding leases stay revocable.", "delete", map[int][]framework.Response{http.StatusNoContent: {{Description: "No Content"}}}),
		},
		HelpSynopsis:    agentRoleHelpSynopsis,
		HelpDescription: agentRoleHelpDescription,
	}
}

var agentRoleResponseFields = map[string]*framework.FieldSchema{
	"name":        {Type: framework.TypeString, Description: "Name of the role.", Required: true},
	"agent_uuid":  {Type: framework.TypeString, Description: "UUID of the agent.", Required: true},
	"agent_name":  {Type: framework.TypeString, Description: "The agent's name when the role was last written.", Required: true},
	"agent_url":   {Type: framework.TypeString, Description: "The agent's endpoint (its deployment url) when the role was last written; empty if it was not deployed.", Required: true},
	"ttl":         {Type: framework.TypeDurationSecond, Description: "Lease of each key, in seconds.", Required: true},
	"max_ttl":     {Type: framework.TypeDurationSecond, Description: "Longest a key lives, in seconds.", Required: true},
	"max_leases":  {Type: framework.TypeInt, Description: "Most keys alive at once.", Required: true},
	"live_leases": {Type: framework.TypeInt, Description: "Keys of this role alive now (leased, or revoked with the platform delete still being retried).", Required: true},
}

func (b *gradientBackend) agentRoleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	name := d.Get("name").(string)
	if validateName(name) != nil {
		return false, nil
	}
	r, err := getAgentRole(ctx, req.Storage, name)
	return r != nil, err
}

func (b *gradientBackend) handleAgentRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	names, err := req.Storage.List(ctx, agentRolePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing agent roles: %w", err)
	}
	sort.Strings(names)
	return logical.ListResponse(names), nil
}

func (b *gradientBackend) handleAgentRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return nil, err
	}
	r, err := getAgentRole(ctx, req.Storage, name)
	if err != nil || r == nil {
		return nil, err
	}
	return b.agentRoleResponse(ctx, req.Storage, r)
}

func (b *gradientBackend) agentRoleResponse(ctx context.Context, s logical.Storage, r *agentRole) (*logical.Response, error) {
	live, err := countAgentLeases(ctx, s, r.Name)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{
		"name":        r.Name,
		"agent_uuid":  r.AgentUUID,
		"agent_name":  r.AgentName,
		"agent_url":   r.AgentURL,
		"ttl":         int64(r.TTL.Seconds()),
		"max_ttl":     int64(r.MaxTTL.Seconds()),
		"max_leases":  r.MaxLeases,
		"live_leases": live,
	}}, nil
}

// handleAgentRoleWrite: parse, check the agent with one GET, store. The
// agent is checked on every write, so a write also refreshes the name and
// url the role shows and hands out.
func (b *gradientBackend) handleAgentRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
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
		r = &agentRole{Name: name, TTL: defaultAgentRoleTTL, MaxTTL: defaultAgentRoleMaxTTL, MaxLeases: defaultAgentRoleMaxLeases}
	}
	if err := r.apply(d); err != nil {
		return nil, err
	}
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agent, err := c.agentKeys.GetAgent(ctx, r.AgentUUID)
	if errors.Is(err, platform.ErrNotFound) {
		return nil, callerErrorf("agent_uuid: there is no agent %s on the platform", r.AgentUUID)
	}
	if err != nil {
		return nil, fmt.Errorf("checking agent %s: %w", r.AgentUUID, err)
	}
	r.AgentName, r.AgentURL = agent.Name, agent.DeploymentURL
	if err := putAgentRole(ctx, req.Storage, r); err != nil {
		return nil, err
	}
	b.Logger().Info("agent role written", "role", r.Name, "agent_uuid", r.AgentUUID)
	return b.agentRoleResponse(ctx, req.Storage, r)
}

// apply takes the fields the request gives; on create agent_uuid is
// required. The uuid is refused without being echoed: it may be a key
// pasted into the wrong field.
func (r *agentRole) apply(d *framework.FieldData) error {
	if raw, ok := d.GetOk("agent_uuid"); ok {
		u := strings.TrimSpace(raw.(string))
		if !platform.IsUUID(u) {
			return callerErrorf("agent_uuid is not an agent uuid: it must be 36 characters, 8-4-4-4-12 hexadecimal digits (as the control panel and doctl show it)")
		}
		r.AgentUUID = strings.ToLower(u)
	}
	if r.AgentUUID == "" {
		return callerErrorf("agent_uuid is required")
	}
	if v, ok := d.GetOk("ttl"); ok {
		r.TTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		r.MaxTTL = time.Duration(v.(int)) * time.Second
	}
	if v, ok := d.GetOk("max_leases"); ok {
		r.MaxLeases = v.(int)
	}
	switch {
	case r.TTL < time.Second:
		return callerErrorf("ttl must be at least 1s")
	case r.MaxTTL < r.TTL:
		return callerErrorf("max_ttl (%s) must be at least ttl (%s)", r.MaxTTL, r.TTL)
	case r.MaxLeases < 1 || r.MaxLeases > maxAgentRoleMaxLeases:
		return callerErrorf("max_leases must be between 1 and %d", maxAgentRoleMaxLeases)
	}
	return nil
}

// handleAgentRoleDelete forgets the role. Its leases carry everything their
// revocation needs (secret_agent_creds.go), so they stay revocable, and
// their lease records keep counting for tidy until then.
func (b *gradientBackend) handleAgentRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateName(name); err != nil {
		return nil, err
	}
	defer b.lockNames(roleLock(name))()
	if err := req.Storage.Delete(ctx, agentRolePrefix+name); err != nil {
		return nil, fmt.Errorf("deleting agent role %q: %w", name, err)
	}
	b.Logger().Info("agent role deleted", "role", name)
	return nil, nil
}

const agentRolesListHelpSynopsis = "List the agent roles."

const agentRolesListHelpDescription = "Lists the names of the roles under agent-roles/, from which agent-creds/<name> makes one agent API key per lease."

const agentRoleHelpSynopsis = "Manage a role that makes one agent API key per lease."

const agentRoleHelpDescription = "A role names an agent (agent_uuid, checked with one platform call on every write) and the leases of the keys that agent-creds/<name> makes for it: ttl (default 1h), max_ttl (default 24h, counted from the issue, renewals included) and max_leases (default 100: the most keys of the role alive at once, so one application cannot spend the mount's platform budget or the agent's keys). A read shows the agent's name and agent_url as of the last write, and live_leases. Deleting a role leaves its outstanding leases revocable."
