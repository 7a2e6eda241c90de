package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// newAgentEnv is a configured mount and one deployed agent on the platform.
func newAgentEnv(t *testing.T) (e *testEnv, agentUUID, agentURL string) {
	t.Helper()
	e = newTestEnv(t, nil)
	a := e.createAgent("support-bot", "", "")
	if a.Deployment == nil || a.Deployment.Url == "" {
		t.Fatalf("the emulator's agent has no deployment url: %+v", a)
	}
	return e, a.Uuid, a.Deployment.Url
}

func TestAgentRoles_WriteReadListDelete(t *testing.T) {
	e, agent, url := newAgentEnv(t)
	resp := e.mustOK(logical.CreateOperation, "agent-roles/team-a-bot", map[string]any{"agent_uuid": agent})
	want := map[string]any{"name": "team-a-bot", "agent_uuid": agent, "agent_name": "support-bot", "agent_url": url,
		"ttl": int64(3600), "max_ttl": int64(86400), "max_leases": 100, "live_leases": 0}
	for k, v := range want {
		if resp.Data[k] != v {
			t.Errorf("%s = %#v, want %#v", k, resp.Data[k], v)
		}
	}
	if n := e.emu.Counts()["GET /v2/gen-ai/agents/{uuid}"]; n != 1 {
		t.Errorf("agent checked with %d GETs, want 1", n)
	}
	// An update keeps what it leaves out.
	e.mustOK(logical.UpdateOperation, "agent-roles/team-a-bot", map[string]any{"ttl": "10m", "max_leases": 3})
	got := e.mustOK(logical.ReadOperation, "agent-roles/team-a-bot", nil).Data
	if got["ttl"] != int64(600) || got["max_ttl"] != int64(86400) || got["max_leases"] != 3 || got["agent_uuid"] != agent {
		t.Fatalf("after update: %v", got)
	}
	if keys := e.mustOK(logical.ListOperation, "agent-roles/", nil).Data["keys"].([]string); len(keys) != 1 || keys[0] != "team-a-bot" {
		t.Fatalf("list = %v", keys)
	}
	e.mustOK(logical.DeleteOperation, "agent-roles/team-a-bot", nil)
	if resp, err := e.request(logical.ReadOperation, "agent-roles/team-a-bot", nil); resp != nil || err != nil {
		t.Fatalf("read after delete: %v %v", resp, err)
	}
}

func TestAgentRoles_Refusals(t *testing.T) {
	e, agent, _ := newAgentEnv(t)
	cases := map[string]struct {
		path string
		data map[string]any
		want string
	}{
		"bad name":            {"agent-roles/Team_A", map[string]any{"agent_uuid": agent}, "invalid key name"},
		"no agent_uuid":       {"agent-roles/r", map[string]any{}, "agent_uuid is required"},
		"not a uuid":          {"agent-roles/r", map[string]any{"agent_uuid": "support-bot"}, "agent_uuid is not an agent uuid"},
		"uuid without dashes": {"agent-roles/r", map[string]any{"agent_uuid": "0f8fad5bd9cb469fa16570867728950e"}, "8-4-4-4-12"},
		"uuid in braces":      {"agent-roles/r", map[string]any{"agent_uuid": "{0f8fad5b-d9cb-469f-a165-70867728950e}"}, "8-4-4-4-12"},
		"unknown agent":       {"agent-roles/r", map[string]any{"agent_uuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}, "there is no agent 0f8fad5b-d9cb-469f-a165-70867728950e"},
		"ttl above max_ttl":   {"agent-roles/r", map[string]any{"agent_uuid": agent, "ttl": "2h", "max_ttl": "1h"}, "max_ttl"},
		"zero max_leases":     {"agent-roles/r", map[string]any{"agent_uuid": agent, "max_leases": 0}, "max_leases must be between 1"},
		"unknown field":       {"agent-roles/r", map[string]any{"agent_uuid": agent, "max_lease": 3}, `unknown field "max_lease"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e.mustBadRequest(logical.CreateOperation, tc.path, tc.data, tc.want)
		})
	}
	if keys, _ := e.storage.List(context.Background(), agentRolePrefix); len(keys) != 0 {
		t.Fatalf("a refused write stored a role: %v", keys)
	}
}
