package backend

import (
	"context"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func assertNoWAL(t *testing.T, e *testEnv) {
	t.Helper()
	if ids, _ := framework.ListWAL(context.Background(), e.storage); len(ids) != 0 {
		t.Fatalf("write-ahead log entries left: %v", ids)
	}
}

func walCount(t *testing.T, e *testEnv) int {
	t.Helper()
	ids, err := framework.ListWAL(context.Background(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// assertSettlesOnRollback checks that an ambiguous failure kept exactly one
// entry for the periodic rollback, and that the rollback then settles it.
func assertSettlesOnRollback(t *testing.T, e *testEnv) {
	t.Helper()
	if n := walCount(t, e); n != 1 {
		t.Fatalf("want the one write-ahead log entry kept for the periodic rollback, have %d", n)
	}
	if resp := rollbackNow(t, e); resp != nil && resp.IsError() {
		t.Fatalf("rollback failed: %v", resp.Error())
	}
	assertNoWAL(t, e)
}

// rollbackNow runs Vault's periodic rollback as if the entries were old.
func rollbackNow(t *testing.T, e *testEnv) *logical.Response {
	t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation,
		Storage:   e.storage,
		Data:      map[string]any{"immediate": true},
	})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	return resp
}

// If storing fails after the platform created the key, the key is deleted
// from the platform again at once.
func TestWAL_CreateStorageFailureRemovesPlatformKey(t *testing.T) {
	e := newTestEnv(t, nil)
	e.storage.failUnder("keys/")
	e.mustServerError(logical.CreateOperation, "keys/unstored", map[string]any{"provider": "anthropic", "api_key": anthropicKey("unstored")}, "removed again")
	e.storage.failUnder("")
	if n := e.emu.Counts()["POST /v2/gen-ai/anthropic/keys"]; n != 1 {
		t.Fatalf("creates = %d, want 1", n)
	}
	if keys := e.state().AnthropicKeys; len(keys) != 0 {
		t.Fatalf("orphan left on the platform: %+v", keys)
	}
	assertNoWAL(t, e)
}

// A connection dropped after the platform applied the create: the plugin
// cannot know the uuid, so it finds the orphan by name and deletes it.
func TestWAL_CreateDroppedConnectionCleansUp(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop"})
	e.mustServerError(logical.CreateOperation, "keys/dropped", map[string]any{"provider": "openai", "api_key": openAIKey("dropped")})
	if keys := e.state().OpenAIKeys; len(keys) != 0 {
		t.Fatalf("orphan left on the platform: %+v", keys)
	}
	if len(e.listKeys()) != 0 {
		t.Fatal("vault stored a key whose create failed")
	}
	assertSettlesOnRollback(t, e)
}

// When the immediate cleanup fails too, the WAL entry survives and Vault's
// rollback removes the orphan later; a failing rollback keeps the entry.
func TestWAL_DeferredRollbackDeletesOrphan(t *testing.T) {
	e := newTestEnv(t, nil)
	// A first create fills the name cache, so the faults below hit the
	// create and its cleanup, not the duplicate-name check.
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503})
	e.mustServerError(logical.CreateOperation, "keys/orphan", map[string]any{"provider": "openai", "api_key": openAIKey("orphan")})
	if e.platformKeyNamed(providerOpenAI, "orphan") == nil {
		t.Fatal("setup: want the orphan on the platform before rollback")
	}
	if walCount(t, e) != 1 {
		t.Fatal("the WAL entry did not survive the failed cleanup")
	}

	// Platform still failing: the rollback reports and keeps the entry.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503})
	if resp := rollbackNow(t, e); resp == nil || !resp.IsError() {
		t.Fatalf("a failed rollback was not reported: %v", resp)
	}
	if walCount(t, e) != 1 || e.platformKeyNamed(providerOpenAI, "orphan") == nil {
		t.Fatal("a failed rollback dropped its entry")
	}

	// A later pass succeeds.
	rollbackNow(t, e)
	if e.platformKeyNamed(providerOpenAI, "orphan") != nil {
		t.Fatal("rollback left the orphan")
	}
	if e.platformKeyNamed(providerOpenAI, "primer") == nil {
		t.Fatal("rollback deleted a key it did not create")
	}
	assertNoWAL(t, e)
	// And the name is free again.
	e.mustOK(logical.CreateOperation, "keys/orphan", map[string]any{"provider": "openai", "api_key": openAIKey("orphan2")})
}

// Rollback compares storage with the entry: a create whose key was stored
// is complete, and older keys with the same name are not its orphans.
func TestWAL_RollbackSparesStoredAndOlderKeys(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/kept", map[string]any{"provider": "anthropic", "api_key": anthropicKey("kept")})
	older, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "legacy", ApiKey: anthropicKey("legacy")})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []*createWAL{
		{walHeader: walHeader{Provider: providerAnthropic}, Name: "kept", Started: time.Now().Add(-time.Minute), Deadline: time.Now().Add(time.Minute)},
		{walHeader: walHeader{Provider: providerAnthropic}, Name: "legacy", Started: time.Now().Add(time.Hour), Deadline: time.Now().Add(2 * time.Hour)},
	} {
		if _, err := framework.PutWAL(context.Background(), e.storage, walKindCreate, w); err != nil {
			t.Fatal(err)
		}
	}
	rollbackNow(t, e)
	if n := len(e.state().AnthropicKeys); n != 2 {
		t.Fatalf("rollback deleted keys it did not create: %+v", e.state().AnthropicKeys)
	}
	if e.platformKeyNamed(providerAnthropic, "legacy").UUID != older.Uuid {
		t.Fatal("legacy key changed")
	}
	assertNoWAL(t, e)
}

// If storing a rotated secret fails, the platform gets the stored secret
// back, so Vault and the platform agree.
func TestWAL_RotateStorageFailurePushesOldSecretBack(t *testing.T) {
	e := newTestEnv(t, nil)
	first := openAIKey("rot-first")
	e.mustOK(logical.CreateOperation, "keys/rot", map[string]any{"provider": "openai", "api_key": first})
	e.storage.failUnder("keys/")
	e.mustServerError(logical.UpdateOperation, "keys/rot", map[string]any{"api_key": openAIKey("rot-second")}, "pushed back")
	e.storage.failUnder("")
	if k := e.platformKeyNamed(providerOpenAI, "rot"); k.Secret != first {
		t.Fatal("the platform kept the secret Vault failed to store")
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/rot", nil); creds.Data["api_key"] != first || creds.Data["version"] != 1 {
		t.Fatalf("vault = %v", creds.Data)
	}
	assertNoWAL(t, e)
}

// A rotation interrupted after the push (here: the connection dropped and
// the platform cannot be reached to undo it) is undone by the rollback.
func TestWAL_RotateDeferredRollback(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("defer-first")
	e.mustOK(logical.CreateOperation, "keys/defer", map[string]any{"provider": "anthropic", "api_key": first})
	// The push is applied but its answer lost; the immediate undo fails.
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 503})
	e.mustServerError(logical.UpdateOperation, "keys/defer", map[string]any{"api_key": anthropicKey("defer-second")})
	if k := e.platformKeyNamed(providerAnthropic, "defer"); k.Secret == first {
		t.Fatal("setup: the dropped push should have been applied")
	}
	if walCount(t, e) != 1 {
		t.Fatal("no WAL entry survived")
	}
	rollbackNow(t, e)
	if k := e.platformKeyNamed(providerAnthropic, "defer"); k.Secret != first {
		t.Fatal("rollback did not restore the stored secret")
	}
	assertNoWAL(t, e)
}

func TestWAL_AdoptStorageFailureRestoresName(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "hand-made", ApiKey: anthropicKey("hand")})
	if err != nil {
		t.Fatal(err)
	}
	e.storage.failUnder("keys/")
	e.mustServerError(logical.CreateOperation, "keys/adopter", map[string]any{"provider": "anthropic", "api_key": anthropicKey("adopter"), "uuid": legacy.Uuid})
	e.storage.failUnder("")
	if k := e.platformKeyNamed(providerAnthropic, "hand-made"); k == nil || k.UUID != legacy.Uuid {
		t.Fatalf("platform name not restored: %+v", e.state().AnthropicKeys)
	}
	assertNoWAL(t, e)
}

func TestWAL_UnknownKindIsDropped(t *testing.T) {
	e := newTestEnv(t, nil)
	if _, err := framework.PutWAL(context.Background(), e.storage, "from-the-future", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
}
