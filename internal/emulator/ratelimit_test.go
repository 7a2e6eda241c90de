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
	if er.Message != "API Rate limit exceeded." {
		t.Errorf("Message = %q", er.Message)
	}
	retry, convErr := strconv.Atoi(resp.Header.Get("Retry-After"))
	if convErr != nil || retry < 1 || retry > 60 {
		t.Errorf("Retry-After = %q", resp.Header.Get("Retry-After"))
	}
	// A burst 429 says nothing remains, though the hour is not spent, and
	// keeps the oldest request's reset.
	if resp.Rate.Limit != 100 || resp.Rate.Remaining != 0 {
		t.Errorf("burst 429: Rate = %+v", resp.Rate)
	}
	if r := resp.Rate.Reset.Time; r.Before(start.Add(time.Hour).Truncate(time.Second)) || r.After(start.Add(time.Hour+time.Second)) {
		t.Errorf("burst 429: Reset = %v, want the oldest request's expiry", r)
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
}

// A 401 carries the rate-limit headers too: the budget of the token it
// presented, which the refused request does not use.
func TestRateLimitHeadersOn401(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{"good", "leaving"}, PerHourLimit: 100})
	start := time.Now()
	for range 2 {
		if r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer leaving"); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	e.emu.RemoveToken("leaving")
	for range 2 {
		r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer leaving")
		reset, err := strconv.ParseInt(r.header.Get("Ratelimit-Reset"), 10, 64)
		if r.status != 401 || r.header.Get("Ratelimit-Limit") != "100" || r.header.Get("Ratelimit-Remaining") != "98" ||
			err != nil || time.Unix(reset, 0).Before(start.Add(time.Hour).Truncate(time.Second)) || time.Unix(reset, 0).After(time.Now().Add(time.Hour+time.Second)) {
			t.Errorf("401 of a token with two requests in the hour: %d, headers %v", r.status, r.header)
		}
	}
	// No token: a whole budget, nothing to wait for.
	r := e.do(t, "GET", "/v2/gen-ai/agents", nil)
	reset, err := strconv.ParseInt(r.header.Get("Ratelimit-Reset"), 10, 64)
	if r.status != 401 || r.header.Get("Ratelimit-Remaining") != "100" || err != nil || time.Until(time.Unix(reset, 0)) > 2*time.Second {
		t.Errorf("401 without a token: %d, headers %v", r.status, r.header)
	}
	if r := e.do(t, "GET", "/v2/gen-ai/agents", nil, "Authorization", "Bearer good"); r.status != 200 || r.header.Get("Ratelimit-Remaining") != "99" {
		t.Errorf("another token's budget moved: %d, headers %v", r.status, r.header)
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
	// An hourly 429 has no retry-after (DigitalOcean sends it on burst
	// 429s only): the wait is the reset, when the oldest request expires.
	reset, _ := strconv.ParseInt(r.header.Get("Ratelimit-Reset"), 10, 64)
	untilReset := time.Until(time.Unix(reset, 0))
	if r.status != 429 || r.header.Get("Retry-After") != "" || untilReset < 3590*time.Second || untilReset > 3601*time.Second ||
		r.header.Get("Ratelimit-Remaining") != "0" || r.header.Get("Ratelimit-Limit") != "2" {
		t.Errorf("got %d, headers %v", r.status, r.header)
	}
	if m := r.json(t); m["id"] != "too_many_requests" || m["message"] != "API Rate limit exceeded." {
		t.Errorf("hourly 429 body %s", r.body)
	}
}

// A 429 fault with retry_after answers as the platform's burst limit does,
// so tests above the emulator can meet one without waiting a minute.
func TestRateLimitBurstFault(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/agents", Status: http.StatusTooManyRequests, RetryAfter: 29})
	r := e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	reset, err := strconv.ParseInt(r.header.Get("Ratelimit-Reset"), 10, 64)
	if m := r.json(t); m["id"] != "too_many_requests" || m["message"] != "API Rate limit exceeded." {
		t.Errorf("burst fault body %s", r.body)
	}
	if r.status != 429 || r.header.Get("Retry-After") != "29" || r.header.Get("Ratelimit-Remaining") != "0" ||
		r.header.Get("Ratelimit-Limit") != "5000" || err != nil || time.Until(time.Unix(reset, 0)) < 59*time.Minute {
		t.Errorf("got %d, headers %v", r.status, r.header)
	}
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 200 || r.header.Get("Retry-After") != "" || r.header.Get("Ratelimit-Remaining") == "0" {
		t.Errorf("after the fault: %d, headers %v", r.status, r.header)
	}
	for _, bad := range []string{`{"status":500,"retry_after":3}`, `{"mode":"hang","retry_after":3}`, `{"status":429,"retry_after":-1}`} {
		if r := e.do(t, "POST", "/_emulator/faults", bad); r.status != 400 {
			t.Errorf("fault %s accepted: %d", bad, r.status)
		}
	}
}
