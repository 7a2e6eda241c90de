package emulator_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/digitalocean/godo"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func agentRequest(name string) *godo.AgentCreateRequest {
	return &godo.AgentCreateRequest{
		Name: name, Instruction: "be helpful", ModelUuid: "model-1",
		Region: "tor1", ProjectId: "project-1",
	}
}

func agentUUIDs(agents []*godo.Agent) []string {
	var ids []string
	for _, a := range agents {
		ids = append(ids, a.Uuid)
	}
	return ids
}

func TestAgentsFollowTheirKeys(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	a1, _ := e.createKey(t, anthropicProvider, "a1")
	a2, _ := e.createKey(t, anthropicProvider, "a2")
	o1, _ := e.createKey(t, openAIProvider, "o1")

	req := agentRequest("support")
	req.AnthropicKeyUuid, req.OpenAiKeyUuid = a1, o1
	created, _, err := c.AgentPlatform.CreateAgent(ctx, req)
	mustOK(t, err)
	if !uuidV4.MatchString(created.Uuid) || created.Name != "support" || created.Model == nil || created.Model.Uuid != "model-1" ||
		created.AnthropicApiKey == nil || created.AnthropicApiKey.Uuid != a1 || created.CreatedAt == nil {
		t.Fatalf("created agent = %+v", created)
	}
	other, _, err := c.AgentPlatform.CreateAgent(ctx, agentRequest("no-keys"))
	mustOK(t, err)

	// The spec's field names, which godo's Agent does not use for OpenAI.
	raw := e.platform(t, http.MethodGet, "/v2/gen-ai/agents/"+created.Uuid, nil).json(t)["agent"].(map[string]any)
	if raw["openai_api_key"].(map[string]any)["uuid"] != o1 || raw["anthropic_api_key"].(map[string]any)["uuid"] != a1 {
		t.Errorf("raw agent = %v", raw)
	}
	if _, ok := raw["open_ai_api_key"]; ok {
		t.Errorf("agent carries godo's open_ai_api_key spelling")
	}
	rawOther := e.platform(t, http.MethodGet, "/v2/gen-ai/agents/"+other.Uuid, nil).json(t)["agent"].(map[string]any)
	if _, ok := rawOther["anthropic_api_key"]; ok {
		t.Errorf("agent without keys embeds one: %v", rawOther)
	}

	byKey := func(p provider, id string) []string {
		t.Helper()
		agents, _, err := p.agents(ctx, c, id, nil)
		mustOK(t, err)
		return agentUUIDs(agents)
	}
	if got := byKey(anthropicProvider, a1); len(got) != 1 || got[0] != created.Uuid {
		t.Errorf("agents using a1 = %v", got)
	}
	if got := byKey(anthropicProvider, a2); len(got) != 0 {
		t.Errorf("agents using a2 = %v", got)
	}
	if got := byKey(openAIProvider, o1); len(got) != 1 {
		t.Errorf("agents using o1 = %v", got)
	}

	// Switch the key alone: every other field is kept.
	updated, _, err := c.AgentPlatform.UpdateAgent(ctx, created.Uuid, &godo.AgentUpdateRequest{AnthropicKeyUuid: a2})
	mustOK(t, err)
	if updated.AnthropicApiKey == nil || updated.AnthropicApiKey.Uuid != a2 || !updated.UpdatedAt.After(created.UpdatedAt.Time) {
		t.Errorf("updated = %+v", updated)
	}
	want := emulator.AgentState{
		UUID: created.Uuid, Name: "support", AnthropicKeyUUID: a2, OpenAIKeyUUID: o1,
		Instruction: "be helpful", ModelUUID: "model-1", Region: "tor1", ProjectID: "project-1",
	}
	if got := e.emu.State().Agents[0]; got != want {
		t.Errorf("after switch: %+v, want %+v", got, want)
	}
	if got := byKey(anthropicProvider, a1); len(got) != 0 {
		t.Errorf("a1 still in use by %v", got)
	}
	if got := byKey(anthropicProvider, a2); len(got) != 1 {
		t.Errorf("agents using a2 = %v", got)
	}

	// Deleting a key in use is allowed and leaves the agent without it.
	_, _, err = c.AgentPlatform.DeleteAnthropicAPIKey(ctx, a2)
	mustOK(t, err)
	got, _, err := c.AgentPlatform.GetAgent(ctx, created.Uuid)
	mustOK(t, err)
	if got.AnthropicApiKey != nil || got.Name != "support" {
		t.Errorf("agent after key delete = %+v", got)
	}
	want.AnthropicKeyUUID = ""
	if s := e.emu.State().Agents[0]; s != want {
		t.Errorf("state after key delete = %+v", s)
	}

	all, resp, err := c.AgentPlatform.ListAgents(ctx, &godo.ListOptions{PerPage: 1})
	mustOK(t, err)
	if len(all) != 1 || all[0].Uuid != created.Uuid || resp.Meta.Total != 2 || resp.Links.IsLastPage() {
		t.Errorf("agents page 1 = %v, meta %+v", agentUUIDs(all), resp.Meta)
	}

	deleted, _, err := c.AgentPlatform.DeleteAgent(ctx, created.Uuid)
	mustOK(t, err)
	if deleted.Uuid != created.Uuid {
		t.Errorf("deleted = %+v", deleted)
	}
	_, _, err = c.AgentPlatform.GetAgent(ctx, created.Uuid)
	apiError(t, err, http.StatusNotFound)
	if got := byKey(openAIProvider, o1); len(got) != 0 {
		t.Errorf("deleted agent still listed by key: %v", got)
	}
}

func TestAgentValidation(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	a1, _ := e.createKey(t, anthropicProvider, "a1")
	o1, _ := e.createKey(t, openAIProvider, "o1")
	full := map[string]string{"name": "n", "instruction": "i", "model_uuid": "m", "region": "tor1", "project_id": "p"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range full {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	created := e.platform(t, http.MethodPost, "/v2/gen-ai/agents", full)
	if created.status != http.StatusOK {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	agentPath := "/v2/gen-ai/agents/" + created.json(t)["agent"].(map[string]any)["uuid"].(string)

	tests := map[string]struct {
		method, path string
		body         any
		status       int
		message      string
	}{
		"no name":                  {"POST", "/v2/gen-ai/agents", with("name", ""), 400, "name is required"},
		"no instruction":           {"POST", "/v2/gen-ai/agents", with("instruction", ""), 400, "instruction is required"},
		"no model":                 {"POST", "/v2/gen-ai/agents", with("model_uuid", ""), 400, "model_uuid is required"},
		"no region":                {"POST", "/v2/gen-ai/agents", with("region", ""), 400, "region is required"},
		"no project":               {"POST", "/v2/gen-ai/agents", with("project_id", ""), 400, "project_id is required"},
		"unknown anthropic key":    {"POST", "/v2/gen-ai/agents", with("anthropic_key_uuid", "nope"), 400, "anthropic_key_uuid does not refer to an Anthropic key"},
		"openai uuid as anthropic": {"POST", "/v2/gen-ai/agents", with("anthropic_key_uuid", o1), 400, "anthropic_key_uuid does not refer to an Anthropic key"},
		"anthropic uuid as openai": {"PUT", agentPath, map[string]string{"open_ai_key_uuid": a1}, 400, "open_ai_key_uuid does not refer to an OpenAI key"},
		"update unknown key":       {"PUT", agentPath, map[string]string{"anthropic_key_uuid": "nope"}, 400, "anthropic_key_uuid does not refer to an Anthropic key"},
		"update uuid mismatch":     {"PUT", agentPath, map[string]string{"uuid": "other"}, 400, "uuid does not match the agent in the path"},
		"update unknown agent":     {"PUT", "/v2/gen-ai/agents/nope", map[string]string{"name": "x"}, 404, "The resource you were accessing could not be found."},
		"delete unknown agent":     {"DELETE", "/v2/gen-ai/agents/nope", nil, 404, "The resource you were accessing could not be found."},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.platform(t, tc.method, tc.path, tc.body)
			if m := r.json(t); r.status != tc.status || m["message"] != tc.message {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}
	if s := e.emu.State(); len(s.Agents) != 1 || s.Agents[0].Name != "n" || s.Agents[0].AnthropicKeyUUID != "" {
		t.Errorf("rejected requests changed agents: %+v", s.Agents)
	}
}
