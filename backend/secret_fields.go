package backend

import (
	"context"
	"maps"
	"slices"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// sensitiveFields are the request fields of paths that carry a secret: every
// field whose schema is marked Sensitive, on any path, sorted. Derived from
// the schemas, so that a secret field added later is guarded as soon as it
// is marked (TestBackend_SecretFieldsAreSensitive checks the marking).
func sensitiveFields(paths []*framework.Path) []string {
	set := map[string]bool{}
	for _, p := range paths {
		for name, f := range p.Fields {
			if f.DisplayAttrs != nil && f.DisplayAttrs.Sensitive {
				set[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// HandleRequest and HandleExistenceCheck refuse a secret field whose value is
// not a string before the framework converts the fields: the framework's
// conversion error quotes the value it could not convert ("expected type
// 'string', got unconvertible type '[]interface {}', value: '[sk-...]'"),
// and that error reaches the caller, the server log and the audit log in
// plain text. Vault runs the existence check first on every write to a path
// that has one, so both need the guard.
func (b *gradientBackend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := b.nonStringSecret(req); err != nil {
		return respond(req, err)
	}
	return b.Backend.HandleRequest(ctx, req)
}

func (b *gradientBackend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (checkFound, exists bool, err error) {
	if err := b.nonStringSecret(req); err != nil {
		return false, false, errutil.UserError{Err: err.Error()}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// nonStringSecret is a caller error naming the secret field of the request
// that is not a string, without its value; nil when none.
func (b *gradientBackend) nonStringSecret(req *logical.Request) error {
	if req == nil {
		return nil
	}
	for _, field := range b.secretFields {
		if v, ok := req.Data[field]; ok && v != nil {
			if _, isString := v.(string); !isString {
				return callerErrorf("%s must be a string (the value is not shown: it may be a secret)", field)
			}
		}
	}
	return nil
}
