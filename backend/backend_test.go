package backend

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

const testToken = "emulator-token"

// Unit tests run with short backoffs and a rate budget far above what they
// send, so that they test the logic, not the clock; the tests of retries and
// of the budget set their own.
const testRetryBase = 2 * time.Millisecond

// testTuning is the unit tests' tuning: the release's, with short backoffs.
func testTuning() tuning {
	t := defaultTuning()
	t.retryBaseDelay = testRetryBase
	return t
}

// unlimited is a rate budget no unit test reaches.
var unlimited = map[string]any{"rate_limit_per_minute": 6_000_000, "rate_limit_per_hour": 360_000_000}

// testEnv is a backend on in-memory storage, configured against an
// in-process emulator that it reaches through the real godo client over
// loopback HTTP.
type testEnv struct {
	t       testing.TB
	b       *gradientBackend
	storage *faultyStorage
	emu     *emulator.Emulator
	srv     *httptest.Server
	logs    *syncBuffer
	// do is a godo client for setting up platform state the way another
	// user of the platform would (keys made in the control panel, agents).
	do *godo.Client

	mu        sync.Mutex
	unchecked []exchange // responses of send, checked at the end
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// newTestEnv returns a configured backend. Extra config fields override the
// defaults.
func newTestEnv(t testing.TB, config map[string]any) *testEnv {
	t.Helper()
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	e := newUnconfiguredEnv(t, emu, srv)
	data := map[string]any{
		"rate_limit_per_minute": unlimited["rate_limit_per_minute"],
		"rate_limit_per_hour":   unlimited["rate_limit_per_hour"],
		"token":                 testToken,
		"api_url":               srv.URL,
		"anthropic_url":         srv.URL + "/anthropic",
		"openai_url":            srv.URL + "/openai",
	}
	for k, v := range config {
		data[k] = v
	}
	e.mustOK(logical.UpdateOperation, "config", data)
	return e
}

func newUnconfiguredEnv(t testing.TB, emu *emulator.Emulator, srv *httptest.Server) *testEnv {
	t.Helper()
	logs := &syncBuffer{}
	storage := &faultyStorage{Storage: &logical.InmemStorage{}}
	conf := &logical.BackendConfig{
		Logger:      hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace}),
		System:      logical.TestSystemView(),
		StorageView: storage,
	}
	b, err := factory(context.Background(), conf, testTuning())
	if err != nil {
		t.Fatalf("factory: %v", err)
	}
	do, err := godo.New(&http.Client{Transport: bearer{testToken}}, godo.SetBaseURL(srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, b: b, storage: storage, emu: emu, srv: srv, logs: logs, do: do}
	t.Cleanup(e.assertNoSecretsLogged)
	t.Cleanup(e.checkCollectedSchemas)
	t.Cleanup(e.assertCacheHoldsWhatStorageHolds)
	return e
}

type bearer struct{ token string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// request sends a request through HandleRequest, as Vault would, and checks
// every successful response against the schema the path declares. Call it
// from the test's goroutine only: the schema check fails the test with
// t.Fatalf; other goroutines use send.
func (e *testEnv) request(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	e.t.Helper()
	resp, err := e.handle(op, path, data)
	e.validateSchema(op, path, resp, err)
	return resp, err
}

// send is request for other goroutines: the schema check of its response
// waits for the end of the test, on the test's goroutine.
func (e *testEnv) send(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	resp, err := e.handle(op, path, data)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.unchecked = append(e.unchecked, exchange{op, path, resp, err})
	return resp, err
}

type exchange struct {
	op   logical.Operation
	path string
	resp *logical.Response
	err  error
}

func (e *testEnv) handle(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	req := &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    e.storage,
		MountPoint: "gradient/",
	}
	resp, err := e.b.HandleRequest(context.Background(), req)
	e.trackSecrets(data)
	return resp, err
}

func (e *testEnv) validateSchema(op logical.Operation, path string, resp *logical.Response, err error) {
	e.t.Helper()
	// A nil read is Vault's 404 and has no body to check.
	notFound := resp == nil && op == logical.ReadOperation
	// The SDK's schema helpers take a *testing.T; benchmarks skip them.
	if t, ok := e.t.(*testing.T); ok && err == nil && !notFound && (resp == nil || !resp.IsError()) {
		schema.ValidateResponse(t, schema.GetResponseSchema(t, e.b.Route(path), op), resp, true)
	}
}

// checkCollectedSchemas checks the responses that send collected.
func (e *testEnv) checkCollectedSchemas() {
	e.mu.Lock()
	collected := e.unchecked
	e.unchecked = nil
	e.mu.Unlock()
	for _, x := range collected {
		e.validateSchema(x.op, x.path, x.resp, x.err)
	}
}

// mustOK fails the test unless the request succeeded.
func (e *testEnv) mustOK(op logical.Operation, path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("%s %s: err=%v resp=%#v", op, path, err, resp)
	}
	return resp
}

// mustBadRequest fails the test unless the request got a 400 whose message
// contains every fragment, and returns the message.
func (e *testEnv) mustBadRequest(op logical.Operation, path string, data map[string]any, fragments ...string) string {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if err != nil {
		e.t.Fatalf("%s %s: want a 400, got a server error: %v", op, path, err)
	}
	if resp == nil || !resp.IsError() {
		e.t.Fatalf("%s %s: want a 400, got %#v", op, path, resp)
	}
	msg := resp.Error().Error()
	if status, _ := logical.RespondErrorCommon(&logical.Request{Operation: op}, resp, nil); status != http.StatusBadRequest {
		e.t.Fatalf("%s %s: status %d, want 400: %s", op, path, status, msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			e.t.Errorf("%s %s: message %q lacks %q", op, path, msg, f)
		}
	}
	e.assertSecretFree("error message", msg)
	return msg
}

// mustServerError fails the test unless the request failed as a server
// fault (5xx), and returns the message.
func (e *testEnv) mustServerError(op logical.Operation, path string, data map[string]any, fragments ...string) string {
	e.t.Helper()
	resp, err := e.request(op, path, data)
	if err == nil {
		e.t.Fatalf("%s %s: want a server error, got %#v", op, path, resp)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			e.t.Errorf("%s %s: error %q lacks %q", op, path, err, f)
		}
	}
	e.assertSecretFree("error", err.Error())
	return err.Error()
}

// secrets remembers every api_key and token a test sent, to check logs and
// messages for them.
var (
	secretsMu sync.Mutex
	secrets   = map[testing.TB]map[string]bool{}
)

func (e *testEnv) trackSecrets(data map[string]any) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if secrets[e.t] == nil {
		secrets[e.t] = map[string]bool{testToken: true}
	}
	for _, field := range []string{"api_key", "token"} {
		if v, ok := data[field].(string); ok && len(strings.TrimSpace(v)) >= 12 {
			secrets[e.t][strings.TrimSpace(v)] = true
		}
	}
}

func (e *testEnv) assertSecretFree(what, text string) {
	e.t.Helper()
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for s := range secrets[e.t] {
		// Any 12 characters of a key in a row count as a leak.
		for i := 0; i+12 <= len(s); i += 4 {
			if strings.Contains(text, s[i:i+12]) {
				e.t.Errorf("%s contains part of a secret: %q", what, text)
				return
			}
		}
	}
}

func (e *testEnv) assertNoSecretsLogged() {
	e.assertSecretFree("the plugin's log", e.logs.String())
}

// state is the emulator's view of the platform.
func (e *testEnv) state() emulator.State { return e.emu.State() }

func (e *testEnv) platformKeys(provider string) []emulator.KeyState {
	if provider == platform.OpenAI {
		return e.state().OpenAIKeys
	}
	return e.state().AnthropicKeys
}

func (e *testEnv) platformKeyNamed(provider, name string) *emulator.KeyState {
	for _, k := range e.platformKeys(provider) {
		if k.Name == name {
			k := k
			return &k
		}
	}
	return nil
}

// ownKeys are the platform keys a create of name can have left: under the
// name, or under one of its provisional names.
func (e *testEnv) ownKeys(provider, name string) []emulator.KeyState {
	var own []emulator.KeyState
	for _, k := range e.platformKeys(provider) {
		if k.Name == name || strings.HasPrefix(k.Name, name+provisionalMark) {
			own = append(own, k)
		}
	}
	return own
}

func (e *testEnv) listKeys() []string {
	resp := e.mustOK(logical.ListOperation, "keys/", nil)
	keys, _ := resp.Data["keys"].([]string)
	return keys
}

// createAgent makes an agent on the platform that uses the key uuid.
func (e *testEnv) createAgent(name, provider, keyUUID string) *godo.Agent {
	e.t.Helper()
	req := &godo.AgentCreateRequest{
		Name: name, Instruction: "answer questions", ModelUuid: "model-1",
		Region: "tor1", ProjectId: "project-1",
	}
	if provider == platform.OpenAI {
		req.OpenAiKeyUuid = keyUUID
	} else {
		req.AnthropicKeyUuid = keyUUID
	}
	a, _, err := e.do.AgentPlatform.CreateAgent(context.Background(), req)
	if err != nil {
		e.t.Fatalf("creating agent %s: %v", name, err)
	}
	return a
}

func (e *testEnv) agentKey(agentUUID string) (anthropic, openai string) {
	for _, a := range e.state().Agents {
		if a.UUID == agentUUID {
			return a.AnthropicKeyUUID, a.OpenAIKeyUUID
		}
	}
	e.t.Fatalf("no agent %s on the platform", agentUUID)
	return "", ""
}

// Test keys in the emulator's accepted formats. Each test uses its own so a
// leak can be traced.
func anthropicKey(tag string) string {
	return "sk-ant-api03-" + strings.Repeat("A", 10) + tag + "-0123456789abcdefXYZ"
}

func openAIKey(tag string) string {
	return "sk-proj-" + strings.Repeat("B", 10) + tag + "-0123456789abcdefXYZ"
}

// fakeClock drives the name cache's TTL in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// faultyStorage fails writes and deletes under one prefix, so a test can
// break the step after a platform call without breaking the WAL before it.
// It can also fail deletes alone, and run a hook once after a List.
type faultyStorage struct {
	logical.Storage
	mu                sync.Mutex
	failPrefix        string
	failDeletesPrefix string
	failPutsPrefix    string
	failGetsPrefix    string
	afterList         func(prefix string)
	beforePut         func(e *logical.StorageEntry) error
	// gotten is every key read, in order, since the last takeGets (which
	// starts the recording).
	gotten    []string
	recording bool
	// bypassed are key writes that did not pass through the key cache's
	// storage (key_cache_test.go).
	bypassed []string
}

// failGetsUnder fails only reads under prefix ("" stops).
func (s *faultyStorage) failGetsUnder(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failGetsPrefix = prefix
}

// takeGets returns the keys read since the last call, and records the
// next ones.
func (s *faultyStorage) takeGets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.gotten
	s.gotten, s.recording = nil, true
	return got
}

func (s *faultyStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	if s.recording {
		s.gotten = append(s.gotten, key)
	}
	s.mu.Unlock()
	if s.failing(key, &s.failGetsPrefix) {
		return nil, errors.New("injected storage failure")
	}
	return s.Storage.Get(ctx, key)
}

// onPut runs hook before every Put (nil stops); an error it returns fails
// the Put.
func (s *faultyStorage) onPut(hook func(e *logical.StorageEntry) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.beforePut = hook
}

func (s *faultyStorage) failUnder(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPrefix = prefix
}

// failDeletesUnder fails only deletes under prefix ("" stops).
func (s *faultyStorage) failDeletesUnder(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failDeletesPrefix = prefix
}

// failPutsUnder fails only writes under prefix ("" stops).
func (s *faultyStorage) failPutsUnder(prefix string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPutsPrefix = prefix
}

// onNextList runs hook once, after the next List has read its result and
// before it returns it.
func (s *faultyStorage) onNextList(hook func(prefix string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.afterList = hook
}

func (s *faultyStorage) failing(key string, prefix *string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *prefix != "" && strings.HasPrefix(key, *prefix)
}

func (s *faultyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.mu.Lock()
	hook := s.beforePut
	s.mu.Unlock()
	if hook != nil {
		if err := hook(e); err != nil {
			return err
		}
	}
	if s.failing(e.Key, &s.failPrefix) || s.failing(e.Key, &s.failPutsPrefix) {
		return errors.New("injected storage failure")
	}
	s.checkKeyWriteKeepsTheCache(e.Key)
	return s.Storage.Put(ctx, e)
}

func (s *faultyStorage) Delete(ctx context.Context, key string) error {
	if s.failing(key, &s.failPrefix) || s.failing(key, &s.failDeletesPrefix) {
		return errors.New("injected storage failure")
	}
	s.checkKeyWriteKeepsTheCache(key)
	return s.Storage.Delete(ctx, key)
}

func (s *faultyStorage) List(ctx context.Context, prefix string) ([]string, error) {
	keys, err := s.Storage.List(ctx, prefix)
	s.mu.Lock()
	hook := s.afterList
	s.afterList = nil
	s.mu.Unlock()
	if hook != nil {
		hook(prefix)
	}
	return keys, err
}

// answerError is the error a request answered with, from either of the
// ways Vault carries one (a Go error, or an error response); false when it
// succeeded.
func answerError(resp *logical.Response, err error) (string, bool) {
	switch {
	case err != nil:
		return err.Error(), true
	case resp != nil && resp.IsError():
		return resp.Error().Error(), true
	}
	return "", false
}
