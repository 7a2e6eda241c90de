package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

const emulatorToken = "emulator-token"

// agentKeysEnv is the real client against the in-process emulator, with
// limits high enough that only what a test injects gets in the way.
type agentKeysEnv struct {
	emu    *emulator.Emulator
	srv    *httptest.Server
	client *GodoClient
}

func newAgentKeysEnv(t *testing.T) *agentKeysEnv {
	t.Helper()
	emu := emulator.New(emulator.Config{Tokens: []string{emulatorToken}, PerMinuteLimit: 100_000, PerHourLimit: 1_000_000})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	p, err := New(srv.URL+"/", emulatorToken, "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.CloseIdleConnections)
	return &agentKeysEnv{emu: emu, srv: srv, client: p}
}

// post sends a platform request with the token and decodes the answer.
func (e *agentKeysEnv) post(t *testing.T, path string, body any, answer any) {
	t.Helper()
	buf, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(string(buf)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+emulatorToken)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(answer); err != nil {
		t.Fatal(err)
	}
}

// newAgent creates an agent on the emulator (the plugin never creates one).
func (e *agentKeysEnv) newAgent(t *testing.T, name string) string {
	t.Helper()
	var answer struct {
		Agent struct {
			UUID string `json:"uuid"`
		} `json:"agent"`
	}
	e.post(t, "/v2/gen-ai/agents", map[string]string{
		"name": name, "instruction": "be helpful", "model_uuid": "model-1", "region": "tor1", "project_id": "project-1",
	}, &answer)
	return answer.Agent.UUID
}

// callAgent is an application calling the agent's endpoint with secret:
// 200 when the secret is live.
func (e *agentKeysEnv) callAgent(t *testing.T, agent Agent, secret string) int {
	t.Helper()
	base, ok := emulator.AgentEndpointURL(e.srv.URL, agent.DeploymentURL)
	if !ok {
		t.Fatalf("%q is not an agent endpoint url", agent.DeploymentURL)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/api/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (e *agentKeysEnv) count(route string) int { return e.emu.Counts()[route] }

const (
	agentKeysRoute     = "/v2/gen-ai/agents/{agent_uuid}/api_keys"
	createAgentKeyHits = "POST " + agentKeysRoute
	listAgentKeysHits  = "GET " + agentKeysRoute
	renameAgentKeyHits = "PUT " + agentKeysRoute + "/{api_key_uuid}"
	deleteAgentKeyHits = "DELETE " + agentKeysRoute + "/{api_key_uuid}"
	regenerateKeyHits  = "PUT " + agentKeysRoute + "/{api_key_uuid}/regenerate"
	unknownUUID        = "00000000-0000-4000-8000-000000000000"
)

func TestAgentKeys_EveryOperation(t *testing.T) {
	e := newAgentKeysEnv(t)
	ctx := context.Background()
	p := e.client
	agentUUID := e.newAgent(t, "support")

	agent, err := p.GetAgent(ctx, agentUUID)
	if err != nil {
		t.Fatal(err)
	}
	if agent.UUID != agentUUID || agent.Name != "support" || !strings.HasSuffix(agent.DeploymentURL, ".agents.do-ai.run") {
		t.Fatalf("agent = %+v", agent)
	}

	created, err := p.CreateAgentKey(ctx, agentUUID, "web-app")
	if err != nil {
		t.Fatal(err)
	}
	if !IsUUID(created.UUID) || created.AgentUUID != agentUUID || created.Name != "web-app" || created.Secret == "" || created.CreatedAt.IsZero() {
		t.Fatalf("created = %+v", created)
	}
	if s := e.callAgent(t, agent, created.Secret); s != http.StatusOK {
		t.Fatalf("the created secret: HTTP %d, want 200", s)
	}

	listed, err := p.ListAgentKeys(ctx, agentUUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0].UUID != created.UUID || listed[0].Name != "web-app" || listed[0].Secret != "" {
		t.Fatalf("listed = %+v", listed)
	}

	renamed, err := p.RenameAgentKey(ctx, agentUUID, created.UUID, "web-app-2")
	if err != nil {
		t.Fatal(err)
	}
	if renamed.UUID != created.UUID || renamed.Name != "web-app-2" || renamed.Secret != "" {
		t.Fatalf("renamed = %+v", renamed)
	}

	regenerated, err := p.RegenerateAgentKey(ctx, agentUUID, created.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if regenerated.UUID != created.UUID || regenerated.Secret == "" || regenerated.Secret == created.Secret {
		t.Fatalf("regenerated = %+v", regenerated)
	}
	if s := e.callAgent(t, agent, created.Secret); s != http.StatusUnauthorized {
		t.Errorf("the replaced secret: HTTP %d, want 401", s)
	}
	if s := e.callAgent(t, agent, regenerated.Secret); s != http.StatusOK {
		t.Errorf("the regenerated secret: HTTP %d, want 200", s)
	}

	if err := p.DeleteAgentKey(ctx, agentUUID, created.UUID); err != nil {
		t.Fatal(err)
	}
	if s := e.callAgent(t, agent, regenerated.Secret); s != http.StatusUnauthorized {
		t.Errorf("a deleted key's secret: HTTP %d, want 401", s)
	}
	// A second delete is the typed not-found, a definite answer, as
	// DeleteKey's is: the caller decides it counts as done.
	err = p.DeleteAgentKey(ctx, agentUUID, created.UUID)
	if !errors.Is(err, ErrNotFound) || !IsRefusal(err) || IsPossiblyApplied(err) {
		t.Errorf("second delete = %v", err)
	}

	for name, err := range map[string]error{
		"get agent":  func() error { _, err := p.GetAgent(ctx, unknownUUID); return err }(),
		"create":     func() error { _, err := p.CreateAgentKey(ctx, unknownUUID, "n"); return err }(),
		"list":       func() error { _, err := p.ListAgentKeys(ctx, unknownUUID); return err }(),
		"rename":     func() error { _, err := p.RenameAgentKey(ctx, agentUUID, unknownUUID, "n"); return err }(),
		"regenerate": func() error { _, err := p.RegenerateAgentKey(ctx, agentUUID, unknownUUID); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of an unknown object: %v, want not found", name, err)
		}
	}
	if _, err := p.CreateAgentKey(ctx, agentUUID, ""); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "name is required") {
		t.Errorf("create without a name: %v, want the platform's refusal", err)
	}
}

// Malformed uuids are refused before anything is sent: godo pastes them
// into request paths.
func TestAgentKeys_RefuseMalformedUUIDs(t *testing.T) {
	e := newAgentKeysEnv(t)
	ctx := context.Background()
	p := e.client
	bad := "../anthropic/keys"
	errs := map[string]error{}
	_, errs["get agent"] = p.GetAgent(ctx, bad)
	_, errs["create"] = p.CreateAgentKey(ctx, bad, "n")
	_, errs["list"] = p.ListAgentKeys(ctx, bad)
	_, errs["rename"] = p.RenameAgentKey(ctx, testAgentUUID, bad, "n")
	errs["delete"] = p.DeleteAgentKey(ctx, bad, testKeyUUID)
	_, errs["regenerate"] = p.RegenerateAgentKey(ctx, testAgentUUID, bad)
	for op, err := range errs {
		if !errors.Is(err, ErrMalformedUUID) || strings.Contains(err.Error(), bad) {
			t.Errorf("%s: %v", op, err)
		}
	}
	if n := len(e.emu.Requests()); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

// A listing past one page of 200 reads every page, and one that ends short
// of meta.total is an error, not a shorter list.
func TestAgentKeys_ListsEveryPage(t *testing.T) {
	e := newAgentKeysEnv(t)
	ctx := context.Background()
	agentUUID := e.newAgent(t, "busy")
	const keys = MaxPageSize + 5
	for i := range keys {
		var answer map[string]any
		e.post(t, "/v2/gen-ai/agents/"+agentUUID+"/api_keys", map[string]string{"name": fmt.Sprintf("k%03d", i)}, &answer)
	}

	listed, err := e.client.ListAgentKeys(ctx, agentUUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != keys || listed[0].Name != "k000" || listed[keys-1].Name != fmt.Sprintf("k%03d", keys-1) {
		t.Fatalf("listed %d keys, from %q", len(listed), listed[0].Name)
	}
	var asked []string
	for _, r := range e.emu.Requests() {
		if r.Method == http.MethodGet {
			asked = append(asked, r.Path)
		}
	}
	if n := e.count(listAgentKeysHits); n != 2 || len(asked) != 2 {
		t.Errorf("listing took %d requests (%v), want 2", n, asked)
	}

	e.emu.InjectFault(emulator.Fault{Mode: "short", Method: "GET", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys"})
	if _, err := e.client.ListAgentKeys(ctx, agentUUID); err == nil || !strings.Contains(err.Error(), "meta.total") {
		t.Errorf("a short listing: %v, want an error", err)
	}
}

// A create or a regenerate whose answer is lost is sent once, and its error
// says the change may have happened; rename and delete are re-sent.
func TestAgentKeys_RetryPolicy(t *testing.T) {
	ctx := context.Background()

	t.Run("create, answer lost", func(t *testing.T) {
		e := newAgentKeysEnv(t)
		agentUUID := e.newAgent(t, "support")
		e.emu.InjectFault(emulator.Fault{Mode: "drop", Method: "POST", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys"})
		_, err := e.client.CreateAgentKey(ctx, agentUUID, "lost")
		if err == nil || IsRefusal(err) {
			t.Fatalf("a lost create: %v, want an error that is not a refusal", err)
		}
		if n := e.count(createAgentKeyHits); n != 1 {
			t.Errorf("create sent %d times, want 1", n)
		}
		// The key was made: the caller finds it by listing.
		listed, err := e.client.ListAgentKeys(ctx, agentUUID)
		if err != nil || len(listed) != 1 || listed[0].Name != "lost" {
			t.Errorf("after a lost create: %+v, %v", listed, err)
		}
	})

	t.Run("create, 503", func(t *testing.T) {
		e := newAgentKeysEnv(t)
		agentUUID := e.newAgent(t, "support")
		e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/agents/", Status: http.StatusServiceUnavailable})
		if _, err := e.client.CreateAgentKey(ctx, agentUUID, "n"); err == nil || IsRefusal(err) {
			t.Fatalf("a 503 create: %v", err)
		}
		if n := e.count(createAgentKeyHits); n != 1 {
			t.Errorf("create sent %d times, want 1", n)
		}
	})

	t.Run("regenerate, answer lost", func(t *testing.T) {
		e := newAgentKeysEnv(t)
		agentUUID := e.newAgent(t, "support")
		key, err := e.client.CreateAgentKey(ctx, agentUUID, "k")
		if err != nil {
			t.Fatal(err)
		}
		e.emu.InjectFault(emulator.Fault{Mode: "drop", Method: "PUT", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys/{api_key_uuid}/regenerate"})
		if _, err := e.client.RegenerateAgentKey(ctx, agentUUID, key.UUID); err == nil || IsRefusal(err) {
			t.Fatalf("a lost regenerate: %v", err)
		}
		if n := e.count(regenerateKeyHits); n != 1 {
			t.Errorf("regenerate sent %d times, want 1", n)
		}
		agent, err := e.client.GetAgent(ctx, agentUUID)
		if err != nil {
			t.Fatal(err)
		}
		if s := e.callAgent(t, agent, key.Secret); s != http.StatusUnauthorized {
			t.Errorf("the old secret after a lost regenerate: HTTP %d, want 401", s)
		}
	})

	t.Run("rename and get are re-sent", func(t *testing.T) {
		e := newAgentKeysEnv(t)
		agentUUID := e.newAgent(t, "support")
		key, err := e.client.CreateAgentKey(ctx, agentUUID, "k")
		if err != nil {
			t.Fatal(err)
		}
		e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys/", Status: http.StatusBadGateway, Count: MaxAttempts - 1})
		if _, err := e.client.RenameAgentKey(ctx, agentUUID, key.UUID, "k2"); err != nil {
			t.Fatal(err)
		}
		if n := e.count(renameAgentKeyHits); n != MaxAttempts {
			t.Errorf("rename sent %d times, want %d", n, MaxAttempts)
		}
		e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/agents/", Status: http.StatusTooManyRequests})
		if _, err := e.client.GetAgent(ctx, agentUUID); err != nil {
			t.Errorf("get after a 429: %v", err)
		}
	})

	t.Run("delete, answer lost, then not found", func(t *testing.T) {
		e := newAgentKeysEnv(t)
		agentUUID := e.newAgent(t, "support")
		key, err := e.client.CreateAgentKey(ctx, agentUUID, "k")
		if err != nil {
			t.Fatal(err)
		}
		e.emu.InjectFault(emulator.Fault{Mode: "drop", Method: "DELETE", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys/"})
		err = e.client.DeleteAgentKey(ctx, agentUUID, key.UUID)
		if !errors.Is(err, ErrNotFound) || !IsPossiblyApplied(err) {
			t.Fatalf("delete whose first answer was lost: %v, want not found, possibly applied", err)
		}
		if n := e.count(deleteAgentKeyHits); n != 2 {
			t.Errorf("delete sent %d times, want 2", n)
		}
		if n := len(e.emu.AgentAPIKeys()); n != 0 {
			t.Errorf("%d keys left", n)
		}
	})
}

// No error text shows an agent key's secret, the token, or a secret_key
// an upstream text quotes: on an error answer, on an answer godo cannot
// decode after reading the secret, and on a create or regenerate whose
// answer lacks its uuid. A stub platform answers every request the same.
func TestAgentKeys_ErrorsNeverShowSecrets(t *testing.T) {
	const (
		token  = "stub-token-0123456789"
		secret = "Abc1Def2Ghi3Jkl4Mno5Pqr6Stu7Vwx8"
	)
	ctx := context.Background()
	calls := map[string]func(p *GodoClient) error{
		"get agent": func(p *GodoClient) error { _, err := p.GetAgent(ctx, testAgentUUID); return err },
		"create":    func(p *GodoClient) error { _, err := p.CreateAgentKey(ctx, testAgentUUID, "n"); return err },
		"list":      func(p *GodoClient) error { _, err := p.ListAgentKeys(ctx, testAgentUUID); return err },
		"rename": func(p *GodoClient) error {
			_, err := p.RenameAgentKey(ctx, testAgentUUID, testKeyUUID, "n")
			return err
		},
		"delete": func(p *GodoClient) error { return p.DeleteAgentKey(ctx, testAgentUUID, testKeyUUID) },
		"regenerate": func(p *GodoClient) error {
			_, err := p.RegenerateAgentKey(ctx, testAgentUUID, testKeyUUID)
			return err
		},
	}
	echo := `{"id":"x","message":"cannot store {\"secret_key\":\"` + secret + `\"} for ` + token + `","request_id":"req-1"}`
	answers := map[string]struct {
		status int
		body   string
		only   []string // the calls this answer fails; nil: all of them
	}{
		"400 quoting the answer": {http.StatusBadRequest, echo, nil},
		"409 quoting the answer": {http.StatusConflict, echo, nil},
		"500 quoting the answer": {http.StatusInternalServerError, echo, nil},
		"429 quoting the answer": {http.StatusTooManyRequests, echo, nil},
		"undecodable after the secret": {http.StatusOK,
			`{"api_key_info":{"secret_key":"` + secret + `","uuid":"` + testKeyUUID + `","created_at":"not a time"}}`,
			[]string{"create", "regenerate", "rename", "delete"}},
		"no uuid": {http.StatusOK, `{"api_key_info":{"secret_key":"` + secret + `"}}`, []string{"create", "regenerate"}},
	}
	for name, a := range answers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Request-Id", "req-1")
			w.WriteHeader(a.status)
			_, _ = w.Write([]byte(a.body))
		}))
		p, err := New(srv.URL+"/", token, "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
		if err != nil {
			t.Fatal(err)
		}
		for op, call := range calls {
			if a.only != nil && !slices.Contains(a.only, op) {
				continue
			}
			err := call(p)
			if err == nil {
				t.Errorf("%s, %s: want an error", name, op)
				continue
			}
			for _, leak := range []string{secret, secret[:12], token} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("%s, %s: the error shows %q: %v", name, op, leak, err)
				}
			}
			if a.status == http.StatusBadRequest && !strings.Contains(err.Error(), "cannot store") {
				t.Errorf("%s, %s: the platform's message was lost: %v", name, op, err)
			}
		}
		srv.Close()
	}
}
