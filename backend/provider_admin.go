package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// providerAdmin is what zero-touch rotation needs from the providers' Admin
// APIs: OpenAI service accounts (mint.go) and Anthropic key status
// (retire.go). Admin keys never leave this seam: errors carry statuses and
// ids, never a key, nor provider text (which can echo one).
type providerAdmin interface {
	// CheckAdminKey makes one cheap admin read with the provider's admin
	// key: a rejected key is a callerError.
	CheckAdminKey(ctx context.Context, provider string) error
	// GetProject reports errAdminNotFound for an unknown project and
	// errProjectArchived for an archived one.
	GetProject(ctx context.Context, projectID string) error
	// CreateServiceAccount mints an account and its key. It is never
	// re-sent: a lost answer leaves an account to be found by name.
	CreateServiceAccount(ctx context.Context, projectID, name string) (mintedAccount, error)
	ListServiceAccounts(ctx context.Context, projectID string) ([]serviceAccountInfo, error)
	// DeleteServiceAccount retires the account's key; errAdminNotFound
	// when it is gone already.
	DeleteServiceAccount(ctx context.Context, projectID, id string) error
	// ListAnthropicKeys pages through the organization's keys.
	ListAnthropicKeys(ctx context.Context) ([]anthropicKeyInfo, error)
	SetAnthropicKeyStatus(ctx context.Context, id, status string) error
}

// mintedAccount is a new service account and its key, shown this once.
type mintedAccount struct {
	ID     string
	APIKey string
}

type serviceAccountInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type anthropicKeyInfo struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	PartialKeyHint string `json:"partial_key_hint"`
}

var (
	// errAdminNotFound: the provider answered 404 for the object.
	errAdminNotFound = errors.New("not found at the provider")
	// errAdminKeyMissing: the config has no admin key for the provider.
	errAdminKeyMissing = errors.New("no admin key for this provider in config")
	// errProjectArchived: the OpenAI project is archived. It still answers
	// 200, with status "archived", but OpenAI refuses to create or list its
	// service accounts (400).
	errProjectArchived = errors.New("the OpenAI project is archived")
)

// Provider Admin API calls are not platform calls: they use none of the
// platform's rate budget. Neither provider publishes admin rate limits, so
// the mount paces them by its own budget per provider: one call a second on
// average, bursts of adminBurst, waited for within request_timeout.
const (
	adminRate  = rate.Limit(1)
	adminBurst = 10
	// adminPageSize is the page size of admin listings.
	adminPageSize = 100
	// maxAdminPages bounds a listing: 100,000 objects.
	maxAdminPages = 1000
)

// httpAdmin calls the providers' Admin APIs over HTTP with the admin keys of
// one config, under the verifier's rules: no redirects, request_timeout per
// operation, retry.go's policy for transient answers.
type httpAdmin struct {
	client       *http.Client
	anthropicURL string
	openaiURL    string
	openaiKey    string
	anthropicKey string
	pace         map[string]*rate.Limiter
	retryBase    time.Duration // the first backoff of a retried call
}

func newHTTPAdmin(cfg *gradientConfig, pace map[string]*rate.Limiter, retryBase time.Duration) *httpAdmin {
	return &httpAdmin{
		client: &http.Client{
			Timeout:       cfg.RequestTimeout,
			Transport:     upstreamTransport(),
			CheckRedirect: refuseRedirects("the provider's Admin API"),
		},
		anthropicURL: strings.TrimRight(cfg.AnthropicURL, "/"),
		openaiURL:    strings.TrimRight(cfg.OpenAIURL, "/"),
		openaiKey:    cfg.OpenAIAdminKey,
		anthropicKey: cfg.AnthropicAdminKey,
		pace:         pace,
		retryBase:    retryBase,
	}
}

// newAdminPace is the mount's provider budget; it outlives the clients.
func newAdminPace() map[string]*rate.Limiter {
	return map[string]*rate.Limiter{
		providerOpenAI:    rate.NewLimiter(adminRate, adminBurst),
		providerAnthropic: rate.NewLimiter(adminRate, adminBurst),
	}
}

// CloseIdleConnections: see clients.closeIdleConnections.
func (a *httpAdmin) CloseIdleConnections() { a.client.CloseIdleConnections() }

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

func (a *httpAdmin) CheckAdminKey(ctx context.Context, provider string) error {
	switch provider {
	case providerOpenAI:
		return a.do(ctx, adminCall{provider: provider, op: "list projects", method: http.MethodGet, path: "/v1/organization/projects?limit=1", retry: true})
	case providerAnthropic:
		return a.do(ctx, adminCall{provider: provider, op: "list API keys", method: http.MethodGet, path: "/v1/organizations/api_keys?limit=1", retry: true})
	}
	return unknownProvider(provider)
}

func (a *httpAdmin) GetProject(ctx context.Context, projectID string) error {
	var out struct {
		Status string `json:"status"`
	}
	err := a.do(ctx, adminCall{provider: providerOpenAI, op: "read the project", method: http.MethodGet,
		path: "/v1/organization/projects/" + url.PathEscape(projectID), out: &out, retry: true})
	if err == nil && out.Status == "archived" {
		return errProjectArchived
	}
	return err
}

func (a *httpAdmin) CreateServiceAccount(ctx context.Context, projectID, name string) (mintedAccount, error) {
	var out struct {
		ID     string `json:"id"`
		APIKey struct {
			Value string `json:"value"`
		} `json:"api_key"`
	}
	err := a.do(ctx, adminCall{provider: providerOpenAI, op: "create a service account", method: http.MethodPost,
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts",
		body: map[string]string{"name": name}, out: &out})
	if err != nil {
		return mintedAccount{}, err
	}
	if out.ID == "" || out.APIKey.Value == "" {
		return mintedAccount{ID: out.ID}, errors.New("OpenAI created a service account but its answer lacks the account id or its key")
	}
	return mintedAccount{ID: out.ID, APIKey: out.APIKey.Value}, nil
}

func (a *httpAdmin) ListServiceAccounts(ctx context.Context, projectID string) ([]serviceAccountInfo, error) {
	return listAdminPages[serviceAccountInfo](ctx, a, adminCall{provider: providerOpenAI, op: "list service accounts",
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts"}, "after", "OpenAI's service account list")
}

func (a *httpAdmin) DeleteServiceAccount(ctx context.Context, projectID, id string) error {
	return a.do(ctx, adminCall{provider: providerOpenAI, op: "delete a service account", method: http.MethodDelete,
		path: "/v1/organization/projects/" + url.PathEscape(projectID) + "/service_accounts/" + url.PathEscape(id), retry: true})
}

func (a *httpAdmin) ListAnthropicKeys(ctx context.Context) ([]anthropicKeyInfo, error) {
	return listAdminPages[anthropicKeyInfo](ctx, a, adminCall{provider: providerAnthropic, op: "list API keys",
		path: "/v1/organizations/api_keys"}, "after_id", "Anthropic's API key list")
}

// listAdminPages follows a provider's cursor paging (both answer
// {data, has_more, last_id}; the cursor parameter's name differs) to the
// end, at most maxAdminPages pages. call names the listing: provider, op
// and path without a query.
func listAdminPages[T any](ctx context.Context, a *httpAdmin, call adminCall, cursor, what string) ([]T, error) {
	var all []T
	after := ""
	base := call.path
	for range maxAdminPages {
		q := url.Values{"limit": {fmt.Sprint(adminPageSize)}}
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
func (a *httpAdmin) SetAnthropicKeyStatus(ctx context.Context, id, status string) error {
	return a.do(ctx, adminCall{provider: providerAnthropic, op: "update an API key's status", method: http.MethodPost,
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

// adminRefused reports a call that certainly changed nothing at the
// provider: it was refused (4xx) or never sent.
func adminRefused(err error) bool {
	var ae *adminError
	return isCallerError(err) || errors.Is(err, errAdminNotFound) || errors.Is(err, errAdminKeyMissing) ||
		(errors.As(err, &ae) && ae.refused)
}

// adminKeyRejected: the provider refused the admin key itself. Retrying
// cannot help until someone writes another one to config.
func adminKeyRejected(provider string, status int) error {
	field := provider + "_admin_key"
	return callerErrorf("the %s Admin API rejected %s (HTTP %d): write an admin key with the scopes docs/rotation.md lists to config", provider, field, status)
}

// do runs one call, retried after a transient answer when c.retry, all of it
// within request_timeout.
func (a *httpAdmin) do(ctx context.Context, c adminCall) error {
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
			return fmt.Errorf("the %s Admin API could not %s: %w", c.provider, c.op, errAdminNotFound)
		case c.retry && transientStatus(status) && attempt+1 < maxAttempts && sleepWithin(ctx, retryAfter(a.retryBase, attempt, resp, time.Now())):
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
func (a *httpAdmin) once(ctx context.Context, c adminCall) (*http.Response, error) {
	base, key := a.openaiURL, a.openaiKey
	if c.provider == providerAnthropic {
		base, key = a.anthropicURL, a.anthropicKey
	}
	if key == "" {
		return nil, fmt.Errorf("%s_admin_key is not set: %w", c.provider, errAdminKeyMissing)
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
	req, err := http.NewRequestWithContext(ctx, c.method, base+c.path, body)
	if err != nil {
		return nil, &adminError{provider: c.provider, op: c.op, message: "building the request failed", refused: true}
	}
	if c.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.provider == providerAnthropic {
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", anthropicVersion)
	} else {
		req.Header.Set("Authorization", "Bearer "+key)
	}

	resp, err := a.client.Do(req)
	var redirect *redirectError
	switch {
	case errors.As(err, &redirect):
		return nil, &adminError{provider: c.provider, op: c.op, message: redirect.Error()}
	case isTimeout(err):
		return nil, &adminError{provider: c.provider, op: c.op, message: "no answer within request_timeout; the change may or may not have been applied"}
	case err != nil:
		return nil, &adminError{provider: c.provider, op: c.op, message: "unreachable: " + redact(err.Error(), a.openaiKey, a.anthropicKey)}
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

func isCallerError(err error) bool {
	var ce *callerError
	return errors.As(err, &ce)
}
