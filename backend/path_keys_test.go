package backend

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func TestKeys_CreateReadListCreds(t *testing.T) {
	e := newTestEnv(t, nil)
	aKey := anthropicKey("crud")
	oKey := openAIKey("crud")

	// api_key=@file brings a trailing newline: trimmed.
	created := e.mustOK(logical.CreateOperation, "keys/support-bot", map[string]any{
		"provider": "anthropic", "api_key": aKey + "\n", "description": "support team",
	})
	e.mustOK(logical.CreateOperation, "keys/search.v2", map[string]any{"provider": "openai", "api_key": oKey})

	pk := e.platformKeyNamed(platform.Anthropic, "support-bot")
	if pk == nil || pk.Secret != aKey {
		t.Fatalf("platform key = %+v, want the trimmed secret under the name", pk)
	}
	if ok := e.platformKeyNamed(platform.OpenAI, "search.v2"); ok == nil || ok.Secret != oKey {
		t.Fatalf("openai platform key = %+v", ok)
	}

	read := e.mustOK(logical.ReadOperation, "keys/support-bot", nil)
	for _, resp := range []*logical.Response{created, read} {
		want := map[string]any{
			"name": "support-bot", "provider": "anthropic", "uuid": pk.UUID, "description": "support team",
			"version": 1, "key_hint": aKey[len(aKey)-4:],
			"created_at": pk.CreatedAt.Format(time.RFC3339), "updated_at": pk.UpdatedAt.Format(time.RFC3339),
		}
		for k, v := range want {
			if resp.Data[k] != v {
				t.Errorf("%s = %#v, want %#v", k, resp.Data[k], v)
			}
		}
		if _, ok := resp.Data["api_key"]; ok {
			t.Fatal("a key read returned the secret")
		}
	}

	if got := e.listKeys(); strings.Join(got, ",") != "search.v2,support-bot" {
		t.Fatalf("list = %v", got)
	}

	creds := e.mustOK(logical.ReadOperation, "creds/support-bot", nil)
	if creds.Data["api_key"] != aKey || creds.Data["uuid"] != pk.UUID || creds.Data["version"] != 1 || creds.Data["provider"] != "anthropic" {
		t.Fatalf("creds = %v", creds.Data)
	}
	if resp, err := e.request(logical.ReadOperation, "creds/missing", nil); resp != nil || err != nil {
		t.Fatalf("creds of a missing key: %v %v", resp, err)
	}

	// A read never calls the platform.
	before := e.emu.Counts()
	e.mustOK(logical.ReadOperation, "keys/support-bot", nil)
	e.mustOK(logical.ReadOperation, "creds/support-bot", nil)
	if after := e.emu.Counts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a read called the platform: %v -> %v", before, after)
	}
}

// Every caller mistake is a 400 that pushes nothing and stores nothing.
func TestKeys_BadInputChangesNothing(t *testing.T) {
	e := newTestEnv(t, nil)
	good := anthropicKey("good")
	shortKey := "sk-ant-api03-shortkey0123456789"

	cases := map[string]struct {
		path     string
		data     map[string]any
		fragment string
	}{
		"upper case name":     {"keys/Support", map[string]any{"provider": "anthropic", "api_key": good}, "upper-case"},
		"space in name":       {"keys/support bot", map[string]any{"provider": "anthropic", "api_key": good}, "white space"},
		"underscore":          {"keys/support_bot", map[string]any{"provider": "anthropic", "api_key": good}, "underscore"},
		"slash":               {"keys/team/bot", map[string]any{"provider": "anthropic", "api_key": good}, "slash"},
		"unicode":             {"keys/suppört", map[string]any{"provider": "anthropic", "api_key": good}, "non-ASCII"},
		"too long":            {"keys/" + strings.Repeat("a", 65), map[string]any{"provider": "anthropic", "api_key": good}, "length 65"},
		"starts with sk-":     {"keys/sk-team", map[string]any{"provider": "anthropic", "api_key": good}, `starts with "sk-"`},
		"name is the key":     {"keys/" + strings.ToLower(shortKey), map[string]any{"provider": "anthropic", "api_key": strings.ToLower(shortKey)}, "a key name is"},
		"name has the key":    {"keys/x-" + "sk-ant-api03-abcdefghijklmnop", map[string]any{"provider": "anthropic", "api_key": "sk-ant-api03-abcdefghijklmnop"}, "contains the API key"},
		"missing provider":    {"keys/a", map[string]any{"api_key": good}, "provider is required"},
		"unknown provider":    {"keys/a", map[string]any{"provider": "mistral", "api_key": good}, "provider"},
		"missing key":         {"keys/a", map[string]any{"provider": "anthropic"}, "api_key is required"},
		"blank key":           {"keys/a", map[string]any{"provider": "anthropic", "api_key": " \n"}, "api_key is required"},
		"inner space":         {"keys/a", map[string]any{"provider": "anthropic", "api_key": "sk-ant-api03-abc def0123456789abc"}, "white space or control"},
		"control char":        {"keys/a", map[string]any{"provider": "anthropic", "api_key": "sk-ant-api03-abc\x01def0123456789abc"}, "white space or control"},
		"too long key":        {"keys/a", map[string]any{"provider": "anthropic", "api_key": "sk-ant-api03-" + strings.Repeat("x", 1100)}, "at most 1024"},
		"not anthropic":       {"keys/a", map[string]any{"provider": "anthropic", "api_key": openAIKey("wrong")}, `start with "sk-ant-"`},
		"anthropic admin":     {"keys/a", map[string]any{"provider": "anthropic", "api_key": "sk-ant-admin01-0123456789abcdefghij"}, "admin key"},
		"openai admin":        {"keys/a", map[string]any{"provider": "openai", "api_key": "sk-admin-0123456789abcdefghij"}, "admin key"},
		"anthropic as openai": {"keys/a", map[string]any{"provider": "openai", "api_key": good}, "looks like an Anthropic key"},
		"not openai":          {"keys/a", map[string]any{"provider": "openai", "api_key": "pk-0123456789abcdefghij"}, `start with "sk-"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := e.emu.Counts()
			msg := e.mustBadRequest(logical.CreateOperation, tc.path, tc.data, tc.fragment)
			if strings.Contains(msg, "a key name is") != strings.Contains(tc.fragment+msg, "a key name is") {
				t.Errorf("message %q", msg)
			}
			if got := e.listKeys(); len(got) != 0 {
				t.Fatalf("vault stored %v", got)
			}
			if s := e.state(); len(s.AnthropicKeys)+len(s.OpenAIKeys) != 0 {
				t.Fatalf("platform has keys: %+v", s)
			}
			if after := e.emu.Counts(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("bad input reached the platform or a provider: %v -> %v", before, after)
			}
		})
	}
}

// Name errors quote the rule so the caller can fix the name.
func TestKeys_NameErrorsQuoteTheRule(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, path := range []string{"keys/Bad", "keys/a b", "keys/a_b", "keys/a/b", "keys/é", "keys/" + strings.Repeat("x", 65)} {
		e.mustBadRequest(logical.CreateOperation, path, map[string]any{"provider": "anthropic", "api_key": anthropicKey("rule")}, nameRule)
	}
}

func TestKeys_VerificationFailures(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downURL := "http://" + closed.Addr().String()
	closed.Close()

	cases := map[string]struct {
		provider   string
		key        string
		setup      func(e *testEnv, key string)
		config     map[string]any
		badRequest bool
		fragments  []string
	}{
		"anthropic rejects a revoked key": {
			provider: "anthropic", key: anthropicKey("revoked"),
			setup:      func(e *testEnv, key string) { e.emu.Revoke(key) },
			badRequest: true, fragments: []string{"rejected by the provider (HTTP 401)"},
		},
		"openai rejects a revoked key": {
			provider: "openai", key: openAIKey("revoked"),
			setup:      func(e *testEnv, key string) { e.emu.Revoke(key) },
			badRequest: true, fragments: []string{"rejected by the provider (HTTP 401)"},
		},
		"provider forbids": {
			provider: "openai", key: openAIKey("forbidden"),
			setup:      func(e *testEnv, _ string) { e.emu.InjectFault(emulator.Fault{Path: "/openai/v1/models", Status: 403}) },
			badRequest: true, fragments: []string{"HTTP 403"},
		},
		"provider overloaded": {
			provider: "anthropic", key: anthropicKey("overload"),
			setup: func(e *testEnv, _ string) {
				e.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 529, Count: platform.MaxAttempts})
			},
			fragments: []string{"could not be verified", "HTTP 529"},
		},
		"provider rate limited": {
			provider: "openai", key: openAIKey("ratelimit"),
			setup: func(e *testEnv, _ string) {
				e.emu.InjectFault(emulator.Fault{Path: "/openai/v1/models", Status: 429, Count: platform.MaxAttempts})
			},
			fragments: []string{"could not be verified", "HTTP 429"},
		},
		"provider down": {
			provider: "anthropic", key: anthropicKey("down"),
			config:    map[string]any{"anthropic_url": downURL},
			fragments: []string{"could not be verified", "unreachable"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, tc.config)
			if tc.setup != nil {
				tc.setup(e, tc.key)
			}
			data := map[string]any{"provider": tc.provider, "api_key": tc.key}
			if tc.badRequest {
				msg := e.mustBadRequest(logical.CreateOperation, "keys/verify-me", data, tc.fragments...)
				if strings.Contains(msg, "Incorrect API key") || strings.Contains(msg, "invalid x-api-key") {
					t.Fatalf("provider text passed through: %q", msg)
				}
			} else {
				e.mustServerError(logical.CreateOperation, "keys/verify-me", data, tc.fragments...)
			}
			if len(e.listKeys()) != 0 || len(e.platformKeys(tc.provider)) != 0 {
				t.Fatal("a key that failed verification was stored or pushed")
			}
		})
	}
}

func TestKeys_VerificationCanBeTurnedOff(t *testing.T) {
	e := newTestEnv(t, map[string]any{"verify_keys": false})
	e.mustOK(logical.CreateOperation, "keys/unverified", map[string]any{"provider": "openai", "api_key": openAIKey("noverify")})
	if n := e.emu.Counts()["GET /openai/v1/models"]; n != 0 {
		t.Fatalf("verify_keys=false still called the provider %d times", n)
	}
}

func TestKeys_PlatformFailuresChangeNothing(t *testing.T) {
	cases := map[string]struct {
		fault      emulator.Fault
		badRequest bool
		fragment   string
		// ambiguous: a 5xx may have been applied, or be applied late, so
		// the entry stays for the periodic rollback.
		ambiguous bool
	}{
		"platform 500":        {emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 500, Count: 2}, false, "HTTP 500", true},
		"platform refuses":    {emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 422}, true, "HTTP 422", false},
		"platform rate limit": {emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 429}, false, "rate limit", false},
		"name listing fails":  {emulator.Fault{Method: "GET", Path: "/v2/gen-ai/anthropic/keys", Status: 500, Count: platform.MaxAttempts}, false, "same name", false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, map[string]any{"name_cache_ttl": "0s"})
			e.emu.InjectFault(tc.fault)
			data := map[string]any{"provider": "anthropic", "api_key": anthropicKey("platfail")}
			if tc.badRequest {
				e.mustBadRequest(logical.CreateOperation, "keys/platform-fails", data, tc.fragment)
			} else {
				e.mustServerError(logical.CreateOperation, "keys/platform-fails", data, tc.fragment)
			}
			if len(e.listKeys()) != 0 || len(e.state().AnthropicKeys) != 0 {
				t.Fatalf("state changed: vault %v, platform %+v", e.listKeys(), e.state().AnthropicKeys)
			}
			if tc.ambiguous {
				assertSettlesOnRollback(t, e)
			}
			if wals, _ := e.storage.List(t.Context(), "wal/"); len(wals) != 0 {
				t.Fatalf("a write-ahead log entry was left: %v", wals)
			}
			if len(e.state().AnthropicKeys) != 0 {
				t.Fatalf("rollback changed the platform: %+v", e.state().AnthropicKeys)
			}
		})
	}
}

// A platform that never answers: the request times out, and the cleanup
// makes sure no key was left behind.
func TestKeys_PlatformHangTimesOut(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "1s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("hang-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "hang", Count: 2})
	e.mustServerError(logical.CreateOperation, "keys/hangs", map[string]any{"provider": "openai", "api_key": openAIKey("hangs")}, "timed out")
	if e.platformKeyNamed(platform.OpenAI, "hangs") != nil || slices.Contains(e.listKeys(), "hangs") {
		t.Fatal("a timed-out create left state behind")
	}
	assertSettlesOnRollback(t, e)
}

// A definite refusal changed nothing on the platform, so the cleanup does
// not list the platform's keys looking for an orphan.
func TestKeys_PlatformRefusalNeedsNoCleanup(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "anthropic", "api_key": anthropicKey("refusal-primer")})
	listings := e.emu.Counts()["GET /v2/gen-ai/anthropic/keys"]
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 422})
	e.mustBadRequest(logical.CreateOperation, "keys/refused", map[string]any{"provider": "anthropic", "api_key": anthropicKey("refused")}, "HTTP 422")
	if n := e.emu.Counts()["GET /v2/gen-ai/anthropic/keys"] - listings; n != 0 {
		t.Fatalf("a refused create listed the platform %d times", n)
	}
	assertNoWAL(t, e)
}

func TestKeys_UpdateRotatesInPlace(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("rot1")
	second := anthropicKey("rot2")
	e.mustOK(logical.CreateOperation, "keys/rotating", map[string]any{"provider": "anthropic", "api_key": first})
	before := e.platformKeyNamed(platform.Anthropic, "rotating")

	resp := e.mustOK(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": second})
	after := e.platformKeyNamed(platform.Anthropic, "rotating")
	if after.UUID != before.UUID || after.Secret != second {
		t.Fatalf("platform key after update = %+v, before %+v", after, before)
	}
	if resp.Data["version"] != 2 || resp.Data["uuid"] != before.UUID || resp.Data["updated_at"] != after.UpdatedAt.Format(time.RFC3339) {
		t.Fatalf("update response = %v", resp.Data)
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/rotating", nil); creds.Data["api_key"] != second || creds.Data["version"] != 2 {
		t.Fatalf("creds after update = %v", creds.Data)
	}

	// The same secret again is not a new version and is not pushed.
	puts := e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"]
	if resp := e.mustOK(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": second + "\n"}); resp.Data["version"] != 2 {
		t.Fatalf("resending the secret bumped the version: %v", resp.Data)
	}
	if e.emu.Counts()["PUT /v2/gen-ai/anthropic/keys/{uuid}"] != puts {
		t.Fatal("resending the same secret pushed it again")
	}

	// Description alone is stored without touching the platform.
	if resp := e.mustOK(logical.UpdateOperation, "keys/rotating", map[string]any{"description": "rotated"}); resp.Data["description"] != "rotated" || resp.Data["version"] != 2 {
		t.Fatalf("description update = %v", resp.Data)
	}

	e.mustBadRequest(logical.UpdateOperation, "keys/rotating", map[string]any{"provider": "openai"}, "cannot change")
	e.mustBadRequest(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": openAIKey("x")}, `start with "sk-ant-"`)
	e.emu.Revoke(anthropicKey("rot3"))
	e.mustBadRequest(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": anthropicKey("rot3")}, "rejected by the provider")
	if k := e.platformKeyNamed(platform.Anthropic, "rotating"); k.Secret != second {
		t.Fatal("a refused update changed the platform's secret")
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/rotating", nil); creds.Data["api_key"] != second || creds.Data["version"] != 2 {
		t.Fatalf("a refused update changed Vault: %v", creds.Data)
	}
}

func TestKeys_UpdateFailsCleanly(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("upf1")
	e.mustOK(logical.CreateOperation, "keys/update-fails", map[string]any{"provider": "anthropic", "api_key": first})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 500, Count: platform.MaxAttempts})

	e.mustServerError(logical.UpdateOperation, "keys/update-fails", map[string]any{"api_key": anthropicKey("upf2")}, "HTTP 500")
	if k := e.platformKeyNamed(platform.Anthropic, "update-fails"); k.Secret != first {
		t.Fatal("platform secret changed")
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/update-fails", nil); creds.Data["api_key"] != first || creds.Data["version"] != 1 {
		t.Fatalf("vault changed: %v", creds.Data)
	}
}

func TestKeys_DuplicatePlatformNameRefused(t *testing.T) {
	e := newTestEnv(t, nil)
	// A key someone made in the control panel.
	existing, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "taken", ApiKey: anthropicKey("panel")})
	if err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.CreateOperation, "keys/taken", map[string]any{"provider": "anthropic", "api_key": anthropicKey("dup")},
		existing.Uuid, "uuid="+existing.Uuid)
	if n := len(e.state().AnthropicKeys); n != 1 {
		t.Fatalf("platform has %d keys, want only the original", n)
	}
	// The same name under the other provider is another list: allowed.
	e.mustOK(logical.CreateOperation, "keys/taken", map[string]any{"provider": "openai", "api_key": openAIKey("dup")})
}

// The duplicate check lists the platform at most once per name_cache_ttl,
// shared by concurrent creates, and the plugin's own changes keep the cached
// names current.
func TestKeys_NameCache(t *testing.T) {
	e := newTestEnv(t, map[string]any{"name_cache_ttl": "60s"})
	clock := &fakeClock{now: time.Now()}
	e.b.clock = clock.Now
	const listRoute = "GET /v2/gen-ai/anthropic/keys"
	// The config write's token check was one listing already.
	base := e.emu.Counts()[listRoute]

	// A bulk import: 20 concurrent creates share one listing.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.send(logical.CreateOperation, fmt.Sprintf("keys/bulk-%02d", i), map[string]any{
				"provider": "anthropic", "api_key": anthropicKey(fmt.Sprintf("bulk%02d", i)),
			})
			if err == nil && resp.IsError() {
				err = resp.Error()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := e.emu.Counts()[listRoute] - base; n != 1 {
		t.Fatalf("20 creates listed the platform %d times, want 1", n)
	}

	// Within the ttl: a name this mount created is known without a listing,
	// even after its Vault entry is renamed away (the platform name moved
	// too, so the old name is free again).
	sudoRename(t, e, "bulk-00", "renamed-00")
	e.mustOK(logical.CreateOperation, "keys/bulk-00", map[string]any{"provider": "anthropic", "api_key": anthropicKey("reuse")})
	if n := e.emu.Counts()[listRoute] - base; n != 1 {
		t.Fatalf("listings = %d, want still 1", n)
	}

	// A key made outside Vault within the ttl is not seen yet...
	if _, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "outside", ApiKey: anthropicKey("outside")}); err != nil {
		t.Fatal(err)
	}
	// ...but after the ttl the next create lists again and refuses the name.
	clock.Advance(61 * time.Second)
	e.mustBadRequest(logical.CreateOperation, "keys/outside", map[string]any{"provider": "anthropic", "api_key": anthropicKey("outside2")}, "already has")
	if n := e.emu.Counts()[listRoute] - base; n != 2 {
		t.Fatalf("listings = %d, want 2 after the ttl", n)
	}
}

func TestKeys_NameCacheOffListsEveryCreate(t *testing.T) {
	e := newTestEnv(t, map[string]any{"name_cache_ttl": "0"})
	for i := range 3 {
		e.mustOK(logical.CreateOperation, fmt.Sprintf("keys/nocache-%d", i), map[string]any{"provider": "openai", "api_key": openAIKey(fmt.Sprintf("nc%d", i))})
	}
	// The token check lists anthropic keys, so every openai listing here is
	// a create's.
	if n := e.emu.Counts()["GET /v2/gen-ai/openai/keys"]; n != 3 {
		t.Fatalf("listings = %d, want one per create", n)
	}
}

func TestKeys_Adopt(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateOpenAIAPIKey(context.Background(), &godo.OpenAIAPIKeyCreateRequest{Name: "made-by-hand", ApiKey: openAIKey("hand")})
	if err != nil {
		t.Fatal(err)
	}
	agent := e.createAgent("bot", platform.OpenAI, legacy.Uuid)

	newSecret := openAIKey("adopted")
	resp := e.mustOK(logical.CreateOperation, "keys/team-a-search", map[string]any{"provider": "openai", "api_key": newSecret, "uuid": legacy.Uuid})
	if resp.Data["uuid"] != legacy.Uuid || resp.Data["version"] != 1 {
		t.Fatalf("adopt response = %v", resp.Data)
	}
	keys := e.state().OpenAIKeys
	if len(keys) != 1 || keys[0].UUID != legacy.Uuid || keys[0].Name != "team-a-search" || keys[0].Secret != newSecret {
		t.Fatalf("platform after adopt = %+v", keys)
	}
	if _, openai := e.agentKey(agent.Uuid); openai != legacy.Uuid {
		t.Fatal("the agent lost its key")
	}

	// Another name cannot take over a key this mount manages.
	e.mustBadRequest(logical.CreateOperation, "keys/team-b-search", map[string]any{"provider": "openai", "api_key": openAIKey("takeover"), "uuid": legacy.Uuid},
		"already managed by this mount", "team-a-search")
	if keys := e.state().OpenAIKeys; keys[0].Name != "team-a-search" || keys[0].Secret != newSecret {
		t.Fatalf("a refused adoption changed the platform: %+v", keys)
	}
	if got := e.listKeys(); len(got) != 1 {
		t.Fatalf("a refused adoption stored something: %v", got)
	}

	e.mustBadRequest(logical.CreateOperation, "keys/ghost", map[string]any{"provider": "openai", "api_key": openAIKey("ghost"), "uuid": "00000000-0000-4000-8000-000000000000"}, "no openai key with uuid")
	unmanaged, _, err := e.do.AgentPlatform.CreateOpenAIAPIKey(context.Background(), &godo.OpenAIAPIKeyCreateRequest{Name: "other", ApiKey: openAIKey("other")})
	if err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.CreateOperation, "keys/wrong-provider", map[string]any{"provider": "anthropic", "api_key": anthropicKey("wp"), "uuid": unmanaged.Uuid}, "no anthropic key with uuid")
	e.mustBadRequest(logical.UpdateOperation, "keys/team-a-search", map[string]any{"uuid": "00000000-0000-4000-8000-000000000001"}, "cannot adopt another uuid")
}

func TestKeys_Delete(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/in-use", map[string]any{"provider": "anthropic", "api_key": anthropicKey("inuse")})
	e.mustOK(logical.CreateOperation, "keys/spare", map[string]any{"provider": "anthropic", "api_key": anthropicKey("spare")})
	uuid := e.platformKeyNamed(platform.Anthropic, "in-use").UUID
	a1 := e.createAgent("helpdesk", platform.Anthropic, uuid)
	a2 := e.createAgent("triage", platform.Anthropic, uuid)

	e.mustBadRequest(logical.DeleteOperation, "keys/in-use", nil,
		"2 agent(s)", "helpdesk ("+a1.Uuid+")", "triage ("+a2.Uuid+")", "gradient/keys/in-use/reassign", "force=true")
	if e.platformKeyNamed(platform.Anthropic, "in-use") == nil || len(e.listKeys()) != 2 {
		t.Fatal("a refused delete changed something")
	}

	// After reassign the delete is clean.
	e.mustOK(logical.UpdateOperation, "keys/in-use/reassign", map[string]any{"to": "spare"})
	e.mustOK(logical.DeleteOperation, "keys/in-use", nil)
	if e.platformKeyNamed(platform.Anthropic, "in-use") != nil {
		t.Fatal("platform key still there")
	}
	if resp, _ := e.request(logical.ReadOperation, "keys/in-use", nil); resp != nil {
		t.Fatal("vault entry still there")
	}

	// force=true deletes a key agents still use; they lose it.
	spare := e.platformKeyNamed(platform.Anthropic, "spare").UUID
	e.mustOK(logical.DeleteOperation, "keys/spare", map[string]any{"force": true})
	if e.platformKeyNamed(platform.Anthropic, "spare") != nil {
		t.Fatal("forced delete left the platform key")
	}
	if anthropic, _ := e.agentKey(a1.Uuid); anthropic == spare {
		t.Fatal("agent still uses the deleted key")
	}
	if got := e.listKeys(); len(got) != 0 {
		t.Fatalf("vault still lists %v", got)
	}
	// Deleting what is not there is fine, as everywhere in Vault.
	e.mustOK(logical.DeleteOperation, "keys/spare", nil)
}

func TestKeys_DeleteWhenPlatformKeyAlreadyGone(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/gone", map[string]any{"provider": "openai", "api_key": openAIKey("gone")})
	uuid := e.platformKeyNamed(platform.OpenAI, "gone").UUID
	if _, _, err := e.do.AgentPlatform.DeleteOpenAIAPIKey(context.Background(), uuid); err != nil {
		t.Fatal(err)
	}
	e.mustOK(logical.DeleteOperation, "keys/gone", nil)
	if len(e.listKeys()) != 0 {
		t.Fatal("vault entry survived")
	}
}

func TestKeys_DeleteFailureKeepsVaultEntry(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/sticky", map[string]any{"provider": "openai", "api_key": openAIKey("sticky")})
	e.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/v2/gen-ai/openai/keys/", Status: 500, Count: platform.MaxAttempts})
	e.mustServerError(logical.DeleteOperation, "keys/sticky", nil, "HTTP 500")
	if len(e.listKeys()) != 1 || e.platformKeyNamed(platform.OpenAI, "sticky") == nil {
		t.Fatal("a failed platform delete changed Vault or the platform")
	}
}

// sudoRename renames through the backend (sudo is enforced by Vault core,
// tested in the acceptance suite).
func sudoRename(t *testing.T, e *testEnv, from, to string) {
	t.Helper()
	e.mustOK(logical.UpdateOperation, "rename/"+from, map[string]any{"new_name": to})
}

// Concurrent creates of one name: exactly one platform key, one Vault entry.
func TestKeys_ConcurrentCreatesOfOneName(t *testing.T) {
	e := newTestEnv(t, nil)
	const n = 8
	var wg sync.WaitGroup
	results := make(chan *logical.Response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// CreateOperation, as Vault sends when the existence check ran
			// before any of them stored the key.
			resp, err := e.send(logical.CreateOperation, "keys/contended", map[string]any{
				"provider": "openai", "api_key": openAIKey(fmt.Sprintf("race%d", i)),
			})
			if err != nil {
				t.Error(err)
			}
			results <- resp
		}()
	}
	wg.Wait()
	close(results)
	won := 0
	for resp := range results {
		if resp != nil && !resp.IsError() {
			won++
		} else if resp == nil || !strings.Contains(resp.Error().Error(), "created meanwhile") {
			t.Errorf("loser got %v", resp)
		}
	}
	if won != 1 || len(e.state().OpenAIKeys) != 1 || len(e.listKeys()) != 1 {
		t.Fatalf("won=%d platform=%d vault=%v", won, len(e.state().OpenAIKeys), e.listKeys())
	}
}

// Two names adopting one platform key at once: one wins, the other is
// refused, and the key ends up with the winner's name.
func TestKeys_ConcurrentAdoptionsOfOneUUID(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "contested", ApiKey: anthropicKey("contested")})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	winners := make(chan string, 2)
	for _, name := range []string{"team-a-claim", "team-b-claim"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.send(logical.CreateOperation, "keys/"+name, map[string]any{
				"provider": "anthropic", "api_key": anthropicKey(name), "uuid": legacy.Uuid,
			})
			if err == nil && !resp.IsError() {
				winners <- name
			}
		}()
	}
	wg.Wait()
	close(winners)
	var won []string
	for w := range winners {
		won = append(won, w)
	}
	if len(won) != 1 {
		t.Fatalf("winners = %v, want exactly one", won)
	}
	keys := e.state().AnthropicKeys
	if len(keys) != 1 || keys[0].Name != won[0] || !slices.Equal(e.listKeys(), won) {
		t.Fatalf("platform %+v, vault %v, winner %v", keys, e.listKeys(), won)
	}
}

// uuid= goes into a platform URL path: only the canonical form passes, so no
// team can reach another object (another team's agent, say) through "../",
// and the "already managed" check cannot be sidestepped by spelling.
func TestKeys_AdoptAcceptsOnlyCanonicalUUIDs(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/team-b-key", map[string]any{"provider": "anthropic", "api_key": anthropicKey("teamb")})
	teamB := e.platformKeyNamed(platform.Anthropic, "team-b-key").UUID
	agent := e.createAgent("team-b-agent", platform.Anthropic, teamB)
	before := e.emu.Counts()

	for _, bad := range []string{
		"../../agents/" + agent.Uuid,
		"./" + teamB,
		teamB + "/",
		"../keys/" + teamB,
		teamB + "?",
		teamB + "#x",
		teamB[:35],
		teamB + "0",
	} {
		msg := e.mustBadRequest(logical.CreateOperation, "keys/team-a-evil", map[string]any{"provider": "anthropic", "api_key": anthropicKey("evil"), "uuid": bad}, "8-4-4-4-12 hexadecimal digits")
		if strings.Contains(msg, teamB) || strings.Contains(msg, agent.Uuid) {
			t.Errorf("the refusal echoes the value: %s", msg)
		}
	}
	after := e.emu.Counts()
	for route, n := range after {
		if strings.Contains(route, "agents") && n != before[route] {
			t.Errorf("a refused uuid reached the platform: %s", route)
		}
	}
	for _, a := range e.state().Agents {
		if a.UUID == agent.Uuid && a.Name != "team-b-agent" {
			t.Fatalf("team B's agent was changed: %+v", a)
		}
	}
	// Upper case is the same uuid: still refused as managed.
	e.mustBadRequest(logical.CreateOperation, "keys/team-a-evil", map[string]any{"provider": "anthropic", "api_key": anthropicKey("evil"), "uuid": strings.ToUpper(teamB)},
		"already managed by this mount", "team-b-key")
	if got := e.listKeys(); len(got) != 1 {
		t.Fatalf("a refused adoption stored something: %v", got)
	}
}

// A key pasted into uuid= is not echoed: error strings reach the audit log
// in plain text.
func TestKeys_KeyPastedIntoUUIDIsNotEchoed(t *testing.T) {
	e := newTestEnv(t, nil)
	pasted := anthropicKey("pasted-into-uuid")
	msg := e.mustBadRequest(logical.CreateOperation, "keys/pasted", map[string]any{"provider": "anthropic", "api_key": anthropicKey("real"), "uuid": pasted}, "uuid is not a platform key uuid")
	if strings.Contains(msg, pasted[:20]) {
		t.Fatalf("the key pasted into uuid= is echoed: %s", msg)
	}
	e.mustOK(logical.CreateOperation, "keys/pasted", map[string]any{"provider": "anthropic", "api_key": anthropicKey("real")})
	msg = e.mustBadRequest(logical.UpdateOperation, "keys/pasted", map[string]any{"uuid": pasted}, "uuid is not a platform key uuid")
	if strings.Contains(msg, pasted[:20]) {
		t.Fatalf("the key pasted into uuid= is echoed on update: %s", msg)
	}
}

// Vault's storage refuses paths with "..": the name rule refuses them first,
// with its 400 instead of a 500 from the existence check.
func TestKeys_NameWithDoublePeriodIsRefusedByTheRule(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, name := range []string{"a..b", "..", "team-a..x"} {
		e.mustBadRequest(logical.CreateOperation, "keys/"+name, map[string]any{"provider": "anthropic", "api_key": anthropicKey("dots")}, `contains ".."`, "a key name is 1 to 64")
	}
	if len(e.state().AnthropicKeys) != 0 {
		t.Fatal("a refused name reached the platform")
	}
}

// One name rule for every path: a name the rule accepts reaches agents,
// reassign and a delete without force.
func TestKeys_EveryPathTakesEveryValidName(t *testing.T) {
	e := newTestEnv(t, nil)
	names := []string{"bot-", "-bot", ".bot", "a.b-"}
	for i, name := range names {
		e.mustOK(logical.CreateOperation, "keys/"+name, map[string]any{"provider": "openai", "api_key": openAIKey(fmt.Sprintf("edge%d", i))})
	}
	agent := e.createAgent("edge-agent", platform.OpenAI, e.platformKeyNamed(platform.OpenAI, "bot-").UUID)
	resp := e.mustOK(logical.ReadOperation, "keys/bot-/agents", nil)
	if agents := resp.Data["agents"].([]map[string]any); len(agents) != 1 || agents[0]["uuid"] != agent.Uuid {
		t.Fatalf("agents of bot- = %v", resp.Data)
	}
	e.mustOK(logical.UpdateOperation, "keys/bot-/reassign", map[string]any{"to": "-bot"})
	e.mustOK(logical.UpdateOperation, "keys/-bot/reassign", map[string]any{"to": ".bot"})
	if _, openai := e.agentKey(agent.Uuid); openai != e.platformKeyNamed(platform.OpenAI, ".bot").UUID {
		t.Fatal("the agent did not reach .bot")
	}
	e.mustOK(logical.DeleteOperation, "keys/bot-", nil)
	e.mustOK(logical.DeleteOperation, "keys/-bot", nil)
}

// Two names never manage one platform key: an adoption that scans storage
// while a rename moves the same key waits for the rename (both hold the
// uuid's lock) and then sees the key under its new name.
func TestKeys_AdoptionDoesNotRaceRename(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/race-a", map[string]any{"provider": "anthropic", "api_key": anthropicKey("race")})
	uuid := e.platformKeyNamed(platform.Anthropic, "race-a").UUID

	renamed := make(chan struct{})
	e.storage.onNextList(func(string) {
		// The adoption has listed the names; a rename runs now.
		go func() {
			defer close(renamed)
			_, _ = e.send(logical.UpdateOperation, "rename/race-a", map[string]any{"new_name": "race-c"})
		}()
		select {
		case <-renamed: // no lock kept the rename out
		case <-time.After(300 * time.Millisecond): // it waits for the uuid's lock
		}
	})
	resp, err := e.request(logical.CreateOperation, "keys/race-b", map[string]any{"provider": "anthropic", "api_key": anthropicKey("race-b"), "uuid": uuid})
	<-renamed
	if err != nil {
		t.Fatal(err)
	}
	owners, err := findKeysByUUID(t.Context(), e.storage, uuid)
	if err != nil {
		t.Fatal(err)
	}
	if len(owners) != 1 {
		var names []string
		for _, o := range owners {
			names = append(names, o.Name)
		}
		t.Fatalf("platform key %s is managed by %d names: %v (adoption answered %v)", uuid, len(owners), names, resp)
	}
}

// A field the path does not have is a 400 that names it and lists the
// fields the path takes; a field name that looks like a key is not echoed.
func TestKeys_UnknownFieldsAreRefused(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustBadRequest(logical.CreateOperation, "keys/typo", map[string]any{"provider": "anthropic", "api-key": anthropicKey("typo")}, `unknown field "api-key"`, "api_key")
	pasted := anthropicKey("as-field-name")
	msg := e.mustBadRequest(logical.CreateOperation, "keys/typo", map[string]any{"provider": "anthropic", "api_key": anthropicKey("typo2"), strings.ToLower(pasted[:30]): "x"}, "unknown field (not shown")
	if strings.Contains(msg, strings.ToLower(pasted[:20])) {
		t.Fatalf("a key used as a field name was echoed: %s", msg)
	}
	e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"request_timout": 5}, `unknown field "request_timout"`)
	if len(e.state().AnthropicKeys) != 0 || len(e.listKeys()) != 0 {
		t.Fatal("a refused request changed something")
	}
	e.mustBadRequest(logical.CreateOperation, "keys/long-description", map[string]any{"provider": "anthropic", "api_key": anthropicKey("longdesc"), "description": strings.Repeat("d", 1025)}, "description is 1025 bytes long")
}

// Found by the chaos run (acceptance/chaos_test.go, seed 7): a delete that
// the platform applied but whose answer was lost, with the retries refused
// (429), failed and kept the Vault entry of a key the platform no longer
// had; a delete has no write-ahead log entry, so nothing put them back in
// line. A delete that may have been applied now asks the platform whether
// the key is gone, and finishes when it is.
func TestDelete_AppliedButAnswerLost(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/lost-answer", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("lost-answer")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts - 1, Mode: "status", Status: http.StatusTooManyRequests})

	e.mustOK(logical.DeleteOperation, "keys/lost-answer", nil)

	if pk := e.platformKeyNamed(platform.OpenAI, "lost-answer"); pk != nil {
		t.Fatalf("the platform still has the key: %+v", pk)
	}
	if keys := e.listKeys(); len(keys) != 0 {
		t.Fatalf("Vault still lists %v", keys)
	}
}

// When the platform still has the key, or cannot say, the delete fails and
// the entry stays: the caller deletes again.
func TestDelete_AmbiguousAndKeyStillThere(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/still-there", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("still-there")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts, Mode: "status", Status: http.StatusBadGateway})

	e.mustServerError(logical.DeleteOperation, "keys/still-there", nil)

	if pk := e.platformKeyNamed(platform.OpenAI, "still-there"); pk == nil {
		t.Fatal("the platform lost the key")
	}
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v, want the key kept", keys)
	}
}

// The node "dies" between the platform's delete and the storage delete
// (here: the storage delete fails): the write-ahead log entry stays, and the
// periodic rollback finishes the delete, since the platform no longer has
// the key.
func TestDelete_RollbackFinishesAPlatformDelete(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/half-deleted", map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("half-deleted")})
	e.storage.failUnder("keys/")
	e.mustServerError(logical.DeleteOperation, "keys/half-deleted", nil, "Vault's periodic rollback")
	e.storage.failUnder("")
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v before the rollback", keys)
	}
	if pk := e.platformKeyNamed(platform.Anthropic, "half-deleted"); pk != nil {
		t.Fatalf("the platform still has the key: %+v", pk)
	}
	assertSettlesOnRollback(t, e)
	if keys := e.listKeys(); len(keys) != 0 {
		t.Fatalf("Vault still lists %v after the rollback", keys)
	}
}

// The rollback of a delete that did not happen changes nothing.
func TestDelete_RollbackKeepsAKeyThePlatformHas(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/kept", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("kept")})
	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts, Mode: "status", Status: http.StatusServiceUnavailable})
	e.mustServerError(logical.DeleteOperation, "keys/kept", nil, "periodic rollback")
	assertSettlesOnRollback(t, e)
	if keys := e.listKeys(); len(keys) != 1 {
		t.Fatalf("Vault lists %v, want the key kept", keys)
	}
	if pk := e.platformKeyNamed(platform.OpenAI, "kept"); pk == nil {
		t.Fatal("the platform lost the key")
	}
}
