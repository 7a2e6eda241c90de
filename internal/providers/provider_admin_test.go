package providers

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Admin keys of the tests' shape (the backend's tests use the same).
const (
	testOpenAIAdminKey    = "sk-admin-QQQQQQQQQQQQ-test-openai-admin"
	testAnthropicAdminKey = "sk-ant-admin01-RRRRRRRRRRRR-test-anthropic-admin"
)

// The Admin API client on the wire: the verifier's rules (no redirects, no
// provider text, request_timeout) and retry.go's policy, with a create never
// re-sent.
func TestProviderAdmin_Wire(t *testing.T) {
	echo := "Incorrect API key provided: sk-admin-****" + testOpenAIAdminKey[len(testOpenAIAdminKey)-4:]
	cases := map[string]struct {
		statuses []int // answered in turn; the last one repeats
		location string
		call     func(a *HTTPAdmin) error
		hits     int
		check    func(t *testing.T, err error)
	}{
		"a listing is retried after a 503": {
			statuses: []int{503, 503, 200},
			call: func(a *HTTPAdmin) error {
				_, err := a.ListServiceAccounts(t.Context(), "proj_x")
				return err
			},
			hits:  3,
			check: func(t *testing.T, err error) { mustNil(t, err) },
		},
		"a create is never re-sent": {
			statuses: []int{503},
			call: func(a *HTTPAdmin) error {
				_, err := a.CreateServiceAccount(t.Context(), "proj_x", "vault-k-v1")
				return err
			},
			hits: 1,
			check: func(t *testing.T, err error) {
				if err == nil || IsRefusal(err) || !strings.Contains(err.Error(), "HTTP 503") {
					t.Fatalf("err = %v", err)
				}
			},
		},
		"a refused create changed nothing": {
			statuses: []int{400},
			call: func(a *HTTPAdmin) error {
				_, err := a.CreateServiceAccount(t.Context(), "proj_x", "vault-k-v1")
				return err
			},
			hits: 1,
			check: func(t *testing.T, err error) {
				if !IsRefusal(err) {
					t.Fatalf("err = %v", err)
				}
			},
		},
		"a rejected admin key is the caller's, without the provider's text": {
			statuses: []int{401},
			call:     func(a *HTTPAdmin) error { return a.CheckAdminKey(t.Context(), platform.OpenAI) },
			hits:     1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, platform.ErrRefused) || !strings.Contains(err.Error(), "rejected openai_admin_key (HTTP 401)") || strings.Contains(err.Error(), "Incorrect") {
					t.Fatalf("err = %v", err)
				}
			},
		},
		"a delete of what is gone is not found": {
			statuses: []int{404},
			call:     func(a *HTTPAdmin) error { return a.DeleteServiceAccount(t.Context(), "proj_x", "svc_acct_1") },
			hits:     1,
			check: func(t *testing.T, err error) {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v", err)
				}
			},
		},
		"a redirect is refused": {
			statuses: []int{302},
			location: "http://127.0.0.1:1/steal",
			call:     func(a *HTTPAdmin) error { return a.CheckAdminKey(t.Context(), platform.Anthropic) },
			hits:     1,
			check: func(t *testing.T, err error) {
				if err == nil || !strings.Contains(err.Error(), "refusing to follow it") || strings.Contains(err.Error(), "steal") {
					t.Fatalf("err = %v", err)
				}
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(hits.Add(1))
				status := tc.statuses[min(n, len(tc.statuses))-1]
				if strings.HasPrefix(r.URL.Path, "/anthropic/") {
					if r.Header.Get("x-api-key") != testAnthropicAdminKey || r.Header.Get("anthropic-version") != anthropicVersion || r.Header.Get("Authorization") != "" {
						t.Errorf("anthropic headers: %v", r.Header)
					}
				} else if r.Header.Get("Authorization") != "Bearer "+testOpenAIAdminKey {
					t.Errorf("openai headers: %v", r.Header)
				}
				if tc.location != "" {
					w.Header().Set("Location", tc.location)
				}
				w.WriteHeader(status)
				if status == 200 {
					_, _ = w.Write([]byte(`{"data":[],"has_more":false}`))
				} else {
					_, _ = w.Write([]byte(`{"error":{"message":"` + echo + `"}}`))
				}
			}))
			defer srv.Close()
			a := NewAdmin(Config{
				OpenAIURL: srv.URL + "/openai", AnthropicURL: srv.URL + "/anthropic", Timeout: 5 * time.Second, RetryBase: testRetryBase,
				OpenAIAdminKey: testOpenAIAdminKey, AnthropicAdminKey: testAnthropicAdminKey,
			}, NewPace())
			err := tc.call(a)
			tc.check(t, err)
			if got := int(hits.Load()); got != tc.hits {
				t.Fatalf("%d requests, want %d", got, tc.hits)
			}
			if err != nil && (strings.Contains(err.Error(), testOpenAIAdminKey) || strings.Contains(err.Error(), testAnthropicAdminKey) || strings.Contains(err.Error(), "sk-admin-")) {
				t.Fatalf("the error carries a key: %v", err)
			}
		})
	}
}

// Without an admin key for the provider, nothing is sent.
func TestProviderAdmin_MissingKeySendsNothing(t *testing.T) {
	a := NewAdmin(Config{OpenAIURL: "http://127.0.0.1:1", Timeout: time.Second, RetryBase: testRetryBase}, nil)
	if err := a.CheckAdminKey(t.Context(), platform.OpenAI); !errors.Is(err, ErrAdminKeyMissing) || !IsRefusal(err) {
		t.Fatalf("err = %v", err)
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
