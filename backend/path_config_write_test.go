package backend

import (
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// `vault write gradient/config token=@do-token.txt` brings the file's
// newline: the token is trimmed as keys are, and then works.
func TestConfig_TokenIsTrimmed(t *testing.T) {
	for name, token := range map[string]string{
		"file newline":  testToken + "\n",
		"crlf and tabs": "\t " + testToken + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
			srv := httptest.NewServer(emu)
			t.Cleanup(srv.Close)
			e := newUnconfiguredEnv(t, emu, srv)
			e.mustOK(logical.UpdateOperation, "config", map[string]any{
				"token": token, "api_url": srv.URL,
				"anthropic_url": srv.URL + "/anthropic", "openai_url": srv.URL + "/openai",
			})
			// The stored token is the trimmed one: later calls work too.
			e.mustOK(logical.CreateOperation, "keys/trimmed-token", map[string]any{"provider": "anthropic", "api_key": anthropicKey("trimmed")})
			if e.platformKeyNamed(providerAnthropic, "trimmed-token") == nil {
				t.Fatal("the key did not reach the platform")
			}
		})
	}
}

// White space or control characters inside the token are a 400 that does not
// echo it, not a 500 from net/http refusing the header; nothing is saved.
func TestConfig_RefusesTokenWithInnerWhiteSpace(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	for name, token := range map[string]string{
		"space":            "dop_v1_0123456789 abcdef0123456789",
		"tab":              "dop_v1_0123456789\tabcdef0123456789",
		"inner newline":    "dop_v1_0123456789\nabcdef0123456789\n",
		"nul":              "dop_v1_0123456789\x00abcdef0123456789",
		"delete":           "dop_v1_0123456789\x7fabcdef0123456789",
		"line separator":   "dop_v1_0123456789\u2028abcdef0123456789",
		"no-break space":   "dop_v1_0123456789\u00a0abcdef0123456789",
		"c1 control (NEL)": "dop_v1_0123456789\u0085abcdef0123456789",
	} {
		t.Run(name, func(t *testing.T) {
			e := newUnconfiguredEnv(t, emu, srv)
			e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"token": token, "api_url": srv.URL},
				"token must not contain white space or control characters")
			if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
				t.Fatalf("a refused token was saved: %v", resp.Data)
			}
		})
	}
}

// godo addresses the platform from the host root, so a path in api_url used
// to be dropped silently; it is refused. The provider URLs keep their paths.
func TestConfig_APIURLPath(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	for _, apiURL := range []string{srv.URL + "/base", srv.URL + "/v2", srv.URL + "/base/", srv.URL + "//", srv.URL + "/%2F"} {
		t.Run("refused "+apiURL[len(srv.URL):], func(t *testing.T) {
			e := newUnconfiguredEnv(t, emu, srv)
			e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"token": testToken, "api_url": apiURL},
				"api_url must not have a path", "host root")
			if resp, _ := e.request(logical.ReadOperation, "config", nil); resp != nil {
				t.Fatalf("api_url %s was saved", apiURL)
			}
		})
	}
	for _, apiURL := range []string{srv.URL, srv.URL + "/"} {
		t.Run("accepted "+apiURL[len(srv.URL):], func(t *testing.T) {
			e := newUnconfiguredEnv(t, emu, srv)
			e.mustOK(logical.UpdateOperation, "config", map[string]any{
				"token": testToken, "api_url": apiURL,
				"anthropic_url": srv.URL + "/anthropic", "openai_url": srv.URL + "/openai/",
			})
			resp := e.mustOK(logical.ReadOperation, "config", nil)
			if resp.Data["api_url"] != apiURL || resp.Data["anthropic_url"] != srv.URL+"/anthropic" {
				t.Fatalf("config read %v", resp.Data)
			}
		})
	}
}

// Each config write builds new clients, for the token check and then for the
// cached clients. The clients they replace must close their idle keep-alive
// connections, or every write leaves goroutines (and sockets) behind until
// the idle timeout.
func TestConfig_WritesDoNotPileUpConnections(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/idle-conns", map[string]any{"provider": "openai", "api_key": openAIKey("idleconns")})
	data := map[string]any{
		"token": testToken, "api_url": e.srv.URL,
		"anthropic_url": e.srv.URL + "/anthropic", "openai_url": e.srv.URL + "/openai",
	}
	settle := func(limit int) int {
		n := runtime.NumGoroutine()
		for deadline := time.Now().Add(2 * time.Second); n > limit && time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
		}
		return n
	}
	before := runtime.NumGoroutine()

	for i := range 50 {
		data["request_timeout"] = fmt.Sprintf("%ds", 10+i%5)
		e.mustOK(logical.UpdateOperation, "config", data)
		// A rotation goes through both cached clients (verifier and
		// platform), so the next write replaces clients that hold
		// connections of their own.
		e.mustOK(logical.UpdateOperation, "keys/idle-conns", map[string]any{"api_key": openAIKey(fmt.Sprintf("idleconns%d", i))})
	}

	if after := settle(before + 20); after > before+20 {
		t.Fatalf("goroutines went from %d to %d after 50 config writes: the replaced clients kept their idle connections", before, after)
	}
}
