package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform/platformtest"
)

// Canonical uuids as the platform hands them out.
const (
	testKeyUUID   = "3f1c2b9a-8d4e-4a6b-9c1d-2e3f4a5b6c7d"
	testAgentUUID = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
)

// recordedRequest is what a fake platform saw of one request.
type recordedRequest struct {
	Method, Path, RawQuery string
	Body                   map[string]any
}

// fakePlatform is an httptest server that answers every request the plugin
// sends like the platform would (a key, a page of keys, a page of agents or
// an agent) and records it, so tests can check what went over the wire.
type fakePlatform struct {
	srv *httptest.Server
	mu  sync.Mutex
	log []recordedRequest
}

func newFakePlatform(t *testing.T) *fakePlatform {
	t.Helper()
	f := &fakePlatform{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePlatform) serve(w http.ResponseWriter, r *http.Request) {
	rec := recordedRequest{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if body, _ := io.ReadAll(r.Body); len(body) > 0 {
		_ = json.Unmarshal(body, &rec.Body)
	}
	f.mu.Lock()
	f.log = append(f.log, rec)
	f.mu.Unlock()

	key := map[string]any{"uuid": testKeyUUID, "name": "fake-key", "created_at": "2025-01-02T03:04:05Z"}
	agent := map[string]any{"uuid": testAgentUUID, "name": "fake-agent", "region": "tor1"}
	var answer any
	switch {
	case strings.HasPrefix(r.URL.Path, "/v2/gen-ai/agents/"):
		answer = map[string]any{"agent": agent}
	case strings.HasSuffix(r.URL.Path, "/agents"):
		answer = map[string]any{"agents": []any{agent}, "meta": map[string]any{"total": 1}}
	case strings.HasSuffix(r.URL.Path, "/keys"):
		if r.Method == http.MethodGet {
			answer = map[string]any{"api_key_infos": []any{key}, "meta": map[string]any{"total": 1}}
		} else {
			answer = map[string]any{"api_key_info": key}
		}
	default:
		answer = map[string]any{"api_key_info": key}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(answer)
}

func (f *fakePlatform) requests() []recordedRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recordedRequest(nil), f.log...)
}

func (f *fakePlatform) platform(t *testing.T) *GodoClient {
	t.Helper()
	p, err := New(f.srv.URL+"/", "fake-platform-token", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every platform method, for every provider, goes to that provider's URL
// family with the right method and body, through the real godo client: the
// provider table is wired to the right godo methods. An unknown provider
// sends nothing.
func TestGodoPlatform_ProviderTable(t *testing.T) {
	ctx := context.Background()
	for _, provider := range []string{Anthropic, OpenAI} {
		keys := "/v2/gen-ai/" + provider + "/keys"
		agentKeyField := map[string]string{Anthropic: "anthropic_key_uuid", OpenAI: "open_ai_key_uuid"}[provider]
		cases := map[string]struct {
			call func(p *GodoClient) error
			want recordedRequest
		}{
			"create": {
				func(p *GodoClient) error {
					k, err := p.CreateKey(ctx, provider, "new-key", "secret-value")
					if err == nil && k.UUID != testKeyUUID {
						t.Errorf("create returned %+v", k)
					}
					return err
				},
				recordedRequest{Method: http.MethodPost, Path: keys, Body: map[string]any{"name": "new-key", "api_key": "secret-value"}},
			},
			"get": {
				func(p *GodoClient) error {
					k, err := p.GetKey(ctx, provider, testKeyUUID)
					if err == nil && (k.Name != "fake-key" || k.CreatedAt.IsZero()) {
						t.Errorf("get returned %+v", k)
					}
					return err
				},
				recordedRequest{Method: http.MethodGet, Path: keys + "/" + testKeyUUID},
			},
			"update": {
				func(p *GodoClient) error {
					_, err := p.UpdateKey(ctx, provider, testKeyUUID, KeyChange{Name: "renamed"})
					return err
				},
				recordedRequest{Method: http.MethodPut, Path: keys + "/" + testKeyUUID, Body: map[string]any{"api_key_uuid": testKeyUUID, "name": "renamed"}},
			},
			"delete": {
				func(p *GodoClient) error { return p.DeleteKey(ctx, provider, testKeyUUID) },
				recordedRequest{Method: http.MethodDelete, Path: keys + "/" + testKeyUUID},
			},
			"list": {
				func(p *GodoClient) error {
					ks, err := p.ListKeys(ctx, provider)
					if err == nil && (len(ks) != 1 || ks[0].UUID != testKeyUUID) {
						t.Errorf("list returned %+v", ks)
					}
					return err
				},
				recordedRequest{Method: http.MethodGet, Path: keys, RawQuery: "page=1&per_page=200"},
			},
			"list agents by key": {
				func(p *GodoClient) error {
					as, err := p.ListAgentsByKey(ctx, provider, testKeyUUID)
					if err == nil && (len(as) != 1 || as[0].UUID != testAgentUUID) {
						t.Errorf("list agents returned %+v", as)
					}
					return err
				},
				recordedRequest{Method: http.MethodGet, Path: keys + "/" + testKeyUUID + "/agents", RawQuery: "page=1&per_page=200"},
			},
			"set agent key": {
				func(p *GodoClient) error {
					a, err := p.SetAgentKey(ctx, provider, testAgentUUID, testKeyUUID)
					if err == nil && a.Name != "fake-agent" {
						t.Errorf("set agent key returned %+v", a)
					}
					return err
				},
				recordedRequest{Method: http.MethodPut, Path: "/v2/gen-ai/agents/" + testAgentUUID, Body: map[string]any{"uuid": testAgentUUID, agentKeyField: testKeyUUID}},
			},
		}
		for name, tc := range cases {
			t.Run(provider+"/"+name, func(t *testing.T) {
				f := newFakePlatform(t)
				if err := tc.call(f.platform(t)); err != nil {
					t.Fatal(err)
				}
				got := f.requests()
				if len(got) != 1 {
					t.Fatalf("sent %d requests, want 1: %+v", len(got), got)
				}
				if got[0].Method != tc.want.Method || got[0].Path != tc.want.Path || got[0].RawQuery != tc.want.RawQuery {
					t.Errorf("sent %s %s?%s, want %s %s?%s", got[0].Method, got[0].Path, got[0].RawQuery, tc.want.Method, tc.want.Path, tc.want.RawQuery)
				}
				if len(got[0].Body) != len(tc.want.Body) {
					t.Errorf("sent body %v, want %v", got[0].Body, tc.want.Body)
				}
				for k, v := range tc.want.Body {
					if got[0].Body[k] != v {
						t.Errorf("body field %s = %v, want %v (body %v)", k, got[0].Body[k], v, got[0].Body)
					}
				}
			})
		}
	}

	t.Run("unknown provider", func(t *testing.T) {
		f := newFakePlatform(t)
		p := f.platform(t)
		errs := map[string]error{}
		_, errs["create"] = p.CreateKey(ctx, "mistral", "n", "s")
		_, errs["get"] = p.GetKey(ctx, "mistral", testKeyUUID)
		_, errs["update"] = p.UpdateKey(ctx, "mistral", testKeyUUID, KeyChange{Name: "n"})
		errs["delete"] = p.DeleteKey(ctx, "mistral", testKeyUUID)
		_, errs["list"] = p.ListKeys(ctx, "mistral")
		_, errs["list agents"] = p.ListAgentsByKey(ctx, "mistral", testKeyUUID)
		_, errs["set agent key"] = p.SetAgentKey(ctx, "mistral", testAgentUUID, testKeyUUID)
		for op, err := range errs {
			if err == nil || err.Error() != UnknownProvider("mistral").Error() {
				t.Errorf("%s: want the unknown provider error, got %v", op, err)
			}
		}
		if n := len(f.requests()); n != 0 {
			t.Fatalf("an unknown provider sent %d requests", n)
		}
	})
}

func TestIsPlatformUUID(t *testing.T) {
	valid := []string{
		testKeyUUID,
		strings.ToUpper(testKeyUUID),
		"00000000-0000-0000-0000-000000000000",
		"FFFFFFFF-ffff-FFFF-ffff-FFFFFFFFFFFF",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8", // version 1
		"01890a5d-ac96-774b-bcce-b302099a8057", // version 7
	}
	invalid := []string{
		"",
		"3f1c2b9a8d4e4a6b9c1d2e3f4a5b6c7d",
		"{" + testKeyUUID + "}",
		"urn:uuid:" + testKeyUUID,
		"3f1c2b9g-8d4e-4a6b-9c1d-2e3f4a5b6c7d",
		" " + testKeyUUID,
		testKeyUUID + "\n",
		testKeyUUID + "0",
		"3f1c2b9a-8d4e-4a6b-9c1d2e3f-4a5b6c7d",
		"３f1c2b9a-8d4e-4a6b-9c1d-2e3f4a5b6c7d", // a full-width digit
	}
	for _, s := range valid {
		if !IsUUID(s) {
			t.Errorf("IsUUID(%q) = false", s)
		}
	}
	for _, s := range invalid {
		if IsUUID(s) {
			t.Errorf("IsUUID(%q) = true", s)
		}
	}
}

// godo pastes uuids into request paths and "../" resolves: every method that
// puts a uuid in a path refuses a non-canonical one before sending anything,
// without echoing it. Sent through the real godo client to a recording server.
func TestGodoPlatform_RefusesMalformedUUIDs(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(p *GodoClient, uuid string) error{
		"get key": func(p *GodoClient, uuid string) error {
			_, err := p.GetKey(ctx, Anthropic, uuid)
			return err
		},
		"update key": func(p *GodoClient, uuid string) error {
			_, err := p.UpdateKey(ctx, OpenAI, uuid, KeyChange{Name: "renamed"})
			return err
		},
		"delete key": func(p *GodoClient, uuid string) error { return p.DeleteKey(ctx, Anthropic, uuid) },
		"list agents by key": func(p *GodoClient, uuid string) error {
			_, err := p.ListAgentsByKey(ctx, OpenAI, uuid)
			return err
		},
		"set agent key, agent uuid": func(p *GodoClient, uuid string) error {
			_, err := p.SetAgentKey(ctx, Anthropic, uuid, testKeyUUID)
			return err
		},
		"set agent key, key uuid": func(p *GodoClient, uuid string) error {
			_, err := p.SetAgentKey(ctx, Anthropic, testAgentUUID, uuid)
			return err
		},
	}
	malformed := []string{
		"../../agents/" + testAgentUUID,
		"./" + testKeyUUID,
		testKeyUUID + "/",
		testKeyUUID + "?x",
		testKeyUUID + "#x",
		"sk-ant-api03-PASTEDKEYPASTEDKEY0123456789",
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			f := newFakePlatform(t)
			p := f.platform(t)
			for _, bad := range malformed {
				err := call(p, bad)
				if !errors.Is(err, ErrMalformedUUID) {
					t.Errorf("%q: want ErrMalformedUUID, got %v", bad, err)
					continue
				}
				if strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "PASTEDKEY") {
					t.Errorf("%q: the error echoes the value: %v", bad, err)
				}
			}
			if got := f.requests(); len(got) != 0 {
				t.Fatalf("malformed uuids reached the platform: %+v", got)
			}

			upper := strings.ToUpper(testKeyUUID)
			if name == "set agent key, agent uuid" {
				upper = strings.ToUpper(testAgentUUID)
			}
			if err := call(p, upper); err != nil {
				t.Fatalf("a canonical upper-case uuid was refused: %v", err)
			}
			if got := f.requests(); len(got) != 1 {
				t.Fatalf("sent %d requests for a canonical uuid, want 1", len(got))
			}
		})
	}
}

// The platform client follows no redirect: the token (which bearerTransport
// would set again on every hop) and the key in a create never reach the
// Location, and the failure is an upstream fault, not a caller error.
func TestGodoPlatform_RefusesRedirects(t *testing.T) {
	ctx := context.Background()
	secret := "sk-ant-api03-redirect-0123456789abcdef"
	calls := map[string]func(p *GodoClient) error{
		"list keys": func(p *GodoClient) error {
			_, err := p.ListKeys(ctx, Anthropic)
			return err
		},
		"create key": func(p *GodoClient) error {
			_, err := p.CreateKey(ctx, Anthropic, "redirected", secret)
			return err
		},
		"check token": func(p *GodoClient) error { return p.CheckToken(ctx) },
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for name, call := range calls {
			t.Run(fmt.Sprintf("%s/%d", name, status), func(t *testing.T) {
				url, hits := platformtest.NewRedirectPair(t, status)
				p, err := New(url+"/", "redirect-test-token", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
				if err != nil {
					t.Fatal(err)
				}
				err = call(p)
				if n := hits.Load(); n != 0 {
					t.Fatalf("the redirect target received %d requests", n)
				}
				if err == nil {
					t.Fatal("want an error")
				}
				if want := "the platform " + fmt.Sprintf(platformtest.RedirectRefusal, status); !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
				var pe *Error
				if !errors.As(err, &pe) || pe.Kind != Failed {
					t.Errorf("want an upstream fault, got %T: %v", err, err)
				}
				for _, leak := range []string{platformtest.LocationMarker, "127.0.0.1", "redirect-test-token", secret} {
					if strings.Contains(err.Error(), leak) {
						t.Errorf("error shows %q: %v", leak, err)
					}
				}
			})
		}
	}
}
