package backend

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// creds/<name> is the one path that returns the secret, so a policy can let
// a consumer use a key without letting it manage the key.
func pathCreds(b *gradientBackend) *framework.Path {
	return &framework.Path{
		Pattern:      "creds/" + framework.MatchAllRegex("name"),
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "credentials"},
		Fields: map[string]*framework.FieldSchema{
			"name": {Type: framework.TypeString, Description: "Name of the key."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.readingKey(b.handleCredsRead),
				Summary:      "Read the API key itself.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"api_key":  {Type: framework.TypeString, Description: "The provider API key.", Required: true, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
					"provider": {Type: framework.TypeString, Description: "anthropic or openai.", Required: true},
					"uuid":     {Type: framework.TypeString, Description: "UUID of the key on the platform.", Required: true},
					"version":  {Type: framework.TypeInt, Description: "Version of the secret.", Required: true},
					// For consumers that follow rotation from the data, as
					// with the database engine's static-creds (Vault Secrets
					// Operator's static-credential mode).
					"ttl":                 {Type: framework.TypeInt, Description: "Seconds until the next scheduled rotation; 0 when none is set or it is due.", Required: true},
					"last_vault_rotation": {Type: framework.TypeTime, Description: "When Vault last rotated the key, or took it in.", Required: true},
					"rotation_period":     {Type: framework.TypeDurationSecond, Description: "Rotation period in seconds, when the key rotates by period."},
					"rotation_schedule":   {Type: framework.TypeString, Description: "Cron schedule (UTC), when the key rotates by schedule."},
					"rotation_window":     {Type: framework.TypeDurationSecond, Description: "Rotation window in seconds, with rotation_schedule."},
				}}}},
			},
		},
		HelpSynopsis:    credsHelpSynopsis,
		HelpDescription: credsHelpDescription,
	}
}

// handleCredsRead answers with a lease (secret_creds.go) bound to the key's
// version: renewal fails once the key rotates.
func (b *gradientBackend) handleCredsRead(ctx context.Context, req *logical.Request, _ *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	return b.leasedCreds(ctx, req, k)
}

const credsHelpSynopsis = "Read a managed provider key."

const credsHelpDescription = `Returns the API key, its provider, its platform uuid and its version, with
ttl, last_vault_rotation and the rotation settings, under a lease. The lease
runs to the earlier of the next rotation and config's creds_ttl; it renews
until the key rotates, then renewal fails and the holder reads again.
Revoking a lease changes nothing.

This is the only path that returns the secret: grant read on creds/<name> to
the services that call the provider, and keys/<name> to the team that
manages the key.`
