package backend

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/helper/errutil"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"

	"github.com/hashicorp/vault/sdk/logical"
)

// Found by acceptance/hostile_test.go: a key sent as a JSON list or object
// came back, whole, in the framework's field-conversion error, and so in
// the response, the server log and the audit log. Every secret field of a
// type other than string is a 400 that does not quote it; the key is never
// stored or pushed.
//
// The admin keys are the issue-16 cases: the guard knew three field names by
// hand and quoted a list-valued openai_admin_key whole.
func TestSecretFieldsOfOtherTypes(t *testing.T) {
	e := newTestEnv(t, nil)
	key := anthropicKey("typed")
	openAIAdmin := "sk-admin-" + strings.Repeat("T", 16) + "-typed-openai-admin"
	anthropicAdmin := "sk-ant-admin01-" + strings.Repeat("U", 16) + "-typed-anthropic-admin"
	e.trackSecret(openAIAdmin)
	e.trackSecret(anthropicAdmin)
	e.mustOK(logical.CreateOperation, "keys/typed", map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("typed-first")})
	cases := map[string]struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		"api_key as a list on create":    {logical.CreateOperation, "keys/typed-new", map[string]any{"provider": platform.Anthropic, "api_key": []any{key}}},
		"api_key as an object on update": {logical.UpdateOperation, "keys/typed", map[string]any{"api_key": map[string]any{"value": key}}},
		"next_api_key as a list":         {logical.UpdateOperation, "keys/typed", map[string]any{"next_api_key": []any{key}}},
		"api_key as a list on rotate":    {logical.UpdateOperation, "keys/typed/rotate", map[string]any{"api_key": []any{key}}},
		"token as a list":                {logical.UpdateOperation, "config", map[string]any{"token": []any{key}}},
		"api_key as a number":            {logical.CreateOperation, "keys/typed-num", map[string]any{"provider": platform.Anthropic, "api_key": json.Number("12345678901234567890")}},
		"openai_admin_key as a list":     {logical.UpdateOperation, "config", map[string]any{"openai_admin_key": []any{openAIAdmin}}},
		"anthropic_admin_key as a map":   {logical.UpdateOperation, "config", map[string]any{"anthropic_admin_key": map[string]any{"k": anthropicAdmin}}},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			e.trackSecrets(map[string]any{"api_key": key})
			before := e.state()
			configBefore, err := e.storage.Get(context.Background(), configPath)
			if err != nil {
				t.Fatal(err)
			}
			// Vault runs the existence check first, where the path has one.
			req := &logical.Request{Operation: c.op, Path: c.path, Data: c.data, Storage: e.storage, MountPoint: "gradient/"}
			if _, _, err := e.b.HandleExistenceCheck(context.Background(), req); err != nil {
				var ue errutil.UserError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), "must be a string") {
					t.Fatalf("existence check: %v; want a user error saying the field must be a string", err)
				}
				e.assertSecretFree("the existence check's error", err.Error())
			}
			// The message names the field, never its value.
			var field string
			for name := range c.data {
				if _, isString := c.data[name].(string); !isString {
					field = name
				}
			}
			e.mustBadRequest(c.op, c.path, c.data, field+" must be a string")
			if len(e.state().AnthropicKeys) != len(before.AnthropicKeys) {
				t.Fatal("a key reached the platform")
			}
			if configAfter, _ := e.storage.Get(context.Background(), configPath); !reflect.DeepEqual(configBefore, configAfter) {
				t.Fatal("the config changed")
			}
		})
	}
}
