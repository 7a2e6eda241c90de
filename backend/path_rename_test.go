package backend

import (
	"slices"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func TestRename(t *testing.T) {
	e := newTestEnv(t, nil)
	secret := anthropicKey("ren")
	e.mustOK(logical.CreateOperation, "keys/team-a-bot", map[string]any{"provider": "anthropic", "api_key": secret, "description": "bot"})
	uuid := e.platformKeyNamed(platform.Anthropic, "team-a-bot").UUID
	agent := e.createAgent("bot", platform.Anthropic, uuid)

	resp := e.mustOK(logical.UpdateOperation, "rename/team-a-bot", map[string]any{"new_name": "team-b-bot"})
	if resp.Data["name"] != "team-b-bot" || resp.Data["uuid"] != uuid || resp.Data["version"] != 1 || resp.Data["description"] != "bot" {
		t.Fatalf("rename response = %v", resp.Data)
	}
	if pk := e.platformKeyNamed(platform.Anthropic, "team-b-bot"); pk == nil || pk.UUID != uuid || pk.Secret != secret {
		t.Fatalf("platform after rename: %+v", e.state().AnthropicKeys)
	}
	if got, _ := e.request(logical.ReadOperation, "keys/team-a-bot", nil); got != nil {
		t.Fatal("old name still reads")
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/team-b-bot", nil); creds.Data["api_key"] != secret {
		t.Fatal("creds lost in rename")
	}
	if anthropic, _ := e.agentKey(agent.Uuid); anthropic != uuid {
		t.Fatal("agent lost its key in a rename")
	}
	if got := e.listKeys(); !slices.Equal(got, []string{"team-b-bot"}) {
		t.Fatalf("list = %v", got)
	}
}

func TestRename_Refusals(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/one", map[string]any{"provider": "openai", "api_key": openAIKey("one")})
	e.mustOK(logical.CreateOperation, "keys/two", map[string]any{"provider": "openai", "api_key": openAIKey("two")})

	cases := map[string]struct {
		path     string
		data     map[string]any
		fragment string
	}{
		"existing target": {"rename/one", map[string]any{"new_name": "two"}, "already exists"},
		"bad new name":    {"rename/one", map[string]any{"new_name": "Has Spaces"}, nameRule},
		"sk- new name":    {"rename/one", map[string]any{"new_name": "sk-one"}, `starts with "sk-"`},
		"missing new":     {"rename/one", map[string]any{}, "new_name is required"},
		"same name":       {"rename/one", map[string]any{"new_name": "one"}, "current name"},
		"missing source":  {"rename/three", map[string]any{"new_name": "four"}, "no key named"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e.mustBadRequest(logical.UpdateOperation, tc.path, tc.data, tc.fragment)
			if got := e.listKeys(); !slices.Equal(got, []string{"one", "two"}) {
				t.Fatalf("vault changed: %v", got)
			}
			if e.platformKeyNamed(platform.OpenAI, "one") == nil || e.platformKeyNamed(platform.OpenAI, "two") == nil {
				t.Fatal("platform changed")
			}
		})
	}
}

func TestRename_StorageFailureRenamesBack(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/before", map[string]any{"provider": "openai", "api_key": openAIKey("before")})
	// The create's own rename (from its provisional name) is not counted.
	created := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"]
	e.storage.failUnder("keys/")
	e.mustServerError(logical.UpdateOperation, "rename/before", map[string]any{"new_name": "after"}, "injected storage failure")
	e.storage.failUnder("")
	if n := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"] - created; n != 2 {
		t.Fatalf("platform renames = %d, want 2 (there and back)", n)
	}
	if e.platformKeyNamed(platform.OpenAI, "before") == nil {
		t.Fatalf("platform name not restored: %+v", e.state().OpenAIKeys)
	}
	if got := e.listKeys(); !slices.Equal(got, []string{"before"}) {
		t.Fatalf("vault = %v", got)
	}
	assertNoWAL(t, e)
}

func TestRename_PlatformFailure(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/stay", map[string]any{"provider": "anthropic", "api_key": anthropicKey("stay")})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 502, Count: platform.MaxAttempts})
	e.mustServerError(logical.UpdateOperation, "rename/stay", map[string]any{"new_name": "moved"}, "HTTP 502")
	if e.platformKeyNamed(platform.Anthropic, "stay") == nil || !slices.Equal(e.listKeys(), []string{"stay"}) {
		t.Fatal("a failed rename changed something")
	}
}
