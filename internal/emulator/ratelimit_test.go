package emulator_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestRateLimitHeadersAndBurstLimit(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.SetRateLimits(3, 100)
	c := e.client(t)
	ctx := context.Background()

	start := time.Now()
	for i := range 3 {
		_, resp, err := c.AgentPlatform.ListAnthropicAPIKeys(ctx, nil)
		mustOK(t, err)
		if resp.Rate.Limit != 100 || resp.Rate.Remaining != 100-(i+1) {
			t.Errorf("request %d: Rate = %+v", i, resp.Rate)
		}
		// Reset is when the first request leaves the hour window.
		if r := resp.Rate.Reset.Time; r.Before(start.Add(time.Hour).Truncate(time.Second)) || r.After(time.Now().Add(time.Hour+time.Second)) {
			t.Errorf("request %d: Reset = %v", i, r)
		}
	}

	_, resp, err := c.AgentPlatform.ListAnthropicAPIKeys(ctx, nil)
	er := apiError(t, err, http.StatusTooManyRequests)
	if er.Message != "API rate limit exceeded." {
		t.Errorf("Message = %q", er.Message)
	}
	retry, convErr := strconv.Atoi(resp.Header.Get("Retry-After"))
	if convErr != nil || retry < 1 || retry > 60 {
		t.Errorf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
	if resp.Rate.Limit != 100 || resp.Rate.Remaining != 97 {
		t.Errorf("refused request used budget: Rate = %+v", resp.Rate)
	}
	if r := e.platform(t, http.MethodGet, "/v2/gen-ai/agents", nil); r.status != 429 || r.json(t)["id"] != "too_many_requests" {
		t.Errorf("raw 429 = %d %s", r.status, r.body)
	}

	// Limits are per token, and provider endpoints are not limited.
	e.emu.AddToken("second")
	_, _, err = e.godoClient(t, "second", 5*time.Second).AgentPlatform.ListAgents(ctx, nil)
	mustOK(t, err)
	for range 5 {
		if r := e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+openAIKey()); r.status != 200 {
			t.Fatalf("provider limited: %d", r.status)
		}
	}
	// Unauthenticated requests neither count nor carry the headers.
	if r := e.do(t, "GET", "/v2/gen-ai/agents", nil); r.status != 401 || r.header.Get("ratelimit-remaining") != "" {
		t.Errorf("401 = %d with headers %v", r.status, r.header)
	}
}

func TestRateLimitHourly(t *testing.T) {
	e := newEnv(t, emulator.Config{PerMinuteLimit: 50, PerHourLimit: 2})
	for range 2 {
		if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	r := e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	retry, _ := strconv.Atoi(r.header.Get("Retry-After"))
	if r.status != 429 || retry < 3590 || retry > 3600 || r.header.Get("Ratelimit-Remaining") != "0" || r.header.Get("Ratelimit-Limit") != "2" {
		t.Errorf("got %d, headers %v", r.status, r.header)
	}
}
