package backend

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
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
			if e.platformKeyNamed(platform.Anthropic, "trimmed-token") == nil {
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

// Issue 16: a refused config write reconfigured the live rate budget before
// the token check, so its 400 ("nothing was saved") left the mount refusing
// every platform call, or without its protection. The new limits apply only
// once a write succeeds; the budget's counts survive an accepted write; and
// a write raising limits that were set too low is not held behind them.
func TestConfig_RefusedWriteLeavesTheRateBudget(t *testing.T) {
	refused := func(e *testEnv, limits map[string]any) {
		t.Helper()
		data := map[string]any{"token": "not-the-platforms-token"}
		for k, v := range limits {
			data[k] = v
		}
		e.mustBadRequest(logical.UpdateOperation, "config", data, "rejected the token", "nothing was saved")
	}
	create := func(e *testEnv, name string) (*logical.Response, error) {
		return e.request(logical.CreateOperation, "keys/"+name, map[string]any{"provider": "openai", "api_key": openAIKey(name)})
	}

	t.Run("tiny limits refused: the mount keeps working", func(t *testing.T) {
		e := newTestEnv(t, nil)
		refused(e, map[string]any{"rate_limit_per_minute": 1, "rate_limit_per_hour": 1})
		for i := range 5 {
			if resp, err := create(e, fmt.Sprintf("tiny-%d", i)); err != nil || resp.IsError() {
				t.Fatalf("create %d after a refused write: %v %v", i, err, resp)
			}
		}
	})

	t.Run("huge limits refused: the protection stays", func(t *testing.T) {
		// The mount's limit is 20 an hour: the budget lets 9 through at
		// once (the platform itself would take 5,000).
		e := newTestEnv(t, map[string]any{"rate_limit_per_minute": 250, "rate_limit_per_hour": 20, "name_cache_ttl": "1h"})
		refused(e, unlimited)
		var failed string
		for i := range 20 {
			if _, err := create(e, fmt.Sprintf("huge-%d", i)); err != nil {
				failed = err.Error()
				break
			}
		}
		if !strings.Contains(failed, "rate budget is spent") {
			t.Fatalf("want the mount's own rate-limit error, got %q", failed)
		}
		// An accepted write keeping the hourly limit does not start a
		// fresh hour either. (It changes the minute's, so its token check
		// does not wait for the spent budget: checkClass.)
		e.mustOK(logical.UpdateOperation, "config", map[string]any{"verify_keys": false, "rate_limit_per_minute": 251})
		if _, err := create(e, "huge-after"); err == nil || !strings.Contains(err.Error(), "rate budget is spent") {
			t.Fatalf("after an accepted config write: %v", err)
		}
	})

	t.Run("limits set too low can be raised", func(t *testing.T) {
		e := newTestEnv(t, map[string]any{"rate_limit_per_minute": 250, "rate_limit_per_hour": 2, "name_cache_ttl": "1h"})
		for i := 0; ; i++ {
			if _, err := create(e, fmt.Sprintf("low-%d", i)); err != nil {
				break
			}
		}
		e.mustOK(logical.UpdateOperation, "config", unlimited)
		if resp, err := create(e, "raised"); err != nil || resp.IsError() {
			t.Fatalf("create after raising the limits: %v %v", err, resp)
		}
	})
}

// A refused config write changes nothing, budget included: the token check
// of a write giving another token (or another api_url) is answered with that
// token's count, which is not the live one. Fed to the live budget, a
// refused write whose token had spent its hour left the mount refusing
// every platform call until that token's reset.
func TestConfig_RefusedWriteLeavesTheBudgetsCount(t *testing.T) {
	e := newTestEnv(t, map[string]any{"rate_limit_per_minute": 6000, "rate_limit_per_hour": 40})
	e.emu.SetRateLimits(6000, 40)
	const otherToken = "other-teams-token"
	e.emu.AddToken(otherToken)
	other, err := godo.New(&http.Client{Transport: bearer{otherToken}}, godo.SetBaseURL(e.srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	for range 39 {
		if _, _, err := other.AgentPlatform.ListAgents(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
	}
	e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"token": otherToken, "openai_admin_key": "sk-admin-" + strings.Repeat("U", 20)},
		"rejected openai_admin_key", "nothing was saved")
	if resp, err := e.request(logical.CreateOperation, "keys/after-refused", map[string]any{"provider": "openai", "api_key": openAIKey("afterrefused")}); err != nil || resp.IsError() {
		t.Fatalf("create after a refused write with another token: %v %v", err, resp)
	}
	if seen := e.b.budget.LastSeen(); seen.Limit != 40 || seen.Remaining < 30 {
		t.Fatalf("the live budget follows another token's count: %+v", seen)
	}
}

// The token check of a config write skipped the budget, so a script
// re-applying the same config (or re-trying a refused write) spent the
// token's minute unpaced, and the token's other users (doctl, Terraform)
// met the platform's 429s. A write that keeps the token, the URL and the
// limits waits for the live budget like any request: it governs that
// check. (A write changing any of them still does not wait for it.)
func TestConfig_RepeatedWritesArePaced(t *testing.T) {
	e := newTestEnv(t, map[string]any{"rate_limit_per_minute": 20, "rate_limit_per_hour": 5000, "request_timeout": "2s"})
	e.emu.SetRateLimits(20, 5000)
	paced := ""
	for range 30 {
		resp, err := e.request(logical.UpdateOperation, "config", map[string]any{"openai_admin_key": "sk-admin-" + strings.Repeat("U", 20)})
		if err != nil && strings.Contains(err.Error(), "rate budget is spent") {
			paced = err.Error()
		} else if err == nil && !resp.IsError() {
			t.Fatalf("a rejected admin key was accepted: %v", resp)
		}
	}
	if n := e.emu.Statuses()[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("the platform answered 429 %d times to repeated config writes", n)
	}
	if paced == "" {
		t.Errorf("no config write was held by the mount's budget")
	}
}
