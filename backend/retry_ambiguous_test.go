package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Found by the chaos run (acceptance/chaos_test.go, seeds 1 and 7): an
// update whose first attempt the platform applied but whose answer was lost,
// and whose retries were then refused with 429, was answered as a rate-limit
// refusal; makeChange took that for "nothing changed" and dropped its
// write-ahead log entry, leaving the platform with the new secret (or name)
// and Vault with the old one, and nothing to undo it. The answer must stay
// ambiguous: the change is undone and the entry kept.
func TestRetry_AppliedThenRefusedStaysAmbiguous(t *testing.T) {
	for label, refusal := range map[string]emulator.Fault{
		"429":       {Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Count: platform.MaxAttempts - 1, Mode: "status", Status: http.StatusTooManyRequests},
		"other 4xx": {Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Count: 1, Mode: "status", Status: http.StatusConflict},
	} {
		t.Run(label, func(t *testing.T) {
			e := newTestEnv(t, nil)
			old, next := anthropicKey("ambig-old"), anthropicKey("ambig-new")
			e.mustOK(logical.CreateOperation, "keys/ambiguous", map[string]any{"provider": platform.Anthropic, "api_key": old})
			e.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
			e.emu.InjectFault(refusal)

			// The answer is the refusal (a 400 for a 4xx, a 502 for a 429),
			// saying that the change was undone.
			resp, err := e.request(logical.UpdateOperation, "keys/ambiguous", map[string]any{"api_key": next})
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatalf("the update succeeded: %v", resp)
			}

			if pk := e.platformKeyNamed(platform.Anthropic, "ambiguous"); pk == nil || pk.Secret != old {
				t.Fatalf("the platform holds another secret than Vault after the failed update: %+v", pk)
			}
			read := e.mustOK(logical.ReadOperation, "keys/ambiguous", nil)
			if v := read.Data["version"]; v != 1 {
				t.Fatalf("version = %v, want 1", v)
			}
			wal, err := e.storage.List(t.Context(), "wal/")
			if err != nil || len(wal) != 1 {
				t.Fatalf("write-ahead log entries: %v (err %v), want the one kept for the periodic rollback", wal, err)
			}
		})
	}
}
