package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/time/rate"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Admin is what zero-touch rotation needs from the providers' Admin
// APIs: OpenAI service accounts (the backend's mint.go) and Anthropic key status
// (retire.go). Admin keys never leave this seam: errors carry statuses and
// ids, never a key, nor provider text (which can echo one).
type Admin interface {
	// CheckAdminKey makes one cheap admin read with the provider's admin
	// key: a rejected key is a platform.Refused error.
	CheckAdminKey(ctx context.Context, provider string) error
	// GetProject reports ErrNotFound for an unknown project and
	// ErrProjectArchived for an archived one.
	GetProject(ctx context.Context, projectID string) error
	// CreateServiceAccount mints an account and its key. It is never
	// re-sent: a lost answer leaves an account to be found by name.
	CreateServiceAccount(ctx context.Context, projectID, name string) (MintedAccount, error)
	ListServiceAccounts(ctx context.Context, projectID string) ([]ServiceAccount, error)
	// DeleteServiceAccount retires the account's key; ErrNotFound
	// when it is gone already.
	DeleteServiceAccount(ctx context.Context, projectID, id string) error
	// ListAnthropicKeys pages through the organization's keys.
	ListAnthropicKeys(ctx context.Context) ([]AnthropicKey, error)
	SetAnthropicKeyStatus(ctx context.Context, id, status string) error
}

// MintedAccount is a new service account and its key, shown this once.
type MintedAccount struct {
	ID     string
	APIKey string
}

type ServiceAccount struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type AnthropicKey struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	PartialKeyHint string `json:"partial_key_hint"`
}

var (
	// ErrNotFound: the provider answered 404 for the object.
	ErrNotFound = errors.New("not found at the provider")
	// ErrAdminKeyMissing: the config has no admin key for the provider.
	ErrAdminKeyMissing = errors.New("no admin key for this provider in config")
	// ErrProjectArchived: the OpenAI project is archived. It still answers
	// 200, with status "archived", but OpenAI refuses to create or list its
	// service accounts (400).
	ErrProjectArchived = errors.New("the OpenAI project is archived")
)

// Provider Admin API calls are not platform calls: they use none of the
// platform's rate budget. Neither provider publishes admin rate limits, so
// the mount paces them by its own budget per provider: one call a second on
// average, bursts of adminBurst, waited for within request_timeout.
const (
	adminRate  = rate.Limit(1)
	adminBurst = 10
	// AdminPageSize is the page size of admin listings.
	AdminPageSize = 100
	// maxAdminPages bounds a listing: 100,000 objects.
	maxAdminPages = 1000
)

// HTTPAdmin implements Admin: it calls the providers' Admin APIs over HTTP with the admin keys of
// one config, under the verifier's rules: no redirects, request_timeout per
// operation, the platform package's retry policy for transient answers.
type HTTPAdmin struct {
	client    *http.Client
	endpoints map[string]endpoint
	pace      Pace
	retryBase time.Duration // the first backoff of a retried call
}

// Pace is the mount's provider budget, one limiter per provider; it outlives
// the clients, which a config write replaces.
type Pace map[string]*rate.Limiter

// NewPace is a fresh provider budget.
func NewPace() Pace {
	pace := Pace{}
	for provider := range specs {
		pace[provider] = rate.NewLimiter(adminRate, adminBurst)
	}
	return pace
}

// NewAdmin builds the Admin API client of one configuration, paced by the
// mount's pace.
func NewAdmin(c Config, pace Pace) *HTTPAdmin {
	return &HTTPAdmin{client: newHTTPClient(c, "the provider's Admin API"), endpoints: c.endpoints(), pace: pace, retryBase: c.RetryBase}
}

// CloseIdleConnections: see the backend's clients.closeIdleConnections.
func (a *HTTPAdmin) CloseIdleConnections() { a.client.CloseIdleConnections() }

// adminCall is one Admin API operation.
type adminCall struct {
	provider string
	op       string // for messages: "create a service account"
	method   string
	path     string // with query
	body     any
	out      any
	// retry re-sends after a transient answer: every call but a create.
	retry bool
}

func (a *HTTPAdmin) CheckAdminKey(ctx context.Context, provider string) error {
	e, err := specOf(provider)
	if err != nil {
		return err
	}
	return a.do(ctx, adminCall{provider: provider, op: e.adminCheckOp, method: http.MethodGet, path: e.adminCheckPath, retry: true})
}

func (a *HTTPAdmin) GetProject(ctx context.Context, projectID string) error {
	var out struct {
		Status string `json:"status"`
	}
	err := a.do(ctx, adminCall{provider: platform.OpenAI, op: "read the project", method: http.MethodGet,
		path: "/v1/organization/projects/" + url.PathEscape(projectID), out: &out, retry: true})
	if err == nil && out.Status == "archived" {
		return ErrProjectArchived
	}
	return err
}

func (a *HTTPAdmin) CreateServiceAccount(ctx context.Context, projectID, name string) (MintedAccount, error) {
	var out struct {
		ID     string `json:"id"`
		APIKey struct {
			Value string `json:"value"`
		} `json:"api_key"`
	}
	err := a.do(ctx, adminCall{provider: platform.OpenAI, op: "create a service account", method: http.MethodPost,
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts",
		body: map[string]string{"name": name}, out: &out})
	if err != nil {
		return MintedAccount{}, err
	}
	if out.ID == "" || out.APIKey.Value == "" {
		return MintedAccount{ID: out.ID}, errors.New("OpenAI created a service account but its answer lacks the account id or its key")
	}
	return MintedAccount{ID: out.ID, APIKey: out.APIKey.Value}, nil
}

func (a *HTTPAdmin) ListServiceAccounts(ctx context.Context, projectID string) ([]ServiceAccount, error) {
	return listAdminPages[ServiceAccount](ctx, a, adminCall{provider: platform.OpenAI, op: "list service accounts",
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts"}, "after", "OpenAI's service account list")
}

func (a *HTTPAdmin) DeleteServiceAccount(ctx context.Context, projectID, id string) error {
	return a.do(ctx, adminCall{provider: platform.OpenAI, op: "delete a service account", method: http.MethodDelete,
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts/" + url.PathEscape(id), retry: true})
}

func (a *HTTPAdmin) ListAnthropicKeys(ctx context.Context) ([]AnthropicKey, error) {
	return listAdminPages[AnthropicKey](ctx, a, adminCall{provider: platform.Anthropic, op: "list API keys",
		path: "/v1/organizations/api_keys"}, "after_id", "Anthropic's API key list")
}

// listAdminPages follows a provider's cursor paging (both answer
// {data, has_more, last_id}; the cursor parameter's name differs) to the
// end, at most maxAdminPages pages. call names the listing: provider, op
// and path without a query.
func listAdminPages[T any](ctx context.Context, a *HTTPAdmin, call adminCall, cursor, what string) ([]T, error) {
	var all []T
	after := ""
	base := call.path
	for range maxAdminPages {
		q := url.Values{"limit": {fmt.Sprint(AdminPageSize)}}
		if after != "" {
			q.Set(cursor, after)
		}
		var page struct {
			Data    []T    `json:"data"`
			HasMore bool   `json:"has_more"`
			LastID  string `json:"last_id"`
		}
		call.method, call.path, call.out, call.retry = http.MethodGet, base+"?"+q.Encode(), &page, true
		if err := a.do(ctx, call); err != nil {
			return nil, err
		}
		all = append(all, page.Data...)
		if !page.HasMore || page.LastID == "" {
			return all, nil
		}
		after = page.LastID
	}
	return nil, fmt.Errorf("%s did not end after %d pages", what, maxAdminPages)
}

// SetAnthropicKeyStatus sends the whole new state, so sending it twice is
// the same as once: it is retried like an update.
func (a *HTTPAdmin) SetAnthropicKeyStatus(ctx context.Context, id, status string) error {
	return a.do(ctx, adminCall{provider: platform.Anthropic, op: "update an API key's status", method: http.MethodPost,
		path: "/v1/organizations/api_keys/" + url.PathEscape(id), body: map[string]string{"status": status}, retry: true})
}

// adminError is a failed Admin API call: the status and what it means,
// never the provider's text (which can echo a fragment of the key).
type adminError struct {
	provider, op string
	status       int
	message      string
	// refused: the request was never sent, or the provider refused it
	// (a 4xx): nothing changed.
	refused bool
}

func (e *adminError) Error() string {
	if e.status != 0 {
		return fmt.Sprintf("the %s Admin API could not %s: HTTP %d%s", e.provider, e.op, e.status, e.message)
	}
	return fmt.Sprintf("the %s Admin API could not %s: %s", e.provider, e.op, e.message)
}

// IsRefusal reports a call that certainly changed nothing at the provider:
// it was refused (4xx) or never sent.
func IsRefusal(err error) bool {
	var ae *adminError
	return errors.Is(err, platform.ErrRefused) || errors.Is(err, ErrNotFound) || errors.Is(err, ErrAdminKeyMissing) ||
		(errors.As(err, &ae) && ae.refused)
}

// adminKeyRejected: the provider refused the admin key itself. Retrying
// cannot help until someone writes another one to config.
func adminKeyRejected(provider string, status int) error {
	field := provider + "_admin_key"
	return platform.Refusedf("the %s Admin API rejected %s (HTTP %d): write an admin key with the scopes docs/rotation.md lists to config", provider, field, status)
}

// do runs one call, retried after a transient answer when c.retry, all of it
// within request_timeout.
func (a *HTTPAdmin) do(ctx context.Context, c adminCall) error {
	ctx, cancel := context.WithTimeout(ctx, a.client.Timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		resp, err := a.once(ctx, c)
		if err != nil {
			return err
		}
		switch status := resp.StatusCode; {
		case status >= 200 && status < 300:
			return nil
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return adminKeyRejected(c.provider, status)
		case status == http.StatusNotFound:
			return fmt.Errorf("the %s Admin API could not %s: %w", c.provider, c.op, ErrNotFound)
		case c.retry && platform.TransientStatus(status) && attempt+1 < platform.MaxAttempts && platform.SleepWithin(ctx, platform.RetryAfter(a.retryBase, attempt, resp, time.Now())):
			continue
		case status >= 400 && status < 500 && status != http.StatusTooManyRequests:
			return &adminError{provider: c.provider, op: c.op, status: status, message: " (the request was refused)", refused: true}
		default:
			return &adminError{provider: c.provider, op: c.op, status: status, message: "; try again later"}
		}
	}
}

// once sends one request and decodes a successful answer into c.out. Error
// bodies are drained unread.
func (a *HTTPAdmin) once(ctx context.Context, c adminCall) (*http.Response, error) {
	e, ok := a.endpoints[c.provider]
	if !ok {
		return nil, platform.UnknownProvider(c.provider)
	}
	key := e.adminKey
	if key == "" {
		return nil, fmt.Errorf("%s_admin_key is not set: %w", c.provider, ErrAdminKeyMissing)
	}
	if p := a.pace[c.provider]; p != nil {
		if err := p.Wait(ctx); err != nil {
			return nil, &adminError{provider: c.provider, op: c.op, message: "the mount's provider budget (one Admin API call a second) has no room within request_timeout", refused: true}
		}
	}
	var body io.Reader
	if c.body != nil {
		raw, err := json.Marshal(c.body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, e.baseURL+c.path, body)
	if err != nil {
		return nil, &adminError{provider: c.provider, op: c.op, message: "building the request failed", refused: true}
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	e.auth(req.Header, key)

	resp, err := a.client.Do(req)
	var redirect *platform.RedirectError
	switch {
	case errors.As(err, &redirect):
		return nil, &adminError{provider: c.provider, op: c.op, message: redirect.Error()}
	case platform.IsTimeout(err):
		return nil, &adminError{provider: c.provider, op: c.op, message: "no answer within request_timeout; the change may or may not have been applied"}
	case err != nil:
		return nil, &adminError{provider: c.provider, op: c.op, message: "unreachable: " + platform.Redact(err.Error(), a.adminKeys()...)}
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 && c.out != nil {
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(c.out); err != nil {
			return nil, &adminError{provider: c.provider, op: c.op, message: "its answer could not be read"}
		}
	}
	return resp, nil
}

// adminKeys are the secrets to redact from transport errors.
func (a *HTTPAdmin) adminKeys() []string {
	keys := make([]string, 0, len(a.endpoints))
	for _, e := range a.endpoints {
		keys = append(keys, e.adminKey)
	}
	return keys
}
