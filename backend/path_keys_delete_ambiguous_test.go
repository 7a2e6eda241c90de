package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Found by the chaos run (acceptance/chaos_test.go, seed 7): a delete that
// the platform applied but whose answer was lost, with the retries refused
// (429), failed and kept the Vault entry of a key the platform no longer
// had; a delete has no write-ahead log entry, so nothing put them back in
// line. A delete that may have been applied now asks the platform whether
// the key is gone, and finishes when it is.
func TestDelete_AppliedButAnswerLost(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/lost-answer", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("lost-answer")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts - 1, Mode: "status", Status: http.StatusTooManyRequests})

	e.mustOK(logical.DeleteOperation, "keys/lost-answer", nil)

	if pk := e.platformKeyNamed(platform.OpenAI, "lost-answer"); pk != nil {
		t.Fatalf("the platform still has the key: %+v", pk)
	}
	if keys := e.listKeys(); len(keys) != 0 {
		t.Fatalf("Vault still lists %v", keys)
	}
}

// When the platform still has the key, or cannot say, the delete fails and
// the entry stays: the caller deletes again.
func TestDelete_AmbiguousAndKeyStillThere(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/still-there", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("still-there")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts, Mode: "status", Status: http.StatusBadGateway})

	e.mustServerError(logical.DeleteOperation, "keys/still-there", nil)

	if pk := e.platformKeyNamed(platform.OpenAI, "still-there"); pk == nil {
		t.Fatal("the platform lost the key")
	}
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v, want the key kept", keys)
	}
}

// The node "dies" between the platform's delete and the storage delete
// (here: the storage delete fails): the write-ahead log entry stays, and the
// periodic rollback finishes the delete, since the platform no longer has
// the key.
func TestDelete_RollbackFinishesAPlatformDelete(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/half-deleted", map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("half-deleted")})
	e.storage.failUnder("keys/")
	e.mustServerError(logical.DeleteOperation, "keys/half-deleted", nil, "Vault's periodic rollback")
	e.storage.failUnder("")
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v before the rollback", keys)
	}
	if pk := e.platformKeyNamed(platform.Anthropic, "half-deleted"); pk != nil {
		t.Fatalf("the platform still has the key: %+v", pk)
	}
	assertSettlesOnRollback(t, e)
	if keys := e.listKeys(); len(keys) != 0 {
		t.Fatalf("Vault still lists %v after the rollback", keys)
	}
}

// The rollback of a delete that did not happen changes nothing.
func TestDelete_RollbackKeepsAKeyThePlatformHas(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/kept", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("kept")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts, Mode: "status", Status: http.StatusServiceUnavailable})
	e.mustServerError(logical.DeleteOperation, "keys/kept", nil, "periodic rollback")
	assertSettlesOnRollback(t, e)
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v, want the key kept", keys)
	}
	if pk := e.platformKeyNamed(platform.OpenAI, "kept"); pk == nil {
		t.Fatal("the platform lost the key")
	}
}
