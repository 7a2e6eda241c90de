package backend

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform/platformtest"
)

// Through HandleRequest: a config write whose api_url redirects is a server
// error that says why, and saves nothing.
func TestConfig_WriteRefusesPlatformRedirect(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := newUnconfiguredEnv(t, emu, srv)
	url, hits := platformtest.NewRedirectPair(t, http.StatusFound)

	msg := e.mustServerError(logical.UpdateOperation, "config", map[string]any{"token": testToken, "api_url": url},
		"the platform "+fmt.Sprintf(platformtest.RedirectRefusal, http.StatusFound), "nothing was saved")
	if strings.Contains(msg, platformtest.LocationMarker) {
		t.Errorf("the error shows the Location: %s", msg)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
	if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
		t.Fatal("config saved despite the refused redirect")
	}
}

// Updates, deletes and reads are re-sent after transient failures.
func TestRetry_TransientFailuresAreRetried(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/flaky", map[string]any{"provider": "anthropic", "api_key": anthropicKey("flaky1")})
	before := e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"]
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 503, Count: platform.MaxAttempts - 1})
	e.mustOK(logical.UpdateOperation, "keys/flaky", map[string]any{"api_key": anthropicKey("flaky2")})
	if n := e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"] - before; n != platform.MaxAttempts {
		t.Fatalf("update sent %d times, want %d", n, platform.MaxAttempts)
	}
	if k := e.platformKeyNamed(platform.Anthropic, "flaky"); k.Secret != anthropicKey("flaky2") {
		t.Fatal("the retried update did not land")
	}
	// A dropped connection and a 429 are transient too.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/anthropic/keys/", Status: 429})
	e.mustOK(logical.ReadOperation, "keys/flaky/agents", nil)
	e.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/v2/gen-ai/anthropic/keys/", Status: 500})
	e.mustOK(logical.DeleteOperation, "keys/flaky", nil)
	if len(e.state().AnthropicKeys) != 0 {
		t.Fatal("the retried delete did not land")
	}
}

// A 4xx other than 429 is the platform's final word: never re-sent.
func TestRetry_RefusalsAreNotRetried(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/refused", map[string]any{"provider": "openai", "api_key": openAIKey("refused1")})
	before := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"]
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 422})
	e.mustBadRequest(logical.UpdateOperation, "keys/refused", map[string]any{"api_key": openAIKey("refused2")}, "HTTP 422")
	if n := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"] - before; n != 1 {
		t.Fatalf("a refused update was sent %d times", n)
	}
}

// Retries stay inside request_timeout: a retry-after longer than what is
// left ends the operation with the last error instead of waiting.
func TestRetry_StaysInsideRequestTimeout(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "2s"})
	e.mustOK(logical.CreateOperation, "keys/slow", map[string]any{"provider": "openai", "api_key": openAIKey("slow1")})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 429, Count: platform.MaxAttempts})
	e.emu.SetRateLimits(250, 5000)
	before := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"]
	e.mustServerError(logical.UpdateOperation, "keys/slow", map[string]any{"api_key": openAIKey("slow2")}, "rate limit")
	// The fault's 429 carries no retry-after, so the backoff allows more
	// attempts; the emulator's own 429s carry one, which the next test uses.
	if n := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"] - before; n < 1 || n > platform.MaxAttempts {
		t.Fatalf("update sent %d times", n)
	}
}

// Provider verification is retried after a 429 or 5xx; a 401 is final.
func TestRetry_Verification(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 529, Count: platform.MaxAttempts - 1})
	e.mustOK(logical.CreateOperation, "keys/overloaded", map[string]any{"provider": "anthropic", "api_key": anthropicKey("overloaded")})
	if n := e.emu.Counts()["GET /anthropic/v1/models"]; n != platform.MaxAttempts {
		t.Fatalf("verification sent %d times, want %d", n, platform.MaxAttempts)
	}
	revoked := openAIKey("revoked")
	e.emu.Revoke(revoked)
	e.mustBadRequest(logical.CreateOperation, "keys/revoked", map[string]any{"provider": "openai", "api_key": revoked}, "rejected by the provider")
	if n := e.emu.Counts()["GET /openai/v1/models"]; n != 1 {
		t.Fatalf("a rejected key was checked %d times", n)
	}
}
