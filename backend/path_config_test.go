package backend

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func TestConfig_ReadNeverReturnsToken(t *testing.T) {
	e := newTestEnv(t, map[string]any{"name_cache_ttl": "0s", "request_timeout": "5s"})
	resp := e.mustOK(logical.ReadOperation, "config", nil)
	if _, ok := resp.Data["token"]; ok {
		t.Fatalf("config read returned the token: %v", resp.Data)
	}
	want := map[string]any{
		"api_url": e.srv.URL, "anthropic_url": e.srv.URL + "/anthropic", "openai_url": e.srv.URL + "/openai",
		"verify_keys": true, "request_timeout": int64(5), "name_cache_ttl": int64(0), "token_set": true,
	}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("%s = %#v, want %#v", k, resp.Data[k], v)
		}
	}
}

func TestConfig_UnconfiguredMount(t *testing.T) {
	emu := emulator.New(emulator.Config{})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := newUnconfiguredEnv(t, emu, srv)

	resp, err := e.request(logical.ReadOperation, "config", nil)
	if err != nil || resp != nil {
		t.Fatalf("unconfigured read: want no response (404), got resp=%v err=%v", resp, err)
	}
	e.mustBadRequest(logical.CreateOperation, "keys/first", map[string]any{
		"provider": "anthropic", "api_key": anthropicKey("unconf"),
	}, "not configured", "gradient/config")
	if n := len(e.state().AnthropicKeys); n != 0 {
		t.Fatalf("platform has %d keys", n)
	}
}

func TestConfig_WriteIsValidatedAndChecked(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	cases := map[string]struct {
		data     map[string]any
		fragment string
	}{
		"no token":             {map[string]any{"api_url": srv.URL}, "token is required"},
		"rejected token":       {map[string]any{"token": "wrong-token-0123456789", "api_url": srv.URL}, "rejected the token (HTTP 401)"},
		"ftp url":              {map[string]any{"token": testToken, "api_url": "ftp://example.com"}, "api_url must be an absolute http or https URL"},
		"relative url":         {map[string]any{"token": testToken, "openai_url": "/v1"}, "openai_url must be an absolute"},
		"user info":            {map[string]any{"token": testToken, "anthropic_url": "https://user:pass@example.com"}, "must not contain user info"},
		"negative cache ttl":   {map[string]any{"token": testToken, "api_url": srv.URL, "name_cache_ttl": "-5s"}, "name_cache_ttl"},
		"zero request timeout": {map[string]any{"token": testToken, "api_url": srv.URL, "request_timeout": "0s"}, "request_timeout must be positive"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newUnconfiguredEnv(t, emu, srv)
			e.mustBadRequest(logical.UpdateOperation, "config", tc.data, tc.fragment)
			if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
				t.Fatalf("a refused config write saved something: %v", resp.Data)
			}
		})
	}
}

func TestConfig_PlatformDownSavesNothing(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := newUnconfiguredEnv(t, emu, srv)
	emu.InjectFault(emulator.Fault{Path: "/v2/gen-ai", Status: 503, Count: platform.MaxAttempts})

	e.mustServerError(logical.UpdateOperation, "config", map[string]any{"token": testToken, "api_url": srv.URL}, "HTTP 503", "nothing was saved")
	if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
		t.Fatalf("config saved despite the failed token check")
	}
}

func TestConfig_UpdateKeepsTokenAndSwitchesClient(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/before-switch", map[string]any{"provider": "anthropic", "api_key": anthropicKey("switch1")})

	// A second platform; an update without token keeps the stored one, which
	// the second emulator also accepts.
	other := emulator.New(emulator.Config{Tokens: []string{testToken}})
	otherSrv := httptest.NewServer(other)
	t.Cleanup(otherSrv.Close)
	e.mustOK(logical.UpdateOperation, "config", map[string]any{
		"api_url": otherSrv.URL, "anthropic_url": otherSrv.URL + "/anthropic",
	})
	e.mustOK(logical.CreateOperation, "keys/after-switch", map[string]any{"provider": "anthropic", "api_key": anthropicKey("switch2")})

	if n := len(other.State().AnthropicKeys); n != 1 {
		t.Fatalf("the new platform has %d keys, want 1: the cached client was not dropped", n)
	}
	if n := len(e.state().AnthropicKeys); n != 1 {
		t.Fatalf("the old platform has %d keys, want 1", n)
	}
}

func TestConfig_InvalidateDropsCachedClient(t *testing.T) {
	e := newTestEnv(t, nil)
	first, err := e.b.clients(t.Context(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	e.b.invalidate(t.Context(), "keys/unrelated")
	if again, _ := e.b.clients(t.Context(), e.storage); again != first {
		t.Fatal("an unrelated invalidation dropped the client")
	}
	e.b.invalidate(t.Context(), configPath)
	if again, _ := e.b.clients(t.Context(), e.storage); again == first {
		t.Fatal("invalidating config kept the old client")
	}
}

func TestConfig_Delete(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.DeleteOperation, "config", nil)
	if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
		t.Fatal("config still readable after delete")
	}
	e.mustBadRequest(logical.CreateOperation, "keys/after-delete", map[string]any{"provider": "openai", "api_key": openAIKey("cfgdel")}, "not configured")
}

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
