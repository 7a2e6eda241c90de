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
				Callback:     b.readingKey(b.pathCredsRead),
				Summary:      "Read the API key itself.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read"},
				Responses: map[int][]framework.Response{http.StatusOK: {{Description: "OK", Fields: map[string]*framework.FieldSchema{
					"api_key":  {Type: framework.TypeString, Description: "The provider API key.", Required: true, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}},
					"provider": {Type: framework.TypeString, Description: "anthropic or openai.", Required: true},
					"uuid":     {Type: framework.TypeString, Description: "UUID of the key on the platform.", Required: true},
					"version":  {Type: framework.TypeInt, Description: "Version of the secret.", Required: true},
				}}}},
			},
		},
		HelpSynopsis:    credsHelpSynopsis,
		HelpDescription: credsHelpDescription,
	}
}

func (b *gradientBackend) pathCredsRead(_ context.Context, _ *logical.Request, _ *framework.FieldData, k *keyEntry) (*logical.Response, error) {
	return &logical.Response{Data: map[string]any{
		"api_key":  k.APIKey,
		"provider": k.Provider,
		"uuid":     k.UUID,
		"version":  k.Version,
	}}, nil
}

const credsHelpSynopsis = "Read a managed provider key."

const credsHelpDescription = `Returns the API key, its provider, its platform uuid and its version. This is
the only path that returns the secret: grant read on creds/<name> to the
services that call the provider, and keys/<name> to the team that manages
the key.`
