package backend

import (
	"context"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// Cases a fresh-eyed review found in the write-ahead log road, the retry
// policy and the rate budget, each failing before its fix.

// a reassign whose single switch failed ambiguously keeps its entry; the
// operator retries and succeeds; the periodic rollback must not undo the
// successful retry.
func TestWAL_ReassignRollbackSparesALaterSuccess(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/rv-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("rvfrom")})
	e.mustOK(logical.CreateOperation, "keys/rv-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("rvto")})
	toUUID := e.platformKeyNamed(providerAnthropic, "rv-to").UUID
	a := e.createAgent("rv-agent", providerAnthropic, e.platformKeyNamed(providerAnthropic, "rv-from").UUID)
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/", Status: 503, Count: maxAttempts})
	e.mustServerError(logical.UpdateOperation, "keys/rv-from/reassign", map[string]any{"to": "rv-to"})
	t.Logf("wal entries after failed reassign: %d", walCount(t, e))
	e.mustOK(logical.UpdateOperation, "keys/rv-from/reassign", map[string]any{"to": "rv-to"})
	rollbackNow(t, e)
	if anth, _ := e.agentKey(a.Uuid); anth != toUUID {
		t.Fatalf("the periodic rollback moved the agent back after a successful reassign (agent on %s, want %s)", anth, toUUID)
	}
}

// the first PUT of a rotation is applied but its answer lost; the retries
// get 429. The final error is a "definite refusal", so the entry is dropped
// without an undo, though the first attempt changed the platform.
func TestWAL_RetryEndingInRefusalAfterALostAnswerIsUndone(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("rv-rot-first")
	e.mustOK(logical.CreateOperation, "keys/rv-rot", map[string]any{"provider": "anthropic", "api_key": first})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 429, Count: maxAttempts - 1})
	resp, err := e.send(logical.UpdateOperation, "keys/rv-rot", map[string]any{"api_key": anthropicKey("rv-rot-second")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	rollbackNow(t, e)
	if k := e.platformKeyNamed(providerAnthropic, "rv-rot"); k.Secret != first {
		t.Fatal("the platform holds a secret Vault does not, and no entry is left to fix it")
	}
}

// a create times out and lands late; the lookup finds nothing and the
// create is sent once more, which the platform refuses (429). The entry is
// dropped as a definite refusal; the late create then lands: an orphan.
func TestWAL_ResentCreateRefusedKeepsItsEntry(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "1s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("rv-late-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 1500 * time.Millisecond})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Status: 429})
	resp, err := e.send(logical.CreateOperation, "keys/rv-late", map[string]any{"provider": "openai", "api_key": openAIKey("rv-late")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	deadline := time.Now().Add(5 * time.Second)
	for e.platformKeyNamed(providerOpenAI, "rv-late") == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rollbackNow(t, e)
	if e.platformKeyNamed(providerOpenAI, "rv-late") != nil {
		t.Fatalf("orphan left on the platform with no WAL entry (wal=%d)", walCount(t, e))
	}
}

// adoption rollback follows the uuid: an adoption whose undo failed,
// retried under another name, is not renamed back by the rollback.
func TestWAL_AdoptRollbackFollowsTheUUID(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateOpenAIAPIKey(context.Background(), &godo.OpenAIAPIKeyCreateRequest{Name: "hand-made", ApiKey: openAIKey("rv-hand")})
	if err != nil {
		t.Fatal(err)
	}
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 503, Count: 2*maxAttempts - 1})
	e.mustServerError(logical.CreateOperation, "keys/adopt-b", map[string]any{"provider": "openai", "api_key": openAIKey("rv-adopt"), "uuid": legacy.Uuid})
	e.mustOK(logical.CreateOperation, "keys/adopt-c", map[string]any{"provider": "openai", "api_key": openAIKey("rv-adopt"), "uuid": legacy.Uuid})
	rollbackNow(t, e)
	if e.platformKeyNamed(providerOpenAI, "adopt-c") == nil {
		t.Fatalf("rollback renamed a managed key away from its stored name: %+v", e.state().OpenAIKeys)
	}
}

// A tiny hourly limit still refills: the budget is slow, never wedged.
func TestRateBudget_TinyHourlyLimitStillRefills(t *testing.T) {
	for _, perHour := range []int{1, 2, 3} {
		b := newRateBudget(250, perHour)
		now := time.Now()
		if delay, _ := b.reserve(now); delay > 0 {
			t.Fatalf("limit %d: the first request waits %v", perHour, delay)
		}
		if delay, _ := b.reserve(now); delay <= 0 || delay > 3*time.Hour {
			t.Fatalf("limit %d: the next place comes in %v; want a few hours at most", perHour, delay)
		}
	}
}

// the first create hangs for the whole timeout; the lookup finds nothing
// and the create is sent again; the second answer is lost too and the
// platform applies it late, within one timeout of the client giving up. Its
// created_at is past the entry's Deadline (Started + 2 timeouts), so no
// rollback recognises it.
func TestWAL_ResentCreateThatLandsLateIsFound(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "2s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("rv-win-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "hang"})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 3900 * time.Millisecond})
	resp, err := e.send(logical.CreateOperation, "keys/rv-win", map[string]any{"provider": "openai", "api_key": openAIKey("rv-win")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	deadline := time.Now().Add(8 * time.Second)
	for len(e.ownKeys(providerOpenAI, "rv-win")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.ownKeys(providerOpenAI, "rv-win")) == 0 {
		t.Fatal("setup: the late create never landed")
	}
	rollbackNow(t, e)
	if len(e.ownKeys(providerOpenAI, "rv-win")) != 0 {
		t.Fatalf("orphan left on the platform (wal=%d)", walCount(t, e))
	}
}

func TestReassign_ToKeyDeletedOutsideVaultSaysWhereAgentsAre(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/tg-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("tgfrom")})
	e.mustOK(logical.CreateOperation, "keys/tg-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("tgto")})
	agent := e.createAgent("tg-agent", providerAnthropic, e.platformKeyNamed(providerAnthropic, "tg-from").UUID)
	if _, _, err := e.do.AgentPlatform.DeleteAnthropicAPIKey(t.Context(), e.platformKeyNamed(providerAnthropic, "tg-to").UUID); err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.UpdateOperation, "keys/tg-from/reassign", map[string]any{"to": "tg-to"}, `on "tg-from"`)
	if anth, _ := e.agentKey(agent.Uuid); anth != e.platformKeyNamed(providerAnthropic, "tg-from").UUID {
		t.Fatal("the agent left its key")
	}
}
