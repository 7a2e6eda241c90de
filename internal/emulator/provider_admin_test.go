package emulator_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

const (
	openAIAdminKey    = "sk-admin-test0000000000000000000000"
	anthropicAdminKey = "sk-ant-admin01-test000000000000000000"
	anthropicVersion  = "2023-06-01"
)

// newAdminEnv is an emulator whose providers accept the two admin keys above.
func newAdminEnv(t *testing.T) *env {
	t.Helper()
	return newAdminEnvConfig(t, emulator.Config{})
}

func newAdminEnvConfig(t *testing.T, cfg emulator.Config) *env {
	t.Helper()
	e := newEnv(t, cfg)
	e.emu.AddAdminKey(emulator.ProviderOpenAI, openAIAdminKey)
	e.emu.AddAdminKey(emulator.ProviderAnthropic, anthropicAdminKey)
	return e
}

// openAIAdmin calls OpenAI's Admin API (path below /v1/organization) with the admin key.
func (e *env) openAIAdmin(t *testing.T, method, path string, body any) rawResponse {
	t.Helper()
	return e.do(t, method, "/openai/v1/organization"+path, body, "Authorization", "Bearer "+openAIAdminKey)
}

// anthropicAdmin calls Anthropic's Admin API (path below /v1/organizations) with the admin key.
func (e *env) anthropicAdmin(t *testing.T, method, path string, body any) rawResponse {
	t.Helper()
	return e.do(t, method, "/anthropic/v1/organizations"+path, body, "x-api-key", anthropicAdminKey, "anthropic-version", anthropicVersion)
}

// openAIKeyCheck and anthropicKeyCheck return the status of the providers'
// cheap key check, the plugin's verification.
func (e *env) openAIKeyCheck(t *testing.T, key string) int {
	t.Helper()
	return e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+key).status
}

func (e *env) anthropicKeyCheck(t *testing.T, key string) int {
	t.Helper()
	return e.do(t, "GET", "/anthropic/v1/models?limit=1", nil, "x-api-key", key, "anthropic-version", anthropicVersion).status
}

// The new routes go through the provider pipeline: faults, latency and
// counts apply as on the key checks.
func TestProviderAdminFaultsLatencyCounts(t *testing.T) {
	e := newAdminEnv(t)
	id := e.emu.AddAnthropicKey(anthropicKey(), "")

	e.emu.InjectFault(emulator.Fault{Path: "/openai/v1/organization", Status: 500})
	e.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/organizations", Status: 529})
	r := e.openAIAdmin(t, "GET", "/projects?limit=1", nil)
	if r.status != 500 || r.json(t)["error"].(map[string]any)["type"] != "server_error" {
		t.Errorf("openai fault: %d %s", r.status, r.body)
	}
	r = e.anthropicAdmin(t, "POST", "/api_keys/"+id, map[string]string{"status": "inactive"})
	if r.status != 529 || r.json(t)["error"].(map[string]any)["type"] != "overloaded_error" {
		t.Errorf("anthropic fault: %d %s", r.status, r.body)
	}
	if s := e.emu.ProviderState().AnthropicKeys[0].Status; s != "active" {
		t.Errorf("a status fault changed the key: %s", s)
	}

	// A dropped create mints an account the client never hears about: the
	// orphan a rollback has to find.
	e.emu.InjectFault(emulator.Fault{Mode: "drop", Method: "POST", Path: "/openai/v1/organization/projects/"})
	req, err := http.NewRequest("POST", e.srv.URL+"/openai/v1/organization"+accountsPath, strings.NewReader(`{"name":"orphan"}`))
	mustOK(t, err)
	req.Header.Set("Authorization", "Bearer "+openAIAdminKey)
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped create answered %d", resp.StatusCode)
	}
	if s := e.emu.ProviderState().OpenAIServiceAccounts; len(s) != 1 || s[0].Name != "orphan" || s[0].Deleted {
		t.Errorf("dropped create not applied: %+v", s)
	}

	e.emu.SetLatency(80 * time.Millisecond)
	start := time.Now()
	if r := e.anthropicAdmin(t, "GET", "/api_keys", nil); r.status != 200 || time.Since(start) < 80*time.Millisecond {
		t.Errorf("latency: %d after %v", r.status, time.Since(start))
	}
	e.emu.SetLatency(0)

	e.do(t, "GET", "/openai/v1/organization/projects", nil) // 401: counted too
	acct := e.mint(t, "counted")
	e.openAIAdmin(t, "DELETE", accountsPath+"/"+acct.ID, nil)
	counts := e.emu.Counts()
	for route, want := range map[string]int{
		"GET /openai/v1/organization/projects":                                                       2,
		"POST /openai/v1/organization/projects/{project_id}/service_accounts":                        2,
		"DELETE /openai/v1/organization/projects/{project_id}/service_accounts/{service_account_id}": 1,
		"GET /anthropic/v1/organizations/api_keys":                                                   1,
		"POST /anthropic/v1/organizations/api_keys/{api_key_id}":                                     1,
	} {
		if counts[route] != want {
			t.Errorf("Counts[%q] = %d, want %d (all: %v)", route, counts[route], want, counts)
		}
	}
}

func TestProviderAdminReset(t *testing.T) {
	e := newAdminEnv(t)
	e.mint(t, "gone")
	e.emu.AddAnthropicKey(anthropicKey(), "gone")
	e.emu.AddOpenAIProject("", "gone")
	e.emu.Revoke(openAIAdminKey)

	e.emu.Reset()

	s := e.emu.ProviderState()
	if len(s.OpenAIServiceAccounts)+len(s.AnthropicKeys) != 0 || len(s.OpenAIProjects) != 1 || s.OpenAIProjects[0].ID != emulator.DefaultOpenAIProjectID {
		t.Errorf("provider state after reset = %+v", s)
	}
	// Admin keys stay, like tokens; their revocation does not.
	if r := e.openAIAdmin(t, "GET", "/projects", nil); r.status != 200 {
		t.Errorf("openai admin key after reset: %d %s", r.status, r.body)
	}
	if r := e.anthropicAdmin(t, "GET", "/api_keys", nil); r.status != 200 {
		t.Errorf("anthropic admin key after reset: %d %s", r.status, r.body)
	}
}

// Provider-side changes are not platform changes: State stays equal while
// keys come to exist at Anthropic, so "nothing changed on the platform"
// assertions keep working.
func TestProviderStateIsApartFromState(t *testing.T) {
	e := newAdminEnv(t)
	e.createKey(t, openAIProvider, "platform")
	before := e.emu.State()
	e.anthropicKeyCheck(t, anthropicKey())
	e.mint(t, "minted")
	if after := e.emu.State(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("State changed:\n before %+v\n after  %+v", before, after)
	}
	if s := e.emu.ProviderState(); len(s.AnthropicKeys) != 1 || len(s.OpenAIServiceAccounts) != 1 {
		t.Errorf("provider state %+v", s)
	}
}

func TestProviderAdminControlAPI(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	control := func(method, name string, body any) rawResponse {
		t.Helper()
		return e.do(t, method, "/_emulator/"+name, body)
	}

	// Admin keys: refused until added.
	if r := e.openAIAdmin(t, "GET", "/projects", nil); r.status != 401 {
		t.Fatalf("admin key before it was added: %d", r.status)
	}
	if r := control("POST", "admin-keys", map[string]string{"provider": "openai", "api_key": openAIAdminKey}); r.status != 204 {
		t.Fatalf("admin-keys: %d %s", r.status, r.body)
	}
	if r := control("POST", "admin-keys", map[string]string{"provider": "anthropic", "api_key": anthropicAdminKey}); r.status != 204 {
		t.Fatalf("admin-keys: %d %s", r.status, r.body)
	}
	if r := e.openAIAdmin(t, "GET", "/projects", nil); r.status != 200 {
		t.Errorf("admin key added over HTTP: %d %s", r.status, r.body)
	}

	secret := anthropicKey()
	r := control("POST", "anthropic-keys", map[string]string{"api_key": secret, "name": "by a person"})
	var added struct{ ID string }
	mustOK(t, json.Unmarshal(r.body, &added))
	if r.status != 200 || !strings.HasPrefix(added.ID, "apikey_") {
		t.Fatalf("anthropic-keys: %d %s", r.status, r.body)
	}
	if r := control("POST", "anthropic-keys", map[string]string{"api_key": secret}); !strings.Contains(string(r.body), added.ID) {
		t.Errorf("adding a known key again: %d %s", r.status, r.body)
	}
	r = control("POST", "openai-projects", map[string]string{"id": "proj_named", "name": "Named"})
	if r.status != 200 || r.json(t)["id"] != "proj_named" {
		t.Fatalf("openai-projects: %d %s", r.status, r.body)
	}
	r = control("POST", "openai-projects", map[string]string{})
	generated, _ := r.json(t)["id"].(string)
	if r.status != 200 || !strings.HasPrefix(generated, "proj_") {
		t.Fatalf("openai-projects without id: %d %s", r.status, r.body)
	}

	r = control("GET", "provider-state", nil)
	var s emulator.ProviderState
	mustOK(t, json.Unmarshal(r.body, &s))
	if r.status != 200 || len(s.AnthropicKeys) != 1 || s.AnthropicKeys[0].ID != added.ID || s.AnthropicKeys[0].Name != "by a person" ||
		s.AnthropicKeys[0].Secret != secret || s.AnthropicKeys[0].Status != "active" || len(s.OpenAIProjects) != 3 || s.OpenAIServiceAccounts == nil {
		t.Errorf("provider-state: %d %s", r.status, r.body)
	}
	for _, field := range []string{`"openai_service_accounts":[]`, `"partial_key_hint":"sk-ant-api03-tes...`} {
		if !strings.Contains(string(r.body), field) {
			t.Errorf("provider-state JSON lacks %s: %s", field, r.body)
		}
	}

	bad := map[string]struct {
		name string
		body any
	}{
		"admin key of unknown provider":  {"admin-keys", map[string]string{"provider": "mistral", "api_key": openAIAdminKey}},
		"openai admin key for anthropic": {"admin-keys", map[string]string{"provider": "anthropic", "api_key": openAIAdminKey}},
		"model key as admin key":         {"admin-keys", map[string]string{"provider": "openai", "api_key": openAIKey()}},
		"admin key typo":                 {"admin-keys", map[string]string{"provider": "openai", "apikey": openAIAdminKey}},
		"anthropic key malformed":        {"anthropic-keys", map[string]string{"api_key": "sk-ant-api03-short"}},
		"anthropic key from openai":      {"anthropic-keys", map[string]string{"api_key": openAIKey()}},
		"project id without prefix":      {"openai-projects", map[string]string{"id": "default"}},
		"project id taken":               {"openai-projects", map[string]string{"id": emulator.DefaultOpenAIProjectID}},
	}
	for name, tc := range bad {
		t.Run(name, func(t *testing.T) {
			r := control("POST", tc.name, tc.body)
			if r.status != 400 || r.json(t)["message"] == "" {
				t.Errorf("got %d %s", r.status, r.body)
			}
			if k, _ := tc.body.(map[string]string)["api_key"]; k != "" && strings.Contains(string(r.body), k) {
				t.Errorf("error echoes the key: %s", r.body)
			}
		})
	}
	if r := control("POST", "provider-state", nil); r.status != 405 {
		t.Errorf("POST provider-state: %d", r.status)
	}
}

func TestProviderAdminSetupPanics(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	for name, f := range map[string]func(){
		"unknown provider":         func() { e.emu.AddAdminKey("mistral", "sk-admin-abc") },
		"model key as admin key":   func() { e.emu.AddAdminKey(emulator.ProviderAnthropic, anthropicKey()) },
		"bare prefix":              func() { e.emu.AddAdminKey(emulator.ProviderOpenAI, "sk-admin-") },
		"malformed anthropic key":  func() { e.emu.AddAnthropicKey("sk-ant-api03-x", "") },
		"project id without proj_": func() { e.emu.AddOpenAIProject("p1", "") },
		"project id taken":         func() { e.emu.AddOpenAIProject(emulator.DefaultOpenAIProjectID, "") },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// Minted keys and admin keys travel in bodies and headers, which the request
// log never shows.
func TestProviderAdminLogNeverShowsSecrets(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	e := newAdminEnvConfig(t, emulator.Config{Logf: func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(format, args...))
	}})
	minted := e.mint(t, "logged").APIKey.Value
	e.openAIKeyCheck(t, minted)
	secret := anthropicKey()
	e.anthropicKeyCheck(t, secret)
	e.anthropicAdmin(t, "GET", "/api_keys?limit=5", nil)

	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 4 {
		t.Fatalf("want 4 log lines, got %q", lines)
	}
	for _, l := range lines {
		for _, s := range []string{minted, secret, openAIAdminKey, anthropicAdminKey, "limit="} {
			if strings.Contains(l, s) {
				t.Errorf("log line leaks %q: %s", s, l)
			}
		}
	}
}
