package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Platform keys that the mount does not manage are listed with provider,
// name, created_at and an adopt hint, and read one by one; never a secret.
// Following the hint makes the key managed, and the next sync drops it.
func TestPlatformKeys_ListReadAndAdopt(t *testing.T) {
	e := newTestEnv(t, nil)
	e.createManaged("managed", anthropicKey("p-vault"))
	secret := anthropicKey("p-console")
	stranger := e.createOutside("made-in-console", secret)

	before := e.mustOK(logical.ListOperation, "platform-keys/", nil)
	if len(before.Warnings) == 0 || !strings.Contains(before.Warnings[0], "no sync has run") {
		t.Fatalf("before any sync: warnings %v", before.Warnings)
	}
	e.mustBadRequest(logical.ReadOperation, "platform-keys/"+stranger, nil, "no sync has run")

	e.sync()
	list := e.mustOK(logical.ListOperation, "platform-keys/", nil)
	keys := list.Data["keys"].([]string)
	if len(keys) != 1 || keys[0] != stranger {
		t.Fatalf("keys = %v, want only %s", keys, stranger)
	}
	info := list.Data["key_info"].(map[string]any)[stranger].(map[string]any)
	if info["provider"] != "anthropic" || info["name"] != "made-in-console" || info["created_at"] == "" {
		t.Fatalf("key_info = %v", info)
	}
	hint := info["adopt_hint"].(string)
	if !strings.Contains(hint, "uuid="+stranger) || !strings.Contains(hint, "vault write gradient/keys/") || strings.Contains(hint, "\n") {
		t.Fatalf("adopt_hint = %q", hint)
	}

	read := e.mustOK(logical.ReadOperation, "platform-keys/"+strings.ToUpper(stranger), nil).Data
	if read["uuid"] != stranger || read["name"] != "made-in-console" || read["provider"] != "anthropic" || read["adopt_hint"] != hint {
		t.Fatalf("read = %v", read)
	}
	for _, resp := range []map[string]any{list.Data, read} {
		for field, v := range resp {
			if strings.Contains(field, "secret") || strings.Contains(field, "api_key") || strings.Contains(strings.ToLower(toString(v)), "sk-ant") {
				t.Errorf("a secret-like field left Vault: %s = %v", field, v)
			}
		}
	}
	if resp, err := e.request(logical.ReadOperation, "platform-keys/00000000-0000-4000-8000-000000000000", nil); err != nil || resp != nil {
		t.Fatalf("an unknown uuid: %v %v, want 404", resp, err)
	}
	e.mustBadRequest(logical.ReadOperation, "platform-keys/not-a-uuid", nil, "canonical")

	// Adopting as the hint says makes it managed.
	e.mustOK(logical.CreateOperation, "keys/adopted", map[string]any{"provider": "anthropic", "uuid": stranger, "api_key": anthropicKey("p-adopt")})
	wantCounts(t, e.sync(), map[string]int{"in_sync": 2, "unmanaged": 0})
	if keys, _ := e.mustOK(logical.ListOperation, "platform-keys/", nil).Data["keys"].([]string); len(keys) != 0 {
		t.Fatalf("after adoption: %v", keys)
	}
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}
