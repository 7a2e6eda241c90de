package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

const testToken = "emulator-token"

// env is one emulator behind a real HTTP server.
type env struct {
	emu *emulator.Emulator
	srv *httptest.Server
}

func newEnv(t *testing.T, cfg emulator.Config) *env {
	t.Helper()
	emu := emulator.New(cfg)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return &env{emu: emu, srv: srv}
}

// bearerTransport adds the platform token the way oauth2.Transport would.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// godoClient is the real godo client, without retries, pointed at the
// emulator. godo resolves its absolute API paths ("/v2/...") against the
// base URL, so the server URL is the base URL, trailing slash or not.
func (e *env) godoClient(t *testing.T, token string, timeout time.Duration) *godo.Client {
	t.Helper()
	hc := &http.Client{Timeout: timeout, Transport: bearerTransport{token: token, base: http.DefaultTransport}}
	c, err := godo.New(hc, godo.SetBaseURL(e.srv.URL+"/"))
	if err != nil {
		t.Fatalf("godo.New: %v", err)
	}
	return c
}

func (e *env) client(t *testing.T) *godo.Client { return e.godoClient(t, testToken, 10*time.Second) }

// rawResponse is a response read in full, for checks godo cannot see.
type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResponse) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a raw request. A nil body sends none; headers come in pairs.
func (e *env) do(t *testing.T, method, path string, body any, headers ...string) rawResponse {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// platform sends a raw platform request with the test token.
func (e *env) platform(t *testing.T, method, path string, body any) rawResponse {
	t.Helper()
	return e.do(t, method, path, body, "Authorization", "Bearer "+testToken)
}

var keySeq atomic.Int64

// Fresh, well-formed provider keys; each call returns a new one.
func anthropicKey() string { return fmt.Sprintf("sk-ant-api03-test%020d", keySeq.Add(1)) }
func openAIKey() string    { return fmt.Sprintf("sk-proj-test%020d", keySeq.Add(1)) }

// provider adapts the two families of godo calls to one shape so the same
// table of tests runs against both.
type provider struct {
	name   string // URL segment
	secret func() string
	create func(ctx context.Context, c *godo.Client, name, secret string) (keyInfo, *godo.Response, error)
	get    func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error)
	list   func(ctx context.Context, c *godo.Client, opt *godo.ListOptions) ([]keyInfo, *godo.Response, error)
	update func(ctx context.Context, c *godo.Client, id, name, secret string) (keyInfo, *godo.Response, error)
	delete func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error)
	agents func(ctx context.Context, c *godo.Client, id string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error)
	state  func(s emulator.State) []emulator.KeyState
}

// keyInfo is what both godo key types have in common, plus OpenAI's models.
type keyInfo struct {
	UUID, Name, CreatedBy string
	CreatedAt, UpdatedAt  *godo.Timestamp
	DeletedAt             *godo.Timestamp
	Models                []*godo.Model
}

func fromAnthropic(k *godo.AnthropicApiKeyInfo) keyInfo {
	if k == nil {
		return keyInfo{}
	}
	return keyInfo{k.Uuid, k.Name, k.CreatedBy, k.CreatedAt, k.UpdatedAt, k.DeletedAt, nil}
}

func fromOpenAI(k *godo.OpenAiApiKey) keyInfo {
	if k == nil {
		return keyInfo{}
	}
	return keyInfo{k.Uuid, k.Name, k.CreatedBy, k.CreatedAt, k.UpdatedAt, k.DeletedAt, k.Models}
}

func mapKeys[T any](in []T, f func(T) keyInfo) []keyInfo {
	out := make([]keyInfo, 0, len(in))
	for _, k := range in {
		out = append(out, f(k))
	}
	return out
}

var anthropicProvider = provider{
	name:   "anthropic",
	secret: anthropicKey,
	create: func(ctx context.Context, c *godo.Client, name, secret string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.CreateAnthropicAPIKey(ctx, &godo.AnthropicAPIKeyCreateRequest{Name: name, ApiKey: secret})
		return fromAnthropic(k), r, err
	},
	get: func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.GetAnthropicAPIKey(ctx, id)
		return fromAnthropic(k), r, err
	},
	list: func(ctx context.Context, c *godo.Client, opt *godo.ListOptions) ([]keyInfo, *godo.Response, error) {
		ks, r, err := c.AgentPlatform.ListAnthropicAPIKeys(ctx, opt)
		return mapKeys(ks, fromAnthropic), r, err
	},
	update: func(ctx context.Context, c *godo.Client, id, name, secret string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.UpdateAnthropicAPIKey(ctx, id, &godo.AnthropicAPIKeyUpdateRequest{ApiKeyUuid: id, Name: name, ApiKey: secret})
		return fromAnthropic(k), r, err
	},
	delete: func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.DeleteAnthropicAPIKey(ctx, id)
		return fromAnthropic(k), r, err
	},
	agents: func(ctx context.Context, c *godo.Client, id string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error) {
		return c.AgentPlatform.ListAgentsByAnthropicAPIKey(ctx, id, opt)
	},
	state: func(s emulator.State) []emulator.KeyState { return s.AnthropicKeys },
}

var openAIProvider = provider{
	name:   "openai",
	secret: openAIKey,
	create: func(ctx context.Context, c *godo.Client, name, secret string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.CreateOpenAIAPIKey(ctx, &godo.OpenAIAPIKeyCreateRequest{Name: name, ApiKey: secret})
		return fromOpenAI(k), r, err
	},
	get: func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.GetOpenAIAPIKey(ctx, id)
		return fromOpenAI(k), r, err
	},
	list: func(ctx context.Context, c *godo.Client, opt *godo.ListOptions) ([]keyInfo, *godo.Response, error) {
		ks, r, err := c.AgentPlatform.ListOpenAIAPIKeys(ctx, opt)
		return mapKeys(ks, fromOpenAI), r, err
	},
	update: func(ctx context.Context, c *godo.Client, id, name, secret string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.UpdateOpenAIAPIKey(ctx, id, &godo.OpenAIAPIKeyUpdateRequest{ApiKeyUuid: id, Name: name, ApiKey: secret})
		return fromOpenAI(k), r, err
	},
	delete: func(ctx context.Context, c *godo.Client, id string) (keyInfo, *godo.Response, error) {
		k, r, err := c.AgentPlatform.DeleteOpenAIAPIKey(ctx, id)
		return fromOpenAI(k), r, err
	},
	agents: func(ctx context.Context, c *godo.Client, id string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error) {
		return c.AgentPlatform.ListAgentsByOpenAIAPIKey(ctx, id, opt)
	},
	state: func(s emulator.State) []emulator.KeyState { return s.OpenAIKeys },
}

var bothProviders = map[string]provider{"anthropic": anthropicProvider, "openai": openAIProvider}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// apiError asserts err is a *godo.ErrorResponse with the given status.
func apiError(t *testing.T, err error, status int) *godo.ErrorResponse {
	t.Helper()
	var er *godo.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("want *godo.ErrorResponse with status %d, got %T: %v", status, err, err)
	}
	if er.Response.StatusCode != status {
		t.Fatalf("status = %d, want %d (%v)", er.Response.StatusCode, status, er)
	}
	return er
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// createKey creates a key through godo and returns its uuid and secret.
func (e *env) createKey(t *testing.T, p provider, name string) (string, string) {
	t.Helper()
	secret := p.secret()
	k, _, err := p.create(context.Background(), e.client(t), name, secret)
	mustOK(t, err)
	return k.UUID, secret
}
