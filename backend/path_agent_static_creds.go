package backend

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// agent-static-creds/<name> is the one path that returns a static role's
// secret, so a policy can let a service use the key without letting it
// manage the role.
func pathAgentStaticCreds(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "agent-static-creds/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "agent-static-credentials"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the static role."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.readingAgentStatic(b.handleAgentStaticCredsRead),
				Summary:      "Read the current secret of a static role's agent API key.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"api_key":             {Type: framework.TypeString, Description: "The agent API key's secret: send it as the bearer token to agent_url.", Required: true, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
					"api_key_uuid":        {Type: framework.TypeString, Description: "UUID of the agent API key; it never changes.", Required: true},
					"agent_uuid":          {Type: framework.TypeString, Description: "The agent.", Required: true},
					"agent_url":           {Type: framework.TypeString, Description: "The agent's deployment url when the role was last written.", Required: true},
					"version":             {Type: framework.TypeInt, Description: "Version of the secret.", Required: true},
					"last_vault_rotation": {Type: framework.TypeTime, Description: "When Vault last regenerated the key, or created or adopted it.", Required: true},
					"next_vault_rotation": {Type: framework.TypeTime, Description: "When the next scheduled rotation is due; absent when none."},
					"ttl":                 {Type: framework.TypeInt, Description: "Seconds until the next scheduled rotation; 0 when none is set or it is due.", Required: true},
				}}}},
			},
		},
		HelpSynopsis:    agentStaticCredsHelpSynopsis,
		HelpDescription: agentStaticCredsHelpDescription,
	}
}

// handleAgentStaticCredsRead answers with a lease (secret_agent_static_creds.go)
// bound to the key's uuid and version: renewal fails once it rotates.
func (b *gradientBackend) handleAgentStaticCredsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData, r *agentStaticEntry) (*logical.Response, error) {
	return b.leasedAgentStaticCreds(ctx, req, r)
}

const agentStaticCredsHelpSynopsis = "Read the secret of a static role's agent API key."

const agentStaticCredsHelpDescription = "Returns the secret of the role's agent API key (api_key), its uuid, the agent's uuid and deployment url, the version, last_vault_rotation, next_vault_rotation and ttl (seconds to the next rotation), under a lease. The lease runs to the earlier of the next rotation and config's creds_ttl; it renews until the key rotates, then renewal fails and the holder reads again. Revoking a lease changes nothing on the platform: the key is the role's, shared by every holder. This is the only path that returns the secret: grant read on agent-static-creds/<name> to the services that call the agent, and agent-static-roles/<name> to operators."
