package emulator_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// requestIDFormat: the platform's x-request-id is a uuid.
var requestIDFormat = uuidV4

func TestGodoParsesPlatformErrors(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{"good"}})
	ctx := context.Background()

	tests := map[string]struct {
		token   string
		status  int
		message string
	}{
		"wrong token":  {"bad", http.StatusUnauthorized, "Unable to authenticate you"},
		"unknown uuid": {"good", http.StatusNotFound, "The resource you were accessing could not be found."},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := e.godoClient(t, tc.token, 5*time.Second)
			_, resp, err := c.AgentPlatform.GetAnthropicAPIKey(ctx, "00000000-0000-4000-8000-000000000000")
			er := apiError(t, err, tc.status)
			if er.Message != tc.message {
				t.Errorf("Message = %q, want %q", er.Message, tc.message)
			}
			if !requestIDFormat.MatchString(er.RequestID) || er.RequestID != resp.Header.Get("x-request-id") {
				t.Errorf("RequestID = %q, header %q", er.RequestID, resp.Header.Get("x-request-id"))
			}
		})
	}
}

func TestPlatformErrorBodies(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{"good"}})
	tests := map[string]struct {
		method, path, auth string
		status             int
		id                 string
		allow              string
	}{
		"no token":            {"GET", "/v2/gen-ai/anthropic/keys", "", 401, "unauthorized", ""},
		"basic auth":          {"GET", "/v2/gen-ai/anthropic/keys", "Basic Z29vZDo=", 401, "unauthorized", ""},
		"unknown route":       {"GET", "/v2/gen-ai/gemini/keys", "Bearer good", 404, "not_found", ""},
		"trailing slash":      {"GET", "/v2/gen-ai/agents/", "Bearer good", 404, "not_found", ""},
		"outside /v2":         {"GET", "/", "Bearer good", 404, "not_found", ""},
		"wrong method":        {"PATCH", "/v2/gen-ai/openai/keys", "Bearer good", 405, "method_not_allowed", "GET, POST"},
		"wrong method on key": {"POST", "/v2/gen-ai/openai/keys/abc", "Bearer good", 405, "method_not_allowed", "GET, PUT, DELETE"},
		"bad per_page":        {"GET", "/v2/gen-ai/agents?per_page=x", "Bearer good", 400, "invalid_argument", ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var headers []string
			if tc.auth != "" {
				headers = []string{"Authorization", tc.auth}
			}
			r := e.do(t, tc.method, tc.path, nil, headers...)
			m := r.json(t)
			if r.status != tc.status || m["id"] != tc.id || m["message"] == "" {
				t.Errorf("got %d %s", r.status, r.body)
			}
			if id := r.header.Get("x-request-id"); !requestIDFormat.MatchString(id) || m["request_id"] != id {
				t.Errorf("request_id %v, header %q", m["request_id"], id)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			// Every platform answer carries the rate-limit headers, 401s too.
			for _, h := range []string{"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} {
				if r.header.Get(h) == "" {
					t.Errorf("%s missing for status %d", h, tc.status)
				}
			}
		})
	}
}
