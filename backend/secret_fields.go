package backend

import (
	"context"

	"github.com/hashicorp/vault/sdk/logical"
)

// secretFields are the fields that carry a secret, on any path.
var secretFields = []string{"api_key", "next_api_key", "token"}

// HandleRequest refuses a secret field whose value is not a string before
// the framework converts the fields: the framework's conversion error quotes
// the value it could not convert ("expected type 'string', got unconvertible
// type '[]interface {}', value: '[sk-...]'"), and that error reaches the
// caller, the server log and the audit log in plain text.
func (b *gradientBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req != nil {
		for _, field := range secretFields {
			if v, ok := req.Data[field]; ok && v != nil {
				if _, isString := v.(string); !isString {
					return logical.ErrorResponse("%s must be a string (the value is not shown: it may be a secret)", field), nil
				}
			}
		}
	}
	return b.Backend.HandleRequest(ctx, req)
}
