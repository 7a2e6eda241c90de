//go:build acceptance

package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// emu is an emulator of the Gradient platform and both providers, served on
// loopback for the plugin to reach; it keeps its request log for failures.
type emu struct {
	*emulator.Emulator
	url   string
	token string
	srv   *http.Server
	logMu sync.Mutex
	log   bytes.Buffer
}

// startEmulator serves a new emulator on a real 127.0.0.1 listener, so the
// plugin process reaches it over loopback. Limits are raised far above the
// suite's traffic: rate limiting is not what this suite tests.
func startEmulator() (*emu, error) {
	e := &emu{token: "do-token-" + randomString(alnum, 32)}
	mustNotLeak(e.token)
	e.Emulator = emulator.New(emulator.Config{
		Tokens:         []string{e.token},
		PerMinuteLimit: 1_000_000,
		PerHourLimit:   10_000_000,
		Logf: func(format string, args ...any) {
			e.logMu.Lock()
			defer e.logMu.Unlock()
			fmt.Fprintf(&e.log, format+"\n", args...)
		},
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.url = "http://" + l.Addr().String()
	e.srv = &http.Server{Handler: e.Emulator, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return e, nil
}

func (e *emu) close() { _ = e.srv.Close() }

// newEmulator is startEmulator for one test, closed by t.Cleanup.
func newEmulator(t testing.TB) *emu {
	t.Helper()
	e, err := startEmulator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.close()
		if t.Failed() {
			e.logMu.Lock()
			t.Logf("emulator request log:\n%s", e.log.String())
			e.logMu.Unlock()
		}
	})
	return e
}

// platform sends a request to the emulated platform API with the DO token,
// the way a person or another tool would, and decodes the JSON answer.
func (e *emu) platform(t testing.TB, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: decoding: %v: %s", method, path, err, b)
	}
	return out
}

// createPlatformKey adds a key directly on the platform (outside Vault).
func (e *emu) createPlatformKey(t testing.TB, provider, name, secret string) string {
	t.Helper()
	out := e.platform(t, http.MethodPost, "/v2/gen-ai/"+provider+"/keys", map[string]string{"name": name, "api_key": secret})
	info, _ := out["api_key_info"].(map[string]any)
	uuid, _ := info["uuid"].(string)
	if uuid == "" {
		t.Fatalf("platform key create returned no uuid: %v", out)
	}
	return uuid
}

// createAgent adds an agent on the platform that uses the key keyUUID.
func (e *emu) createAgent(t testing.TB, name, provider, keyUUID string) string {
	t.Helper()
	body := map[string]string{
		"name":        name,
		"instruction": "Answer questions about " + name + ".",
		"model_uuid":  "model-" + randomString(lowerAln, 8),
		"region":      "tor1",
		"project_id":  "project-" + randomString(lowerAln, 8),
	}
	if provider == "openai" {
		body["open_ai_key_uuid"] = keyUUID
	} else {
		body["anthropic_key_uuid"] = keyUUID
	}
	out := e.platform(t, http.MethodPost, "/v2/gen-ai/agents", body)
	agent, _ := out["agent"].(map[string]any)
	uuid, _ := agent["uuid"].(string)
	if uuid == "" {
		t.Fatalf("agent create returned no uuid: %v", out)
	}
	return uuid
}

func (e *emu) keys(provider string) []emulator.KeyState {
	st := e.State()
	if provider == "openai" {
		return st.OpenAIKeys
	}
	return st.AnthropicKeys
}

// key returns the platform key with uuid, or nil.
func (e *emu) key(provider, uuid string) *emulator.KeyState {
	for _, k := range e.keys(provider) {
		if k.UUID == uuid {
			k := k
			return &k
		}
	}
	return nil
}

// keysNamed returns the platform keys (any provider) called name.
func (e *emu) keysNamed(name string) []emulator.KeyState {
	var out []emulator.KeyState
	st := e.State()
	for _, k := range append(append([]emulator.KeyState(nil), st.AnthropicKeys...), st.OpenAIKeys...) {
		if k.Name == name {
			out = append(out, k)
		}
	}
	return out
}

func (e *emu) agent(uuid string) *emulator.AgentState {
	for _, a := range e.State().Agents {
		if a.UUID == uuid {
			a := a
			return &a
		}
	}
	return nil
}
