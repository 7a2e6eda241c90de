package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/digitalocean/godo"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

var (
	deploymentURL = regexp.MustCompile(`^https://[a-z0-9]{24}\.agents\.do-ai\.run$`)
	agentSecret   = regexp.MustCompile(`^[A-Za-z0-9]{32}$`)
)

// newAgent creates an agent through godo and returns it as godo reads it.
func (e *env) newAgent(t *testing.T, name string) *godo.Agent {
	t.Helper()
	a, _, err := e.client(t).AgentPlatform.CreateAgent(context.Background(), agentRequest(name))
	mustOK(t, err)
	return a
}

// callAgent sends a chat completion to the agent's emulated endpoint, as an
// application would with an agent API key, and returns the HTTP status: 200
// when secret is a live key of that agent.
func (e *env) callAgent(t *testing.T, a *godo.Agent, secret string) int {
	t.Helper()
	if a.Deployment == nil {
		t.Fatalf("agent %s has no deployment", a.Uuid)
	}
	base, ok := emulator.AgentEndpointURL(e.srv.URL, a.Deployment.Url)
	if !ok {
		t.Fatalf("%q is not an agent endpoint url", a.Deployment.Url)
	}
	body := `{"messages":[{"role":"user","content":"hi"}],"stream":false}`
	return e.do(t, http.MethodPost, strings.TrimPrefix(base, e.srv.URL)+"/api/v1/chat/completions?agent=true", body,
		"Authorization", "Bearer "+secret, "Content-Type", "application/json").status
}

func agentKeysPath(agentUUID string) string { return "/v2/gen-ai/agents/" + agentUUID + "/api_keys" }

func TestAgentsCarryTheirDeployment(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	created := e.newAgent(t, "support")
	got, _, err := e.client(t).AgentPlatform.GetAgent(context.Background(), created.Uuid)
	mustOK(t, err)
	d := got.Deployment
	if d == nil || !deploymentURL.MatchString(d.Url) || d.Status != "STATUS_RUNNING" || d.Visibility != "VISIBILITY_PRIVATE" {
		t.Fatalf("deployment = %+v", d)
	}
	if created.Deployment == nil || created.Deployment.Url != d.Url {
		t.Errorf("the create answered deployment %+v, the get %+v", created.Deployment, d)
	}
	if other := e.newAgent(t, "other"); other.Deployment.Url == d.Url {
		t.Errorf("two agents share the endpoint %s", d.Url)
	}
	for _, bad := range []string{"http://x.agents.do-ai.run", "https://agents.do-ai.run", "https://a.b.agents.do-ai.run", "https://x.example.com"} {
		if u, ok := emulator.AgentEndpointURL(e.srv.URL, bad); ok {
			t.Errorf("AgentEndpointURL(%q) = %q, want refused", bad, u)
		}
	}
}

// Every operation of the reference's table through the real godo client,
// and the endpoint's view of each secret after it.
func TestAgentAPIKeyLifecycle(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	a := e.newAgent(t, "support")
	other := e.newAgent(t, "other")

	created, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "web-app"})
	mustOK(t, err)
	if !uuidV4.MatchString(created.Uuid) || created.Name != "web-app" || !agentSecret.MatchString(created.SecretKey) ||
		created.CreatedAt == nil || created.CreatedBy == "" || created.DeletedAt != nil {
		t.Fatalf("created = %+v", created)
	}
	if s := e.callAgent(t, a, created.SecretKey); s != http.StatusOK {
		t.Fatalf("the new secret: HTTP %d, want 200", s)
	}
	for name, secret := range map[string]string{"none": "", "wrong": "nope", "platform token": testToken} {
		if s := e.callAgent(t, a, secret); s != http.StatusUnauthorized {
			t.Errorf("%s: HTTP %d, want 401", name, s)
		}
	}
	if s := e.callAgent(t, other, created.SecretKey); s != http.StatusUnauthorized {
		t.Errorf("another agent's endpoint accepted the key: HTTP %d", s)
	}

	listed, resp, err := c.AgentPlatform.ListAgentAPIKeys(ctx, a.Uuid, nil)
	mustOK(t, err)
	if len(listed) != 1 || listed[0].Uuid != created.Uuid || listed[0].Name != "web-app" || listed[0].SecretKey != "" || resp.Meta.Total != 1 {
		t.Fatalf("listed = %+v, meta %+v", listed, resp.Meta)
	}
	if raw := e.platform(t, http.MethodGet, agentKeysPath(a.Uuid), nil); strings.Contains(string(raw.body), "secret_key") ||
		strings.Contains(string(raw.body), created.SecretKey) {
		t.Errorf("a listing shows a secret: %s", raw.body)
	}
	if others, _, err := c.AgentPlatform.ListAgentAPIKeys(ctx, other.Uuid, nil); err != nil || len(others) != 0 {
		t.Errorf("the other agent lists %+v, %v", others, err)
	}

	renamed, _, err := c.AgentPlatform.UpdateAgentAPIKey(ctx, a.Uuid, created.Uuid, &godo.AgentAPIKeyUpdateRequest{APIKeyUuid: created.Uuid, Name: "web-app-2"})
	mustOK(t, err)
	if renamed.Uuid != created.Uuid || renamed.Name != "web-app-2" || renamed.SecretKey != "" {
		t.Errorf("renamed = %+v", renamed)
	}
	if s := e.callAgent(t, a, created.SecretKey); s != http.StatusOK {
		t.Errorf("a rename changed the secret: HTTP %d", s)
	}

	regenerated, _, err := c.AgentPlatform.RegenerateAgentAPIKey(ctx, a.Uuid, created.Uuid)
	mustOK(t, err)
	if regenerated.Uuid != created.Uuid || regenerated.Name != "web-app-2" || !agentSecret.MatchString(regenerated.SecretKey) ||
		regenerated.SecretKey == created.SecretKey {
		t.Fatalf("regenerated = %+v", regenerated)
	}
	if s := e.callAgent(t, a, created.SecretKey); s != http.StatusUnauthorized {
		t.Errorf("the replaced secret: HTTP %d, want 401", s)
	}
	if s := e.callAgent(t, a, regenerated.SecretKey); s != http.StatusOK {
		t.Errorf("the regenerated secret: HTTP %d, want 200", s)
	}
	if n := e.emu.SecretChanges()[created.Uuid]; n != 1 {
		t.Errorf("secret changes of the key = %d, want 1", n)
	}

	deleted, _, err := c.AgentPlatform.DeleteAgentAPIKey(ctx, a.Uuid, created.Uuid)
	mustOK(t, err)
	if deleted.Uuid != created.Uuid || deleted.DeletedAt == nil || deleted.SecretKey != "" {
		t.Errorf("deleted = %+v", deleted)
	}
	if s := e.callAgent(t, a, regenerated.SecretKey); s != http.StatusUnauthorized {
		t.Errorf("a deleted key's secret: HTTP %d, want 401", s)
	}
	_, _, err = c.AgentPlatform.DeleteAgentAPIKey(ctx, a.Uuid, created.Uuid)
	if er := apiError(t, err, http.StatusNotFound); er.Message != "The resource you were accessing could not be found." {
		t.Errorf("second delete: %v", er)
	}
}

func TestAgentAPIKeyRefusals(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	a := e.newAgent(t, "support")
	other := e.newAgent(t, "other")
	key, _, err := e.client(t).AgentPlatform.CreateAgentAPIKey(context.Background(), a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "k"})
	mustOK(t, err)
	const unknown = "00000000-0000-4000-8000-000000000000"
	keyPath := agentKeysPath(a.Uuid) + "/" + key.Uuid

	tests := map[string]struct {
		method, path string
		body         any
		status       int
		message      string
	}{
		"create, no name":          {"POST", agentKeysPath(a.Uuid), map[string]string{"agent_uuid": a.Uuid}, 400, "name is required"},
		"create, empty body":       {"POST", agentKeysPath(a.Uuid), nil, 400, "name is required"},
		"create, not JSON":         {"POST", agentKeysPath(a.Uuid), "{", 400, "request body is not valid JSON"},
		"create, other agent_uuid": {"POST", agentKeysPath(a.Uuid), map[string]string{"agent_uuid": other.Uuid, "name": "n"}, 400, "agent_uuid does not match the agent in the path"},
		"create, unknown agent":    {"POST", agentKeysPath(unknown), map[string]string{"name": "n"}, 404, ""},
		"list, unknown agent":      {"GET", agentKeysPath(unknown), nil, 404, ""},
		"list, bad page":           {"GET", agentKeysPath(a.Uuid) + "?page=0", nil, 400, "page must be a positive integer"},
		"rename, unknown key":      {"PUT", agentKeysPath(a.Uuid) + "/" + unknown, map[string]string{"name": "n"}, 404, ""},
		"rename, other agent":      {"PUT", agentKeysPath(other.Uuid) + "/" + key.Uuid, map[string]string{"name": "n"}, 404, ""},
		"rename, other key uuid":   {"PUT", keyPath, map[string]string{"api_key_uuid": unknown, "name": "n"}, 400, "api_key_uuid does not match the key in the path"},
		"delete, unknown key":      {"DELETE", agentKeysPath(a.Uuid) + "/" + unknown, nil, 404, ""},
		"delete, unknown agent":    {"DELETE", agentKeysPath(unknown) + "/" + key.Uuid, nil, 404, ""},
		"regenerate, unknown key":  {"PUT", agentKeysPath(a.Uuid) + "/" + unknown + "/regenerate", nil, 404, ""},
		"regenerate, other agent":  {"PUT", agentKeysPath(other.Uuid) + "/" + key.Uuid + "/regenerate", nil, 404, ""},
		"regenerate, wrong method": {"POST", keyPath + "/regenerate", nil, 405, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.platform(t, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("HTTP %d, want %d: %s", r.status, tc.status, r.body)
			}
			if m := r.json(t); tc.message != "" && m["message"] != tc.message {
				t.Errorf("message = %v, want %q", m["message"], tc.message)
			}
		})
	}
	// None of it changed the key, and auth applies as on every platform route.
	if got := e.emu.AgentAPIKeys(); len(got) != 1 || got[0].Name != "k" {
		t.Errorf("keys after refusals = %+v", got)
	}
	if r := e.do(t, "GET", agentKeysPath(a.Uuid), nil); r.status != http.StatusUnauthorized || r.header.Get("Ratelimit-Limit") == "" {
		t.Errorf("no token: HTTP %d, headers %v", r.status, r.header)
	}
}

// The listing pages like every other: 20 by default, at most 200, links and
// meta.total. godo's ListAgentAPIKeys (v1.239.0) drops its ListOptions and
// never sends page or per_page, unlike the reference, which pages this list
// like the others: the pages past the first are read here with raw requests,
// and a client that needs every key cannot page through that godo method.
func TestAgentAPIKeyPaging(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	a := e.newAgent(t, "support")
	for i := range 25 {
		_, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: fmt.Sprintf("k%02d", i)})
		mustOK(t, err)
	}

	first, resp, err := c.AgentPlatform.ListAgentAPIKeys(ctx, a.Uuid, &godo.ListOptions{Page: 2, PerPage: 5})
	mustOK(t, err)
	if len(first) != 20 || first[0].Name != "k00" || resp.Meta.Total != 25 || resp.Links.IsLastPage() {
		t.Fatalf("godo's listing: %d keys from %q, meta %+v (godo sent page 1 at the default size, whatever was asked)", len(first), first[0].Name, resp.Meta)
	}

	raw := e.platform(t, http.MethodGet, agentKeysPath(a.Uuid)+"?page=3&per_page=10", nil).json(t)
	infos := raw["api_key_infos"].([]any)
	meta := raw["meta"].(map[string]any)
	pages := raw["links"].(map[string]any)["pages"].(map[string]any)
	if len(infos) != 5 || infos[0].(map[string]any)["name"] != "k20" || meta["total"] != 25.0 || meta["page"] != 3.0 || meta["pages"] != 3.0 {
		t.Errorf("page 3 of 10: %d infos, meta %v", len(infos), meta)
	}
	if _, ok := pages["next"]; ok || pages["previous"] == nil || pages["first"] == nil {
		t.Errorf("last page links = %v", pages)
	}
	if raw := e.platform(t, http.MethodGet, agentKeysPath(a.Uuid)+"?per_page=500", nil).json(t); raw["meta"].(map[string]any)["pages"] != 1.0 ||
		len(raw["api_key_infos"].([]any)) != 25 {
		t.Errorf("per_page 500 is not clamped to one page of 200: meta %v", raw["meta"])
	}

	e.emu.InjectFault(emulator.Fault{Mode: "short", Method: "GET", Path: agentKeysPath(a.Uuid)})
	short, resp, err := c.AgentPlatform.ListAgentAPIKeys(ctx, a.Uuid, nil)
	mustOK(t, err)
	if len(short) != 19 || resp.Meta.Total != 25 {
		t.Errorf("a short page has %d keys, meta %+v", len(short), resp.Meta)
	}
}

func TestDeletingAnAgentDeletesItsAPIKeys(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	a := e.newAgent(t, "support")
	other := e.newAgent(t, "other")
	k1, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "one"})
	mustOK(t, err)
	_, _, err = c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "two"})
	mustOK(t, err)
	kept, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, other.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "kept"})
	mustOK(t, err)
	if n := len(e.emu.AgentAPIKeys()); n != 3 {
		t.Fatalf("%d agent API keys, want 3", n)
	}

	_, _, err = c.AgentPlatform.DeleteAgent(ctx, a.Uuid)
	mustOK(t, err)
	if got := e.emu.AgentAPIKeys(); len(got) != 1 || got[0].UUID != kept.Uuid || got[0].AgentUUID != other.Uuid {
		t.Errorf("after the agent's delete: %+v", got)
	}
	if s := e.callAgent(t, a, k1.SecretKey); s != http.StatusNotFound {
		t.Errorf("a deleted agent's endpoint: HTTP %d, want 404", s)
	}
	_, _, err = c.AgentPlatform.ListAgentAPIKeys(ctx, a.Uuid, nil)
	apiError(t, err, http.StatusNotFound)

	e.emu.Reset()
	if got := e.emu.AgentAPIKeys(); len(got) != 0 {
		t.Errorf("after Reset: %+v", got)
	}
}

// Faults reach the new routes, by a path prefix or by a route pattern that
// matches any agent; a dropped create or regenerate is applied all the same.
func TestAgentAPIKeyFaults(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	a := e.newAgent(t, "support")
	const anyAgentsKeys = "/v2/gen-ai/agents/{agent_uuid}/api_keys"

	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: anyAgentsKeys, Status: http.StatusServiceUnavailable})
	_, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "refused"})
	apiError(t, err, http.StatusServiceUnavailable)
	if n := len(e.emu.AgentAPIKeys()); n != 0 {
		t.Fatalf("a status fault made %d keys", n)
	}

	// An agent's own update does not take a fault aimed at its keys.
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: anyAgentsKeys + "/", Status: http.StatusInternalServerError})
	_, _, err = c.AgentPlatform.UpdateAgent(ctx, a.Uuid, &godo.AgentUpdateRequest{Name: "renamed-agent"})
	mustOK(t, err)
	if n := e.emu.PendingFaults(); n != 1 {
		t.Fatalf("the agent update took the keys' fault (%d pending)", n)
	}
	e.emu.ClearFaults()

	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: anyAgentsKeys, Mode: "drop"})
	_, _, err = c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "lost-answer"})
	if err == nil {
		t.Fatal("a dropped create answered")
	}
	keys := e.emu.AgentAPIKeys()
	if len(keys) != 1 || keys[0].Name != "lost-answer" {
		t.Fatalf("after a dropped create: %+v", keys)
	}

	known, _, err := c.AgentPlatform.CreateAgentAPIKey(ctx, a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "known"})
	mustOK(t, err)
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: anyAgentsKeys + "/{api_key_uuid}/regenerate", Mode: "drop"})
	if _, _, err := c.AgentPlatform.RegenerateAgentAPIKey(ctx, a.Uuid, known.Uuid); err == nil {
		t.Fatal("a dropped regenerate answered")
	}
	if s := e.callAgent(t, a, known.SecretKey); s != http.StatusUnauthorized {
		t.Errorf("after a dropped regenerate the old secret: HTTP %d, want 401", s)
	}

	// Faults, counts and the request log cover the endpoint too.
	e.emu.InjectFault(emulator.Fault{Path: "/agent-endpoints/", Status: http.StatusBadGateway})
	if s := e.callAgent(t, a, "anything"); s != http.StatusBadGateway {
		t.Errorf("endpoint fault: HTTP %d", s)
	}
	counts := e.emu.Counts()
	for route, want := range map[string]int{
		"POST /v2/gen-ai/agents/{agent_uuid}/api_keys":                          3,
		"PUT /v2/gen-ai/agents/{agent_uuid}/api_keys/{api_key_uuid}/regenerate": 1,
		"POST /agent-endpoints/{endpoint_host}/api/v1/chat/completions":         2,
	} {
		if counts[route] != want {
			t.Errorf("counts[%q] = %d, want %d (%v)", route, counts[route], want, counts)
		}
	}
}

// The control view lists every agent's keys for counting, never a secret.
func TestAgentAPIKeysControl(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	a := e.newAgent(t, "support")
	k, _, err := e.client(t).AgentPlatform.CreateAgentAPIKey(context.Background(), a.Uuid, &godo.AgentAPIKeyCreateRequest{Name: "web"})
	mustOK(t, err)
	r := e.do(t, http.MethodGet, "/_emulator/agent-api-keys", nil)
	if r.status != http.StatusOK || strings.Contains(string(r.body), k.SecretKey) || strings.Contains(string(r.body), "secret") {
		t.Fatalf("HTTP %d: %s", r.status, r.body)
	}
	if !strings.Contains(string(r.body), `"agent_uuid":"`+a.Uuid+`"`) || !strings.Contains(string(r.body), `"uuid":"`+k.Uuid+`"`) {
		t.Errorf("control view = %s", r.body)
	}
	for _, rec := range e.emu.Requests() {
		if strings.Contains(rec.Path, k.SecretKey) {
			t.Errorf("the request log shows a secret: %+v", rec)
		}
	}
}
