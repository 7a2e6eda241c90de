package backend

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func TestAgents_ListsEveryPage(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.SetRateLimits(10000, 100000)
	e.mustOK(logical.CreateOperation, "keys/popular", map[string]any{"provider": "openai", "api_key": openAIKey("popular")})
	uuid := e.platformKeyNamed(platform.OpenAI, "popular").UUID
	// More than one page of the platform's largest page size.
	const n = platform.MaxPageSize + 5
	want := map[string]string{}
	for i := range n {
		a := e.createAgent(fmt.Sprintf("agent-%03d", i), platform.OpenAI, uuid)
		want[a.Uuid] = a.Name
	}

	resp := e.mustOK(logical.ReadOperation, "keys/popular/agents", nil)
	agents := resp.Data["agents"].([]map[string]any)
	if len(agents) != n {
		t.Fatalf("got %d agents, want %d", len(agents), n)
	}
	for _, a := range agents {
		if want[a["uuid"].(string)] != a["name"] {
			t.Fatalf("unexpected agent %v", a)
		}
	}
	if pages := e.emu.Counts()["GET /v2/gen-ai/openai/keys/{uuid}/agents"]; pages != 2 {
		t.Fatalf("listed %d pages, want 2", pages)
	}
}

func TestAgents_UnknownKey(t *testing.T) {
	e := newTestEnv(t, nil)
	if resp, err := e.request(logical.ReadOperation, "keys/nothing/agents", nil); resp != nil || err != nil {
		t.Fatalf("agents of a missing key: %v %v", resp, err)
	}
}

func TestReassign_MovesAgents(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/old", map[string]any{"provider": "anthropic", "api_key": anthropicKey("old")})
	e.mustOK(logical.CreateOperation, "keys/new", map[string]any{"provider": "anthropic", "api_key": anthropicKey("new")})
	oldUUID := e.platformKeyNamed(platform.Anthropic, "old").UUID
	newUUID := e.platformKeyNamed(platform.Anthropic, "new").UUID
	a1 := e.createAgent("first", platform.Anthropic, oldUUID)
	a2 := e.createAgent("second", platform.Anthropic, oldUUID)
	bystander := e.createAgent("bystander", platform.Anthropic, newUUID)

	resp := e.mustOK(logical.UpdateOperation, "keys/old/reassign", map[string]any{"to": "new"})
	moved := resp.Data["moved"].([]map[string]any)
	if len(moved) != 2 || resp.Data["to"] != "new" {
		t.Fatalf("reassign response = %v", resp.Data)
	}
	for _, id := range []string{a1.Uuid, a2.Uuid, bystander.Uuid} {
		if anthropic, _ := e.agentKey(id); anthropic != newUUID {
			t.Fatalf("agent %s uses %s, want %s", id, anthropic, newUUID)
		}
	}
	// Other fields of the agents are untouched.
	for _, a := range e.state().Agents {
		if a.Instruction != "answer questions" || a.ModelUUID != "model-1" || a.Region != "tor1" {
			t.Fatalf("agent changed beyond its key: %+v", a)
		}
	}
	if agents := e.mustOK(logical.ReadOperation, "keys/old/agents", nil).Data["agents"].([]map[string]any); len(agents) != 0 {
		t.Fatalf("old key still has agents: %v", agents)
	}
}

func TestReassign_Refusals(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/claude", map[string]any{"provider": "anthropic", "api_key": anthropicKey("claude")})
	e.mustOK(logical.CreateOperation, "keys/gpt", map[string]any{"provider": "openai", "api_key": openAIKey("gpt")})
	agent := e.createAgent("bot", platform.Anthropic, e.platformKeyNamed(platform.Anthropic, "claude").UUID)

	cases := map[string]struct {
		path     string
		data     map[string]any
		fragment string
	}{
		"missing to":     {"keys/claude/reassign", map[string]any{}, "to is required"},
		"same key":       {"keys/claude/reassign", map[string]any{"to": "claude"}, "same key"},
		"unmanaged to":   {"keys/claude/reassign", map[string]any{"to": "nobody"}, "no key named \"nobody\""},
		"other provider": {"keys/claude/reassign", map[string]any{"to": "gpt"}, "same provider"},
		"missing from":   {"keys/nobody/reassign", map[string]any{"to": "claude"}, "no key named \"nobody\""},
		"bad to":         {"keys/claude/reassign", map[string]any{"to": "Bad Name"}, nameRule},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e.mustBadRequest(logical.UpdateOperation, tc.path, tc.data, tc.fragment)
			if anthropic, _ := e.agentKey(agent.Uuid); anthropic != e.platformKeyNamed(platform.Anthropic, "claude").UUID {
				t.Fatal("a refused reassign moved the agent")
			}
		})
	}
}

// If one agent cannot be moved, the ones already moved go back.
func TestReassign_PartialFailureMovesAgentsBack(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/from", map[string]any{"provider": "openai", "api_key": openAIKey("from")})
	e.mustOK(logical.CreateOperation, "keys/to", map[string]any{"provider": "openai", "api_key": openAIKey("to")})
	fromUUID := e.platformKeyNamed(platform.OpenAI, "from").UUID
	var ids []string
	for i := range 3 {
		ids = append(ids, e.createAgent(fmt.Sprintf("agent-%d", i), platform.OpenAI, fromUUID).Uuid)
	}
	// The first switch succeeds, the second fails.
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/" + ids[1], Status: 500, Count: platform.MaxAttempts})

	e.mustServerError(logical.UpdateOperation, "keys/from/reassign", map[string]any{"to": "to"}, "after 1 of 3", "moved back")
	for _, id := range ids {
		if _, openai := e.agentKey(id); openai != fromUUID {
			t.Fatalf("agent %s left on %s after a failed reassign", id, openai)
		}
	}
}

// driftingPlatform is the real platform client, except that a key switch
// comes back with the agent renamed: the case the platform's unconfirmed
// PUT semantics could produce, which the emulator (keeping every field)
// never does.
type driftingPlatform struct{ platform.Client }

func (p driftingPlatform) SetAgentKey(ctx context.Context, provider, agentUUID, keyUUID string) (platform.Agent, error) {
	a, err := p.Client.SetAgentKey(ctx, provider, agentUUID, keyUUID)
	a.Name += "-renamed"
	return a, err
}

func TestReassign_ReportsOtherFieldsThatChanged(t *testing.T) {
	e := newTestEnv(t, nil)
	e.b.buildClients = func(cfg *gradientConfig) (*clients, error) {
		c, err := newClients(cfg, e.b.budget, e.b.tuning.retryBaseDelay, nil)
		if err == nil {
			c.platform = driftingPlatform{c.platform}
		}
		return c, err
	}
	e.b.dropClients()
	e.mustOK(logical.CreateOperation, "keys/drift-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("driftfrom")})
	e.mustOK(logical.CreateOperation, "keys/drift-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("driftto")})
	agent := e.createAgent("watched", platform.Anthropic, e.platformKeyNamed(platform.Anthropic, "drift-from").UUID)

	resp := e.mustOK(logical.UpdateOperation, "keys/drift-from/reassign", map[string]any{"to": "drift-to"})
	if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], agent.Uuid) || !strings.Contains(resp.Warnings[0], "changed name") {
		t.Fatalf("warnings = %v, want one naming the agent and the changed field", resp.Warnings)
	}
	if !strings.Contains(e.logs.String(), "agent fields changed by a key switch") {
		t.Fatal("the drift was not logged")
	}
}

// A switch the platform applied but never answered is moved back with the
// rest, and the error says where every agent is.
func TestReassign_SwitchAppliedButUnansweredIsMovedBack(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/lost-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("lostfrom")})
	e.mustOK(logical.CreateOperation, "keys/lost-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("lostto")})
	fromUUID := e.platformKeyNamed(platform.Anthropic, "lost-from").UUID
	var ids []string
	for i := range 3 {
		ids = append(ids, e.createAgent(fmt.Sprintf("lost-%d", i), platform.Anthropic, fromUUID).Uuid)
	}
	// The switch is applied but its answer lost, and every retry fails.
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/" + ids[1], Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/" + ids[1], Status: 503, Count: platform.MaxAttempts - 1})

	msg := e.mustServerError(logical.UpdateOperation, "keys/lost-from/reassign", map[string]any{"to": "lost-to"}, "after 1 of 3", "moved back", `on "lost-from"`)
	for _, id := range ids {
		if anthropic, _ := e.agentKey(id); anthropic != fromUUID {
			t.Fatalf("agent %s stranded on %s; the error said: %s", id, anthropic, msg)
		}
		if !strings.Contains(msg, id) {
			t.Errorf("the error does not say where agent %s is: %s", id, msg)
		}
	}
	assertSettlesOnRollback(t, e)
}

// A refused switch (4xx) keeps its context: which agent, after how many, and
// where every agent is now.
func TestReassign_RefusedSwitchKeepsTheWholeMessage(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/ref-from", map[string]any{"provider": "openai", "api_key": openAIKey("reffrom")})
	e.mustOK(logical.CreateOperation, "keys/ref-to", map[string]any{"provider": "openai", "api_key": openAIKey("refto")})
	fromUUID := e.platformKeyNamed(platform.OpenAI, "ref-from").UUID
	var ids []string
	for i := range 2 {
		ids = append(ids, e.createAgent(fmt.Sprintf("ref-%d", i), platform.OpenAI, fromUUID).Uuid)
	}
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/" + ids[1], Status: 422})
	e.mustBadRequest(logical.UpdateOperation, "keys/ref-from/reassign", map[string]any{"to": "ref-to"}, "failed after 1 of 2", "HTTP 422", `on "ref-from"`, ids[0], ids[1])
	for _, id := range ids {
		if _, openai := e.agentKey(id); openai != fromUUID {
			t.Fatalf("agent %s left on %s", id, openai)
		}
	}
}

// Reassign from a key deleted outside Vault: a 400 that says so and how to
// recover, as agents answers.
func TestReassign_FromKeyDeletedOutsideVault(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/gone-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("gonefrom")})
	e.mustOK(logical.CreateOperation, "keys/gone-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("goneto")})
	if _, _, err := e.do.AgentPlatform.DeleteAnthropicAPIKey(t.Context(), e.platformKeyNamed(platform.Anthropic, "gone-from").UUID); err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.UpdateOperation, "keys/gone-from/reassign", map[string]any{"to": "gone-to"}, "no longer exists", "write it again")
	e.mustBadRequest(logical.ReadOperation, "keys/gone-from/agents", nil, "no longer exists", "write it again")
}

// The field name reaches the caller: a bad "to" says it was "to".
func TestReassign_BadToNamesTheField(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/field-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("fieldfrom")})
	e.mustBadRequest(logical.UpdateOperation, "keys/field-from/reassign", map[string]any{"to": "Bad_Name"}, "to: invalid key name", "a key name is 1 to 64")
}

// A reassign to a key deleted outside Vault fails, says where the agents
// are, and leaves them on their key.
func TestReassign_ToKeyDeletedOutsideVaultSaysWhereAgentsAre(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/tg-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("tgfrom")})
	e.mustOK(logical.CreateOperation, "keys/tg-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("tgto")})
	agent := e.createAgent("tg-agent", platform.Anthropic, e.platformKeyNamed(platform.Anthropic, "tg-from").UUID)
	if _, _, err := e.do.AgentPlatform.DeleteAnthropicAPIKey(t.Context(), e.platformKeyNamed(platform.Anthropic, "tg-to").UUID); err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.UpdateOperation, "keys/tg-from/reassign", map[string]any{"to": "tg-to"}, `on "tg-from"`)
	if anth, _ := e.agentKey(agent.Uuid); anth != e.platformKeyNamed(platform.Anthropic, "tg-from").UUID {
		t.Fatal("the agent left its key")
	}
}
