package backend

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/errutil"

	"github.com/hashicorp/vault/sdk/logical"
)

// Found by acceptance/hostile_test.go: a key sent as a JSON list or object
// came back, whole, in the framework's field-conversion error, and so in
// the response, the server log and the audit log. Every secret field of a
// type other than string is a 400 that does not quote it; the key is never
// stored or pushed.
func TestSecretFieldsOfOtherTypes(t *testing.T) {
	e := newTestEnv(t, nil)
	key := anthropicKey("typed")
	e.mustOK(logical.CreateOperation, "keys/typed", map[string]any{"provider": providerAnthropic, "api_key": anthropicKey("typed-first")})
	cases := map[string]struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		"api_key as a list on create":    {logical.CreateOperation, "keys/typed-new", map[string]any{"provider": providerAnthropic, "api_key": []any{key}}},
		"api_key as an object on update": {logical.UpdateOperation, "keys/typed", map[string]any{"api_key": map[string]any{"value": key}}},
		"next_api_key as a list":         {logical.UpdateOperation, "keys/typed", map[string]any{"next_api_key": []any{key}}},
		"api_key as a list on rotate":    {logical.UpdateOperation, "keys/typed/rotate", map[string]any{"api_key": []any{key}}},
		"token as a list":                {logical.UpdateOperation, "config", map[string]any{"token": []any{key}}},
		"api_key as a number":            {logical.CreateOperation, "keys/typed-num", map[string]any{"provider": providerAnthropic, "api_key": json.Number("12345678901234567890")}},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			e.trackSecrets(map[string]any{"api_key": key})
			before := e.state()
			// Vault runs the existence check first, where the path has one.
			req := &logical.Request{Operation: c.op, Path: c.path, Data: c.data, Storage: e.storage, MountPoint: "gradient/"}
			if _, _, err := e.b.HandleExistenceCheck(context.Background(), req); err != nil {
				var ue errutil.UserError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), "must be a string") {
					t.Fatalf("existence check: %v; want a user error saying the field must be a string", err)
				}
				e.assertSecretFree("the existence check's error", err.Error())
			}
			e.mustBadRequest(c.op, c.path, c.data, "must be a string")
			if len(e.state().AnthropicKeys) != len(before.AnthropicKeys) {
				t.Fatal("a key reached the platform")
			}
		})
	}
}
