package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestCounts(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	id, _ := e.createKey(t, anthropicProvider, "a")
	_, _, err := anthropicProvider.get(ctx, c, id)
	mustOK(t, err)
	_, _, err = anthropicProvider.get(ctx, c, "missing")
	apiError(t, err, http.StatusNotFound)
	_, _, err = anthropicProvider.create(ctx, c, "bad", "sk-nope")
	apiError(t, err, http.StatusBadRequest)
	e.do(t, "GET", "/v2/gen-ai/openai/keys", nil) // 401: counted too
	e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+openAIKey())
	e.do(t, "GET", "/anthropic/v1/models", nil)
	e.platform(t, "GET", "/v2/gen-ai/unknown", nil) // no route: not counted
	e.do(t, "GET", "/_emulator/state", nil)         // control: not counted

	want := map[string]int{
		"POST /v2/gen-ai/anthropic/keys":       2,
		"GET /v2/gen-ai/anthropic/keys/{uuid}": 2,
		"GET /v2/gen-ai/openai/keys":           1,
		"GET /openai/v1/models":                1,
		"GET /anthropic/v1/models":             1,
	}
	got := e.emu.Counts()
	if !maps.Equal(got, want) {
		t.Errorf("Counts = %v, want %v", got, want)
	}
	got["POST /v2/gen-ai/anthropic/keys"] = 99
	if e.emu.Counts()["POST /v2/gen-ai/anthropic/keys"] != 2 {
		t.Error("Counts returned the internal map")
	}
}

func TestReset(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{testToken}})
	c := e.client(t)
	ctx := context.Background()
	a, _ := e.createKey(t, anthropicProvider, "a")
	req := agentRequest("agent")
	req.AnthropicKeyUuid = a
	_, _, err := c.AgentPlatform.CreateAgent(ctx, req)
	mustOK(t, err)
	revoked := openAIKey()
	e.emu.Revoke(revoked)
	e.emu.AddToken("added")
	e.emu.SetLatency(time.Hour)
	e.emu.SetRateLimits(1, 1)
	e.emu.InjectFault(emulator.Fault{Status: 500, Count: 100})

	e.emu.Reset()

	s := e.emu.State()
	if len(s.AnthropicKeys)+len(s.OpenAIKeys)+len(s.Agents) != 0 || s.Revoked != 0 {
		t.Errorf("state after reset = %+v", s)
	}
	if n := len(e.emu.Counts()); n != 0 {
		t.Errorf("counts after reset: %v", e.emu.Counts())
	}
	// No latency, no fault, configured limits, revocation gone, tokens kept.
	for range 3 {
		if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 200 {
			t.Fatalf("after reset: %d %s", r.status, r.body)
		}
	}
	if r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer added"); r.status != 200 {
		t.Errorf("added token lost: %d", r.status)
	}
	if r := e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+revoked); r.status != 200 {
		t.Errorf("revocation kept: %d", r.status)
	}
}

func TestControlAPI(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	control := func(method, name string, body any) rawResponse {
		t.Helper()
		return e.do(t, method, "/_emulator/"+name, body)
	}
	expect := func(r rawResponse, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
		}
	}

	// Faults first: control requests never consume them.
	expect(control("POST", "faults", `{"method":"get","path":"/v2/gen-ai/agents","status":418,"count":1,"delay":"20ms"}`), 204)
	expect(control("GET", "state", nil), 200)
	start := time.Now()
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 418 || time.Since(start) < 20*time.Millisecond {
		t.Errorf("fault from control API: %d after %v", r.status, time.Since(start))
	}
	expect(control("POST", "faults", map[string]any{"mode": "status", "status": 502, "delay": int64(time.Millisecond)}), 204)
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 502 {
		t.Errorf("fault with integer delay: %d", r.status)
	}

	id, secret := e.createKey(t, anthropicProvider, "visible")
	var s emulator.State
	r := control("GET", "state", nil)
	expect(r, 200)
	mustOK(t, json.Unmarshal(r.body, &s))
	if len(s.AnthropicKeys) != 1 || s.AnthropicKeys[0].UUID != id || s.AnthropicKeys[0].Secret != secret || s.OpenAIKeys == nil || s.Agents == nil {
		t.Errorf("state = %s", r.body)
	}
	if !strings.Contains(string(r.body), `"revoked_count":0`) || !strings.Contains(string(r.body), `"created_at"`) {
		t.Errorf("state JSON = %s", r.body)
	}

	expect(control("POST", "revoke", map[string]string{"api_key": secret}), 204)
	if r := e.do(t, "GET", "/anthropic/v1/models", nil, "x-api-key", secret, "anthropic-version", "2023-06-01"); r.status != 401 {
		t.Errorf("revoked key accepted: %d", r.status)
	}
	r = control("GET", "state", nil)
	if !strings.Contains(string(r.body), `"revoked_count":1`) {
		t.Errorf("state after revoke = %s", r.body)
	}

	expect(control("POST", "latency", map[string]string{"latency": "120ms"}), 204)
	start = time.Now()
	e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("latency not applied: %v", d)
	}
	expect(control("POST", "latency", map[string]string{"latency": "0s"}), 204)

	expect(control("POST", "tokens", map[string]string{"token": "second"}), 204)
	expect(control("POST", "rate-limits", map[string]int{"per_minute": 1, "per_hour": 10}), 204)
	if r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer second"); r.status != 200 || r.header.Get("Ratelimit-Limit") != "10" {
		t.Errorf("new token: %d %v", r.status, r.header)
	}
	if r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer second"); r.status != 429 {
		t.Errorf("rate limit from control API not applied: %d", r.status)
	}

	var counts map[string]int
	r = control("GET", "counts", nil)
	expect(r, 200)
	mustOK(t, json.Unmarshal(r.body, &counts))
	if counts["GET /v2/gen-ai/agents"] != 5 || counts["POST /v2/gen-ai/anthropic/keys"] != 1 {
		t.Errorf("counts = %v", counts)
	}

	expect(control("POST", "reset", nil), 204)
	if s := e.emu.State(); len(s.AnthropicKeys) != 0 || len(e.emu.Counts()) != 0 {
		t.Errorf("reset over HTTP left %+v", s)
	}

	bad := map[string]struct {
		method, name string
		body         any
		status       int
	}{
		"unknown endpoint":     {"GET", "nope", nil, 404},
		"wrong method":         {"GET", "reset", nil, 405},
		"post state":           {"POST", "state", nil, 405},
		"fault bad mode":       {"POST", "faults", map[string]string{"mode": "explode"}, 400},
		"fault typo":           {"POST", "faults", map[string]any{"stauts": 500}, 400},
		"fault bad delay":      {"POST", "faults", map[string]string{"delay": "soon"}, 400},
		"latency bad":          {"POST", "latency", map[string]string{"latency": "fast"}, 400},
		"latency negative":     {"POST", "latency", map[string]string{"latency": "-1s"}, 400},
		"revoke empty":         {"POST", "revoke", map[string]string{}, 400},
		"token empty":          {"POST", "tokens", map[string]string{"token": ""}, 400},
		"rate-limits not json": {"POST", "rate-limits", "nope", 400},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := control(tc.method, tc.name, tc.body)
			if r.status != tc.status || r.json(t)["message"] == "" {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 200 {
		t.Errorf("a rejected control call left a fault behind: %d", r.status)
	}
}

// The request log names requests without leaking secrets.
func TestLogNeverShowsSecrets(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	e := newEnv(t, emulator.Config{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}})
	id, secret := e.createKey(t, openAIProvider, "logged")
	e.platform(t, "PUT", "/v2/gen-ai/openai/keys/"+id, map[string]string{"api_key": openAIKey()})
	e.do(t, "GET", "/openai/v1/models?key="+secret, nil, "Authorization", "Bearer "+secret)
	e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer "+testToken)

	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 4 {
		t.Fatalf("want 4 log lines, got %q", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, secret) || strings.Contains(l, testToken) || strings.Contains(l, "key=") {
			t.Errorf("log line leaks: %s", l)
		}
	}
	if !strings.Contains(lines[0], "POST /v2/gen-ai/openai/keys -> 200") {
		t.Errorf("log line = %q", lines[0])
	}
}

// Statuses counts the platform's answers by status, and Reset clears them.
func TestStatuses(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Status: 503})
	e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	if got := e.emu.Statuses(); got[503] != 1 || got[200] != 1 {
		t.Fatalf("statuses = %v", got)
	}
	e.emu.Reset()
	if got := e.emu.Statuses(); len(got) != 0 {
		t.Fatalf("after reset: %v", got)
	}
}
