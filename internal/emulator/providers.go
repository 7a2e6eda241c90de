package emulator

import (
	"net/http"
	"regexp"
	"strings"
)

// provider is a model provider whose keys the platform stores. The same
// format rules back the provider's own key check and the platform's
// "Verify and Save", so a key the provider rejects cannot be pushed.
type provider struct {
	name        string // segment in /v2/gen-ai/<name>/keys
	label       string // for messages
	validFormat func(secret string) bool
}

var (
	anthropic = &provider{name: "anthropic", label: "Anthropic", validFormat: validAnthropicKey}
	openAI    = &provider{name: "openai", label: "OpenAI", validFormat: validOpenAIKey}
	providers = []*provider{anthropic, openAI}
)

var (
	// Model keys only: admin keys (sk-ant-admin01-...) cannot call models.
	anthropicKeyFormat = regexp.MustCompile(`^sk-ant-api\d\d-[A-Za-z0-9_-]{16,}$`)
	// Project, service-account and legacy user keys.
	openAIKeyFormat = regexp.MustCompile(`^sk-(proj-|svcacct-)?[A-Za-z0-9_-]{16,}$`)
)

func validAnthropicKey(secret string) bool { return anthropicKeyFormat.MatchString(secret) }

// validOpenAIKey also refuses admin keys and Anthropic keys, which the
// pattern alone would let through because it allows hyphens.
func validOpenAIKey(secret string) bool {
	return openAIKeyFormat.MatchString(secret) &&
		!strings.HasPrefix(secret, "sk-admin-") &&
		!strings.HasPrefix(secret, "sk-ant-")
}

// keyWorksLocked reports whether the provider would accept secret now. A key
// it accepts exists at the provider from then on: an Anthropic key joins the
// organization's keys that the Admin API lists. The caller holds e.mu.
func (e *Emulator) keyWorksLocked(p *provider, secret string) bool {
	if !e.keyUsableLocked(p, secret) {
		return false
	}
	if p == anthropic {
		e.registerAnthropicKeyLocked(secret, "")
	}
	return true
}

// keyUsableLocked is keyWorksLocked without recording the key: the format is
// a model key's, nobody revoked it, and the provider's Admin API has not
// switched it off (an Anthropic key set inactive or archived, the key of a
// deleted OpenAI service account).
func (e *Emulator) keyUsableLocked(p *provider, secret string) bool {
	return p.validFormat(secret) && !e.revoked[secret] && !e.retiredLocked(p, secret)
}

func (e *Emulator) keyWorks(p *provider, secret string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keyWorksLocked(p, secret)
}

const (
	anthropicPrefix = "/anthropic"
	openAIPrefix    = "/openai"
)

// providerHost is what differs between the provider hosts on the wire.
type providerHost struct {
	requestIDHeader string
	errors          errorWriter
}

var (
	anthropicHost = providerHost{requestIDHeader: "Request-Id", errors: anthropicErrors}
	openAIHost    = providerHost{requestIDHeader: headerRequestID, errors: openAIErrors}
)

// anthropicModels answers GET /anthropic/v1/models, the cheap key check.
func (e *Emulator) anthropicModels(w http.ResponseWriter, r *http.Request, _ string) {
	if r.Header.Get("anthropic-version") == "" {
		anthropicErrors(w, r, http.StatusBadRequest, "anthropic-version: header is required")
		return
	}
	key := r.Header.Get("x-api-key")
	if key == "" {
		anthropicErrors(w, r, http.StatusUnauthorized, "x-api-key header is required")
		return
	}
	if !e.keyWorks(anthropic, key) {
		anthropicErrors(w, r, http.StatusUnauthorized, "invalid x-api-key")
		return
	}
	const id = "claude-sonnet-4-5"
	writeJSON(w, http.StatusOK, map[string]any{
		"data": []map[string]any{{
			"type":         "model",
			"id":           id,
			"display_name": "Claude Sonnet 4.5",
			"created_at":   "2025-09-29T00:00:00Z",
		}},
		"has_more": false,
		"first_id": id,
		"last_id":  id,
	})
}

// openAIModels answers GET /openai/v1/models, the cheap key check.
func (e *Emulator) openAIModels(w http.ResponseWriter, r *http.Request, _ string) {
	key, ok := bearerToken(r)
	if !ok {
		openAIErrors(w, r, http.StatusUnauthorized, msgOpenAINoKey)
		return
	}
	if !e.keyWorks(openAI, key) {
		openAIInvalidKey(key)(w)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list",
		"data": []map[string]any{{
			"id":       "gpt-4o",
			"object":   "model",
			"created":  1715367049,
			"owned_by": "openai",
		}},
	})
}

// maskKey keeps the first 8 and last 4 characters, as OpenAI's error text
// does; short keys therefore leak almost whole, which is the point.
func maskKey(key string) string {
	return key[:min(8, len(key))] + "*****" + key[max(len(key)-4, 0):]
}

// anthropicErrors writes {"type":"error","error":{"type","message"}} with
// the error type Anthropic documents for the status.
func anthropicErrors(w http.ResponseWriter, _ *http.Request, status int, message string) {
	typ := "api_error"
	switch status {
	case http.StatusBadRequest, http.StatusMethodNotAllowed:
		typ = "invalid_request_error"
	case http.StatusUnauthorized:
		typ = "authentication_error"
	case http.StatusForbidden:
		typ = "permission_error"
	case http.StatusNotFound:
		typ = "not_found_error"
	case http.StatusRequestEntityTooLarge:
		typ = "request_too_large"
	case http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case 529:
		typ = "overloaded_error"
	}
	type detail struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	writeJSON(w, status, struct {
		Type  string `json:"type"`
		Error detail `json:"error"`
	}{"error", detail{typ, message}})
}

// openAIErrorDetail is the inner object of OpenAI's {"error": {...}} body;
// param and code are JSON null unless set.
type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func writeOpenAIError(w http.ResponseWriter, status int, d openAIErrorDetail) {
	writeJSON(w, status, struct {
		Error openAIErrorDetail `json:"error"`
	}{d})
}

func openAIErrors(w http.ResponseWriter, _ *http.Request, status int, message string) {
	typ := "invalid_request_error"
	switch {
	case status == http.StatusTooManyRequests:
		typ = "requests"
	case status >= 500:
		typ = "server_error"
	}
	writeOpenAIError(w, status, openAIErrorDetail{Message: message, Type: typ})
}

func ptr[T any](v T) *T { return &v }
