package backend

import (
	"context"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

var agentListField = &framework.FieldSchema{
	Type:        framework.TypeSlice,
	Description: "Agents, each with uuid and name.",
	Required:    true,
}

func pathKeyAgents(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + keyNameSegment + "/agents$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key-agents"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				// Under the key's lock: the agents seen are recorded (sync.go).
				Callback:     b.changingKey(b.handleAgentsRead),
				Summary:      "List the platform agents that use the key, all pages.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "list"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"agents": agentListField,
				}}}},
			},
		},
		HelpSynopsis:    agentsHelpSynopsis,
		HelpDescription: agentsHelpDescription,
	}
}

func pathKeyReassign(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + keyNameSegment + "/reassign$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "key-agents"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key whose agents move."},
			"to":   {Type: framework.TypeString, Description: "Name of the key, managed by this mount and of the same provider, that the agents move to.", Required: true},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback:     answered(b.handleReassign),
				Summary:      "Switch every agent that uses this key to another key.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "reassign"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"moved": agentListField,
					"to":    {Type: framework.TypeString, Description: "The key the agents now use.", Required: true},
				}}}},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    reassignHelpSynopsis,
		HelpDescription: reassignHelpDescription,
	}
}

func (b *gradientBackend) handleAgentsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agents, err := c.platform.ListAgentsByKey(ctx, k.Provider, k.UUID)
	if err != nil {
		return nil, keyGoneIfNotFound(err, k)
	}
	b.noteAgents(ctx, req.Storage, k, agents)
	return &logical.Response{Data: map[string]any{"agents": agentList(agents)}}, nil
}

// handleReassign moves every agent from this key to another one. It is an
// update with a `to` parameter, not an option of delete, because Vault
// applies allowed_parameters to updates but not to deletes: a policy can pin
// `to` to the team's own keys.
func (b *gradientBackend) handleReassign(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name, to, err := parseNamePair(d, "to",
		"to is required: the name of the key the agents should use instead",
		"to names the same key; name another key of this mount")
	if err != nil {
		return nil, err
	}
	defer b.lockNames(name, to)()

	from, err := getExistingKey(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	target, err := getKey(ctx, req.Storage, to)
	if err != nil {
		return nil, err
	}
	if target == nil {
		return nil, callerErrorf("there is no key named %q on this mount; agents can only move to keys it manages", to)
	}
	if target.Provider != from.Provider {
		return nil, callerErrorf("%q is an %s key and %q an %s key: agents can only move to a key of the same provider", name, from.Provider, to, target.Provider)
	}
	c, err := b.clients(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	agents, err := c.platform.ListAgentsByKey(ctx, from.Provider, from.UUID)
	if err != nil {
		return nil, keyGoneIfNotFound(err, from)
	}
	warnings, err := b.reassignAgents(ctx, req.Storage, c, from, target, agents)
	if err != nil {
		return nil, err
	}
	b.Logger().Info("agents reassigned", "from", name, "to", to, "count", len(agents))
	b.noteAgents(ctx, req.Storage, from, nil)
	b.noteAgentsMoved(ctx, req.Storage, target, agents)
	resp := &logical.Response{Data: map[string]any{"moved": agentList(agents), "to": to}}
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	return resp, nil
}

// agentDrift names the fields that differ between an agent before and after
// a key switch; empty fields in the answer are not counted as changes.
func agentDrift(before, after platform.Agent) string {
	var changed []string
	check := func(field, a, b string) {
		if b != "" && a != b {
			changed = append(changed, field)
		}
	}
	check("name", before.Name, after.Name)
	check("instruction", before.Instruction, after.Instruction)
	check("model", before.ModelUUID, after.ModelUUID)
	check("region", before.Region, after.Region)
	return strings.Join(changed, ", ")
}

func agentList(agents []platform.Agent) []map[string]any {
	out := make([]map[string]any, 0, len(agents))
	for _, a := range agents {
		out = append(out, map[string]any{"uuid": a.UUID, "name": a.Name})
	}
	return out
}

const agentsHelpSynopsis = "List the platform agents that use a key."

const agentsHelpDescription = "Asks the platform which agents use the key, following every page, and returns their names and uuids. Use it before deleting a key."

const reassignHelpSynopsis = "Move every agent that uses this key to another key of this mount."

const reassignHelpDescription = `to names a key of the same provider managed by this mount. Each agent is
switched with the platform's agent update, sending only the key field. If
any switch fails, the agents already moved are moved back, and the answer
says which key each agent uses afterwards. Afterwards the key can be deleted
without force.

This is an update with a "to" parameter so that policies can restrict "to"
with allowed_parameters, e.g. allowed_parameters = { "to" = ["team-a-*"] }.`
