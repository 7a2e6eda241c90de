package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// A single page with links (first only, as godo's test data shows) and one
// without (as the reference's prose allows) both list everything, for the
// sync's key listings and the agents-by-key listing.
func TestPlatformListings_AcceptBothSinglePageShapes(t *testing.T) {
	for name, omit := range map[string]bool{"links with first": false, "no links": true} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			e.emu.OmitSinglePageLinks(omit)
			uuid := e.createManaged("one", anthropicKey("shape-1"))
			e.createManaged("two", anthropicKey("shape-2"))
			agent := e.createAgent("helper", platform.Anthropic, uuid)
			listings := e.emu.Counts()["GET /v2/gen-ai/anthropic/keys"]
			wantCounts(t, e.sync(), map[string]int{"in_sync": 2, "missing": 0})
			if n := e.emu.Counts()["GET /v2/gen-ai/anthropic/keys"] - listings; n != 1 {
				t.Errorf("the sync listed %d pages of Anthropic keys, want 1", n)
			}
			agents := e.mustOK(logical.ReadOperation, "keys/one/agents", nil).Data["agents"].([]map[string]any)
			if len(agents) != 1 || agents[0]["uuid"] != agent.Uuid {
				t.Fatalf("agents = %v", agents)
			}
		})
	}
}

// A listing that ends short of meta.total is an error, never a shorter
// list: the sync records nothing (a key left out is not "missing", and no
// repair re-creates it).
func TestSync_KeyListingShortOfMetaTotalIsAnError(t *testing.T) {
	e := newTestEnv(t, nil)
	e.createManaged("one", anthropicKey("short-1"))
	e.createManaged("two", anthropicKey("short-2"))
	before := e.state()
	e.emu.InjectFault(emulator.Fault{Method: http.MethodGet, Path: "/v2/gen-ai/anthropic/keys", Mode: "short"})
	e.mustServerError(logical.UpdateOperation, "sync", nil, "meta.total", "nothing was recorded")
	if after := e.state(); len(after.AnthropicKeys) != len(before.AnthropicKeys) {
		t.Fatalf("platform keys %d -> %d", len(before.AnthropicKeys), len(after.AnthropicKeys))
	}
	for _, name := range []string{"one", "two"} {
		if status, _ := e.syncStatus(name); status == syncMissing {
			t.Errorf("%s marked missing after a short listing", name)
		}
	}
	wantCounts(t, e.sync(), map[string]int{"in_sync": 2, "missing": 0})
}

// A delete without force refuses while agents use the key; an agents
// listing that ends short of meta.total must not make the key look unused.
func TestKeyDelete_AgentListingShortOfMetaTotalDeletesNothing(t *testing.T) {
	e := newTestEnv(t, nil)
	uuid := e.createManaged("used", anthropicKey("short-agents"))
	e.createAgent("helper", platform.Anthropic, uuid)
	e.emu.InjectFault(emulator.Fault{Method: http.MethodGet, Path: "/v2/gen-ai/anthropic/keys/" + uuid + "/agents", Mode: "short"})
	e.mustServerError(logical.DeleteOperation, "keys/used", nil, "meta.total")
	if e.platformKeyByUUID(uuid) == nil {
		t.Fatal("the platform key was deleted")
	}
	e.mustOK(logical.ReadOperation, "keys/used", nil)
	if agents := e.state().Agents; len(agents) != 1 || agents[0].AnthropicKeyUUID != uuid {
		t.Fatalf("agents = %+v", agents)
	}
	e.mustBadRequest(logical.DeleteOperation, "keys/used", nil, "used by 1 agent")
}
