package backend

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// Updates, deletes and reads are re-sent after transient failures.
func TestRetry_TransientFailuresAreRetried(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/flaky", map[string]any{"provider": "anthropic", "api_key": anthropicKey("flaky1")})
	before := e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"]
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 503, Count: maxAttempts - 1})
	e.mustOK(logical.UpdateOperation, "keys/flaky", map[string]any{"api_key": anthropicKey("flaky2")})
	if n := e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"] - before; n != maxAttempts {
		t.Fatalf("update sent %d times, want %d", n, maxAttempts)
	}
	if k := e.platformKeyNamed(providerAnthropic, "flaky"); k.Secret != anthropicKey("flaky2") {
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
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 429, Count: maxAttempts})
	e.emu.SetRateLimits(250, 5000)
	before := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"]
	e.mustServerError(logical.UpdateOperation, "keys/slow", map[string]any{"api_key": openAIKey("slow2")}, "rate limit")
	// The fault's 429 carries no retry-after, so the backoff allows more
	// attempts; the emulator's own 429s carry one, which the next test uses.
	if n := e.emu.Counts()["PUT /v2/gen-ai/openai/keys/{uuid}"] - before; n < 1 || n > maxAttempts {
		t.Fatalf("update sent %d times", n)
	}
}

// The wait before a retry honours retry-after and, for a 429, the
// rate-limit window's reset; otherwise it backs off exponentially.
func TestRetry_WaitHonoursTheUpstream(t *testing.T) {
	now := time.Now()
	resp := func(status int, headers ...string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		return r
	}
	if d := retryAfter(testRetryBase, 0, resp(503, "Retry-After", "7"), now); d < 7*time.Second {
		t.Errorf("retry-after 7: waits %v", d)
	}
	reset := strconv.FormatInt(now.Add(20*time.Second).Unix(), 10)
	if d := retryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "0", "Ratelimit-Reset", reset), now); d < 19*time.Second {
		t.Errorf("429 with nothing remaining until a reset in 20 s: waits %v", d)
	}
	if d := retryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "12", "Ratelimit-Reset", reset), now); d > time.Second {
		t.Errorf("429 with requests remaining waits for the reset: %v", d)
	}
	// DigitalOcean's burst 429: remaining 0 and a reset up to an hour away,
	// but retry-after is the wait (issue 16: it used to be the reset).
	hourAway := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	if d := retryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "0", "Ratelimit-Reset", hourAway, "Retry-After", "29"), now); d < 29*time.Second || d > 30*time.Second {
		t.Errorf("burst 429 with retry-after 29 and a reset an hour away: waits %v", d)
	}
	if d := retryAfter(testRetryBase, 0, resp(503, "Ratelimit-Reset", reset), now); d > time.Second {
		t.Errorf("a 503 waits for the rate-limit reset: %v", d)
	}
	if a, b := retryAfter(testRetryBase, 0, nil, now), retryAfter(testRetryBase, 3, nil, now); b <= a || b > retryMaxDelay {
		t.Errorf("backoff does not grow: attempt 0 %v, attempt 3 %v", a, b)
	}
}

// Provider verification is retried after a 429 or 5xx; a 401 is final.
func TestRetry_Verification(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 529, Count: maxAttempts - 1})
	e.mustOK(logical.CreateOperation, "keys/overloaded", map[string]any{"provider": "anthropic", "api_key": anthropicKey("overloaded")})
	if n := e.emu.Counts()["GET /anthropic/v1/models"]; n != maxAttempts {
		t.Fatalf("verification sent %d times, want %d", n, maxAttempts)
	}
	revoked := openAIKey("revoked")
	e.emu.Revoke(revoked)
	e.mustBadRequest(logical.CreateOperation, "keys/revoked", map[string]any{"provider": "openai", "api_key": revoked}, "rejected by the provider")
	if n := e.emu.Counts()["GET /openai/v1/models"]; n != 1 {
		t.Fatalf("a rejected key was checked %d times", n)
	}
}
