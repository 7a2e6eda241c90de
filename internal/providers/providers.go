// Package providers talks to the model providers themselves: it verifies
// model keys (verify.go) and calls the Admin APIs that zero-touch rotation
// needs (provider_admin.go). Everything that differs between Anthropic and OpenAI is
// one row of the table below; the retry policy, redirect refusal and
// redaction are the platform package's, shared with the platform client.
package providers

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// anthropicVersion is the API version header Anthropic requires.
const anthropicVersion = "2023-06-01"

// spec is one provider's row: what the plugin knows about its API and its
// keys.
type spec struct {
	// label names the provider in messages ("Anthropic").
	label string
	// auth sets the headers that carry a key, model or admin.
	auth func(h http.Header, key string)
	// verifyPath is the cheapest authenticated call for a model key.
	verifyPath string
	// keyPrefix starts every model key; modelKeyShapes says what they look
	// like, for a message.
	keyPrefix      string
	modelKeyShapes string
	// adminPrefix starts every admin key.
	adminPrefix string
	// adminCheck is the cheap admin read that checks an admin key.
	adminCheckOp, adminCheckPath string
}

var specs = map[string]*spec{
	platform.Anthropic: {
		label: "Anthropic",
		auth: func(h http.Header, key string) {
			h.Set("x-api-key", key)
			h.Set("anthropic-version", anthropicVersion)
		},
		verifyPath:     "/v1/models?limit=1",
		keyPrefix:      "sk-ant-",
		modelKeyShapes: "sk-ant-api...",
		adminPrefix:    "sk-ant-admin",
		adminCheckOp:   "list API keys",
		adminCheckPath: "/v1/organizations/api_keys?limit=1",
	},
	platform.OpenAI: {
		label:          "OpenAI",
		auth:           func(h http.Header, key string) { h.Set("Authorization", "Bearer "+key) },
		verifyPath:     "/v1/models",
		keyPrefix:      "sk-",
		modelKeyShapes: "sk-proj-..., sk-svcacct-... or sk-...",
		adminPrefix:    "sk-admin-",
		adminCheckOp:   "list projects",
		adminCheckPath: "/v1/organization/projects?limit=1",
	},
}

func specOf(provider string) (*spec, error) {
	if s, ok := specs[provider]; ok {
		return s, nil
	}
	return nil, platform.UnknownProvider(provider)
}

// Known reports whether provider is one of the table's.
func Known(provider string) bool { return specs[provider] != nil }

// AdminPrefix is how the provider's admin keys start.
func AdminPrefix(provider string) string {
	if s, ok := specs[provider]; ok {
		return s.adminPrefix
	}
	return ""
}

// CheckModelKey checks the shape of a model key for its provider. The
// message names api_key and never includes the key; it is the caller's to
// fix.
func CheckModelKey(provider, key string) error {
	s, err := specOf(provider)
	if err != nil {
		return err
	}
	if strings.HasPrefix(key, s.adminPrefix) {
		return fmt.Errorf("api_key is an %s admin key; agents need a model key (%s)", s.label, s.modelKeyShapes)
	}
	// Another provider's keys may start with this one's prefix ("sk-ant-"
	// starts with "sk-"): name the provider the key looks like.
	for name, other := range specs {
		if name != provider && len(other.keyPrefix) > len(s.keyPrefix) && strings.HasPrefix(key, other.keyPrefix) {
			return fmt.Errorf("api_key looks like an %s key, but provider is %q", other.label, provider)
		}
	}
	if !strings.HasPrefix(key, s.keyPrefix) {
		return fmt.Errorf("api_key does not look like an %s key: %s keys start with %q", s.label, s.label, s.keyPrefix)
	}
	return nil
}

// Config is what the provider clients of one mount configuration need.
type Config struct {
	AnthropicURL, OpenAIURL           string
	AnthropicAdminKey, OpenAIAdminKey string
	// Timeout bounds each operation, retries included (request_timeout).
	Timeout time.Duration
	// RetryBase is the first backoff of a retried call (the backend's
	// tuning; platform.DefaultRetryBaseDelay in a release).
	RetryBase time.Duration
}

// endpoint is one provider's row with this configuration's URL and admin
// key.
type endpoint struct {
	*spec
	baseURL  string
	adminKey string
}

func (c Config) endpoints() map[string]endpoint {
	return map[string]endpoint{
		platform.Anthropic: {spec: specs[platform.Anthropic], baseURL: strings.TrimRight(c.AnthropicURL, "/"), adminKey: c.AnthropicAdminKey},
		platform.OpenAI:    {spec: specs[platform.OpenAI], baseURL: strings.TrimRight(c.OpenAIURL, "/"), adminKey: c.OpenAIAdminKey},
	}
}

// newHTTPClient is the client of every provider call: its own transport
// (closing the idle connections of a replaced client must not close other
// users'), no redirects, request_timeout.
func newHTTPClient(c Config, upstream string) *http.Client {
	return &http.Client{
		Timeout:       c.Timeout,
		Transport:     platform.UpstreamTransport(),
		CheckRedirect: platform.RefuseRedirects(upstream),
	}
}
