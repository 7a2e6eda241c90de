package backend

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Admin keys on config: shape checked, checked with the provider by one
// cheap admin read, a rejected one is a 400 that saves nothing, and no read
// ever returns one.
func TestConfig_AdminKeys(t *testing.T) {
	unknownOpenAI := "sk-admin-" + strings.Repeat("U", 20)
	unknownAnthropic := "sk-ant-admin01-" + strings.Repeat("V", 20)
	cases := map[string]struct {
		data      map[string]any
		fragments []string
	}{
		"openai model key":     {map[string]any{"openai_admin_key": openAIKey("adm1")}, []string{`openai_admin_key does not look like an admin key: it must start with "sk-admin-"`}},
		"anthropic model key":  {map[string]any{"anthropic_admin_key": anthropicKey("adm2")}, []string{`anthropic_admin_key does not look like an admin key: it must start with "sk-ant-admin"`}},
		"prefix only":          {map[string]any{"openai_admin_key": "sk-admin-"}, []string{"does not look like an admin key"}},
		"white space":          {map[string]any{"openai_admin_key": "sk-admin-abc def"}, []string{"white space"}},
		"openai rejects it":    {map[string]any{"openai_admin_key": unknownOpenAI}, []string{"the openai Admin API rejected openai_admin_key (HTTP 401)", "nothing was saved"}},
		"anthropic rejects it": {map[string]any{"anthropic_admin_key": unknownAnthropic}, []string{"the anthropic Admin API rejected anthropic_admin_key (HTTP 401)", "nothing was saved"}},
		"both unknown":         {map[string]any{"openai_admin_key": "sk-admin-" + strings.Repeat("W", 20), "anthropic_admin_key": unknownAnthropic}, []string{"rejected"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			for _, v := range tc.data {
				e.trackSecret(v.(string))
			}
			e.mustBadRequest(logical.UpdateOperation, "config", tc.data, tc.fragments...)
			got := e.mustOK(logical.ReadOperation, "config", nil).Data
			if got["openai_admin_key_set"] != false || got["anthropic_admin_key_set"] != false {
				t.Fatalf("a refused write saved something: %v", got)
			}
		})
	}

	e := newTestEnv(t, nil)
	e.emu.AddAdminKey(emulator.ProviderOpenAI, testOpenAIAdminKey)
	e.emu.AddAdminKey(emulator.ProviderAnthropic, testAnthropicAdminKey)
	e.trackSecret(testOpenAIAdminKey)
	e.trackSecret(testAnthropicAdminKey)
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"openai_admin_key": testOpenAIAdminKey + "\n", "anthropic_admin_key": testAnthropicAdminKey})
	got := e.mustOK(logical.ReadOperation, "config", nil).Data
	if got["openai_admin_key_set"] != true || got["anthropic_admin_key_set"] != true {
		t.Fatalf("read: %v", got)
	}
	for field, v := range got {
		if s, ok := v.(string); ok && strings.Contains(s, "admin") && strings.HasPrefix(s, "sk-") {
			t.Fatalf("%s returns an admin key", field)
		}
	}
	if cfg, _ := getConfig(t.Context(), e.storage); cfg.OpenAIAdminKey != testOpenAIAdminKey {
		t.Fatal("the admin key was not stored trimmed")
	}
	// A write without the admin keys keeps them and does not check them.
	e.emu.Revoke(testOpenAIAdminKey)
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"creds_ttl": "2h"})
	// A provider that fails (not refuses) is a server error; nothing saved.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/anthropic/v1/organizations/api_keys", Status: 500, Count: platform.MaxAttempts})
	e.mustServerError(logical.UpdateOperation, "config", map[string]any{"anthropic_admin_key": testAnthropicAdminKey, "creds_ttl": "3h"}, "nothing was saved")
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data; got["creds_ttl"] != int64(7200) {
		t.Fatalf("a failed check saved the write: %v", got)
	}
	// "" removes a key.
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"openai_admin_key": ""})
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data; got["openai_admin_key_set"] != false || got["anthropic_admin_key_set"] != true {
		t.Fatalf("after removing: %v", got)
	}
}

// Retiring Anthropic keys needs the Anthropic admin key on config.
func TestConfig_RetirePreviousNeedsTheAdminKey(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustBadRequest(logical.CreateOperation, "keys/no-admin", map[string]any{
		"provider": "anthropic", "api_key": anthropicKey("noadm"), "retire_previous": true,
	}, "write anthropic_admin_key to config first")
	e.mustBadRequest(logical.CreateOperation, "keys/no-admin", map[string]any{
		"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_default",
	}, "write openai_admin_key to config first")
}
