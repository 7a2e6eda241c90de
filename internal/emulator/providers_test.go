package emulator_test

import (
	"strings"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestAnthropicKeyCheck(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	good, revoked := anthropicKey(), anthropicKey()
	e.emu.Revoke(revoked)
	const version = "2023-06-01"

	tests := map[string]struct {
		headers   []string
		status    int
		errorType string
		message   string
	}{
		"valid key":       {[]string{"x-api-key", good, "anthropic-version", version}, 200, "", ""},
		"other api gen":   {[]string{"x-api-key", "sk-ant-api07-abcdefghijklmnop_-QR", "anthropic-version", version}, 200, "", ""},
		"missing version": {[]string{"x-api-key", good}, 400, "invalid_request_error", "anthropic-version: header is required"},
		"missing key":     {[]string{"anthropic-version", version}, 401, "authentication_error", "x-api-key header is required"},
		"malformed key":   {[]string{"x-api-key", "sk-ant-api03-short", "anthropic-version", version}, 401, "authentication_error", "invalid x-api-key"},
		"admin key":       {[]string{"x-api-key", "sk-ant-admin01-abcdefghijklmnopqrstuv", "anthropic-version", version}, 401, "authentication_error", "invalid x-api-key"},
		"openai key":      {[]string{"x-api-key", openAIKey(), "anthropic-version", version}, 401, "authentication_error", "invalid x-api-key"},
		"revoked key":     {[]string{"x-api-key", revoked, "anthropic-version", version}, 401, "authentication_error", "invalid x-api-key"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, "GET", "/anthropic/v1/models?limit=1", nil, tc.headers...)
			m := r.json(t)
			if r.status != tc.status {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if r.header.Get("request-id") == "" {
				t.Error("no request-id header")
			}
			if tc.status == 200 {
				data := m["data"].([]any)
				model := data[0].(map[string]any)
				if len(data) != 1 || model["id"] != "claude-sonnet-4-5" || model["type"] != "model" || m["has_more"] != false || m["first_id"] != "claude-sonnet-4-5" {
					t.Errorf("body %s", r.body)
				}
				return
			}
			detail := m["error"].(map[string]any)
			if m["type"] != "error" || detail["type"] != tc.errorType || detail["message"] != tc.message {
				t.Errorf("body %s", r.body)
			}
		})
	}
}

func TestOpenAIKeyCheck(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	revoked := openAIKey()
	e.emu.Revoke(revoked)

	tests := map[string]struct {
		auth    string
		status  int
		code    any
		message string
	}{
		"project key":      {"Bearer " + openAIKey(), 200, nil, ""},
		"service account":  {"Bearer sk-svcacct-abcdefghijklmnopqrst", 200, nil, ""},
		"legacy user key":  {"Bearer sk-abcdefghijklmnopqrstuvwx", 200, nil, ""},
		"admin key":        {"Bearer sk-admin-abcdefghijklmnopqrst", 401, "invalid_api_key", "Incorrect API key provided: sk-admin*****qrst. You can find your API key at https://platform.openai.com/account/api-keys."},
		"anthropic key":    {"Bearer sk-ant-api03-abcdefghijklmnopqrst", 401, "invalid_api_key", "Incorrect API key provided: sk-ant-a*****qrst. You can find your API key at https://platform.openai.com/account/api-keys."},
		"revoked":          {"Bearer " + revoked, 401, "invalid_api_key", "Incorrect API key provided: " + revoked[:8] + "*****" + revoked[len(revoked)-4:] + ". You can find your API key at https://platform.openai.com/account/api-keys."},
		"short garbage":    {"Bearer abc", 401, "invalid_api_key", "Incorrect API key provided: abc*****abc. You can find your API key at https://platform.openai.com/account/api-keys."},
		"no authorization": {"", 401, nil, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var headers []string
			if tc.auth != "" {
				headers = []string{"Authorization", tc.auth}
			}
			r := e.do(t, "GET", "/openai/v1/models", nil, headers...)
			m := r.json(t)
			if r.status != tc.status {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if tc.status == 200 {
				model := m["data"].([]any)[0].(map[string]any)
				if m["object"] != "list" || model["id"] != "gpt-4o" || model["owned_by"] != "openai" || model["created"] == nil {
					t.Errorf("body %s", r.body)
				}
				return
			}
			detail := m["error"].(map[string]any)
			if detail["type"] != "invalid_request_error" || detail["code"] != tc.code {
				t.Errorf("body %s", r.body)
			}
			if p, ok := detail["param"]; !ok || p != nil {
				t.Errorf("param should be present and null: %s", r.body)
			}
			if tc.message != "" && detail["message"] != tc.message {
				t.Errorf("message = %q, want %q", detail["message"], tc.message)
			}
			if secret := strings.TrimPrefix(tc.auth, "Bearer "); len(secret) > 12 && strings.Contains(string(r.body), secret) {
				t.Errorf("full key echoed: %s", r.body)
			}
		})
	}
}

func TestProviderRoutingAndFaults(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	tests := map[string]struct {
		method, path string
		status       int
		check        func(m map[string]any) bool
	}{
		"anthropic unknown path": {"GET", "/anthropic/v1/messages", 404, func(m map[string]any) bool { return m["error"].(map[string]any)["type"] == "not_found_error" }},
		"anthropic wrong method": {"POST", "/anthropic/v1/models", 405, func(m map[string]any) bool { return m["type"] == "error" }},
		"openai unknown path":    {"GET", "/openai/v1/chat", 404, func(m map[string]any) bool { return m["error"].(map[string]any)["type"] == "invalid_request_error" }},
		"not the openai host":    {"GET", "/openaix/v1/models", 401, func(m map[string]any) bool { return m["id"] == "unauthorized" }},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.do(t, tc.method, tc.path, nil)
			if r.status != tc.status || !tc.check(r.json(t)) {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}

	// A fault on a provider answers in that provider's error shape.
	e.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 529})
	e.emu.InjectFault(emulator.Fault{Path: "/openai/v1/models", Status: 500})
	r := e.do(t, "GET", "/anthropic/v1/models", nil, "x-api-key", anthropicKey(), "anthropic-version", "2023-06-01")
	if r.status != 529 || r.json(t)["error"].(map[string]any)["type"] != "overloaded_error" {
		t.Errorf("anthropic fault: %d %s", r.status, r.body)
	}
	r = e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+openAIKey())
	if r.status != 500 || r.json(t)["error"].(map[string]any)["type"] != "server_error" {
		t.Errorf("openai fault: %d %s", r.status, r.body)
	}
}
