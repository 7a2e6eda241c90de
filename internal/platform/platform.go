// Package platform is the plugin's client of DigitalOcean's Gradient API:
// godo's AgentPlatform service behind the Client interface (platform.go) and
// the AgentKeys interface (agent_keys.go: agents' API keys), with the retry
// policy of every upstream call (retry.go), the mount's rate
// budget (rate_budget.go), and the classification of answers into typed errors
// with redacted text (errors.go). It knows nothing of Vault: the backend
// maps its errors to Vault's answers in one place.
package platform

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/digitalocean/godo"
)

// Provider names, as users write them and as the platform's URL families
// spell them.
const (
	Anthropic = "anthropic"
	OpenAI    = "openai"
)

// Providers lists the providers the platform has, in a stable order.
func Providers() []string { return []string{Anthropic, OpenAI} }

// Key is what the plugin needs to know about one of the platform's
// provider keys. The platform never returns the secret itself.
type Key struct {
	UUID      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Agent is the part of a Gradient agent the plugin reports and checks.
type Agent struct {
	UUID        string
	Name        string
	Instruction string
	ModelUUID   string
	Region      string
	// DeploymentURL is where applications call the agent, with one of its
	// API keys (agent_keys.go); empty while the agent is not deployed.
	DeploymentURL string
}

// KeyChange is a partial update of a platform key: empty fields are left as
// they are, which is how the platform's PUT treats them too.
type KeyChange struct {
	Name   string
	Secret string
}

// Client is the narrow view of the Gradient API that the handlers use. It
// exists so logic can be tested with a fake and so handlers never build HTTP
// requests; the real implementation is GodoClient. Its errors are *Error
// (classified answers), possibly marked PossiblyApplied, or plain errors for
// what was never sent (a malformed uuid, an unknown provider).
type Client interface {
	CreateKey(ctx context.Context, provider, name, secret string) (Key, error)
	GetKey(ctx context.Context, provider, uuid string) (Key, error)
	UpdateKey(ctx context.Context, provider, uuid string, change KeyChange) (Key, error)
	DeleteKey(ctx context.Context, provider, uuid string) error
	// ListKeys returns every key of the provider, following all pages.
	ListKeys(ctx context.Context, provider string) ([]Key, error)
	// CheckToken makes one cheap authenticated call.
	CheckToken(ctx context.Context) error
	// ListAgentsByKey returns every agent using the key, following all pages.
	ListAgentsByKey(ctx context.Context, provider, uuid string) ([]Agent, error)
	// SetAgentKey points the agent at another key of the same provider and
	// returns the agent as the platform reports it afterwards.
	SetAgentKey(ctx context.Context, provider, agentUUID, keyUUID string) (Agent, error)
}

// MaxPageSize is the platform's largest per_page: fewer round trips, fewer
// requests against the hourly rate budget.
const MaxPageSize = 200

// GodoClient implements Client with godo's AgentPlatform service.
type GodoClient struct {
	api godo.AgentPlatformService
	// rest is the same godo client, for a request its service method builds
	// wrong: ListAgentAPIKeys drops its paging options (agent_keys.go).
	rest *godo.Client
	// token is kept to redact it from the platform's error text, whatever
	// its shape: a platform message that echoes it must not reach a log or
	// a response.
	token string
	// httpClient is kept to close its idle connections when the client is
	// replaced.
	httpClient *http.Client
	// timeout bounds each operation (request_timeout).
	timeout time.Duration
	// retryBase is the first backoff of a retried call.
	retryBase time.Duration
}

var _ Client = (*GodoClient)(nil)

// New builds a client without godo's automatic retries (those
// retry POST too, and a retried create can leave a duplicate key behind);
// retry.go decides per operation instead. Every request waits for the
// mount's rate budget.
func New(baseURL, token, userAgent string, timeout time.Duration, budget *Budget, retryBase time.Duration) (*GodoClient, error) {
	httpClient := &http.Client{
		Timeout: timeout,
		Transport: &budgetTransport{budget: budget, base: &bearerTransport{
			token: token, base: UpstreamTransport(),
		}},
		CheckRedirect: RefuseRedirects("the platform"),
	}
	client, err := godo.New(httpClient, godo.SetBaseURL(baseURL), godo.SetUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("building the platform client: %w", err)
	}
	return &GodoClient{api: client.AgentPlatform, rest: client, token: token, httpClient: httpClient, timeout: timeout, retryBase: retryBase}, nil
}

// operation bounds one platform operation, retries and waits included, by
// request_timeout.
func (p *GodoClient) operation(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.timeout)
}

// CloseIdleConnections closes the client's idle keep-alive connections; see
// the backend's clients.closeIdleConnections.
func (p *GodoClient) CloseIdleConnections() { p.httpClient.CloseIdleConnections() }

// classify is the package's classify with the configured token among the
// secrets to redact.
func (p *GodoClient) classify(op platformOp, resp *godo.Response, err error, secrets ...string) error {
	return classify(string(op), resp, err, append([]string{p.token}, secrets...)...)
}

// providerAPI is one provider's row in the table of godo's AgentPlatform
// methods. The Anthropic and OpenAI families differ only in which method is
// called and which godo type comes back, so each GodoClient method is
// written once against this table instead of once per provider.
type providerAPI struct {
	create     func(ctx context.Context, api godo.AgentPlatformService, name, secret string) (Key, *godo.Response, error)
	get        func(ctx context.Context, api godo.AgentPlatformService, uuid string) (Key, *godo.Response, error)
	update     func(ctx context.Context, api godo.AgentPlatformService, uuid string, change KeyChange) (Key, *godo.Response, error)
	delete     func(ctx context.Context, api godo.AgentPlatformService, uuid string) (*godo.Response, error)
	list       func(ctx context.Context, api godo.AgentPlatformService, opt *godo.ListOptions) ([]Key, *godo.Response, error)
	listAgents func(ctx context.Context, api godo.AgentPlatformService, uuid string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error)
	// setAgentKey sets the agent's key field of this provider on an update.
	setAgentKey func(update *godo.AgentUpdateRequest, keyUUID string)
}

var providerAPIs = map[string]*providerAPI{
	Anthropic: {
		create: func(ctx context.Context, api godo.AgentPlatformService, name, secret string) (Key, *godo.Response, error) {
			k, resp, err := api.CreateAnthropicAPIKey(ctx, &godo.AnthropicAPIKeyCreateRequest{Name: name, ApiKey: secret})
			return fromAnthropic(k), resp, err
		},
		get: func(ctx context.Context, api godo.AgentPlatformService, uuid string) (Key, *godo.Response, error) {
			k, resp, err := api.GetAnthropicAPIKey(ctx, uuid)
			return fromAnthropic(k), resp, err
		},
		update: func(ctx context.Context, api godo.AgentPlatformService, uuid string, change KeyChange) (Key, *godo.Response, error) {
			k, resp, err := api.UpdateAnthropicAPIKey(ctx, uuid, &godo.AnthropicAPIKeyUpdateRequest{
				ApiKeyUuid: uuid, Name: change.Name, ApiKey: change.Secret,
			})
			return fromAnthropic(k), resp, err
		},
		delete: func(ctx context.Context, api godo.AgentPlatformService, uuid string) (*godo.Response, error) {
			_, resp, err := api.DeleteAnthropicAPIKey(ctx, uuid)
			return resp, err
		},
		list: func(ctx context.Context, api godo.AgentPlatformService, opt *godo.ListOptions) ([]Key, *godo.Response, error) {
			page, resp, err := api.ListAnthropicAPIKeys(ctx, opt)
			return mapKeys(page, fromAnthropic), resp, err
		},
		listAgents: func(ctx context.Context, api godo.AgentPlatformService, uuid string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error) {
			return api.ListAgentsByAnthropicAPIKey(ctx, uuid, opt)
		},
		setAgentKey: func(update *godo.AgentUpdateRequest, keyUUID string) { update.AnthropicKeyUuid = keyUUID },
	},
	OpenAI: {
		create: func(ctx context.Context, api godo.AgentPlatformService, name, secret string) (Key, *godo.Response, error) {
			k, resp, err := api.CreateOpenAIAPIKey(ctx, &godo.OpenAIAPIKeyCreateRequest{Name: name, ApiKey: secret})
			return fromOpenAI(k), resp, err
		},
		get: func(ctx context.Context, api godo.AgentPlatformService, uuid string) (Key, *godo.Response, error) {
			k, resp, err := api.GetOpenAIAPIKey(ctx, uuid)
			return fromOpenAI(k), resp, err
		},
		update: func(ctx context.Context, api godo.AgentPlatformService, uuid string, change KeyChange) (Key, *godo.Response, error) {
			k, resp, err := api.UpdateOpenAIAPIKey(ctx, uuid, &godo.OpenAIAPIKeyUpdateRequest{
				ApiKeyUuid: uuid, Name: change.Name, ApiKey: change.Secret,
			})
			return fromOpenAI(k), resp, err
		},
		delete: func(ctx context.Context, api godo.AgentPlatformService, uuid string) (*godo.Response, error) {
			_, resp, err := api.DeleteOpenAIAPIKey(ctx, uuid)
			return resp, err
		},
		list: func(ctx context.Context, api godo.AgentPlatformService, opt *godo.ListOptions) ([]Key, *godo.Response, error) {
			page, resp, err := api.ListOpenAIAPIKeys(ctx, opt)
			return mapKeys(page, fromOpenAI), resp, err
		},
		listAgents: func(ctx context.Context, api godo.AgentPlatformService, uuid string, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error) {
			return api.ListAgentsByOpenAIAPIKey(ctx, uuid, opt)
		},
		setAgentKey: func(update *godo.AgentUpdateRequest, keyUUID string) { update.OpenAiKeyUuid = keyUUID },
	},
}

// canonicalUUID is the text form of a UUID, any version, either case.
var canonicalUUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether s is a uuid in canonical form. godo pastes
// uuids into request paths as they are ("/v2/gen-ai/<provider>/keys/" + uuid)
// and "../" segments resolve, so text that is anything else could address
// another object on the platform, or add a query.
func IsUUID(s string) bool { return canonicalUUID.MatchString(s) }

// ErrMalformedUUID: a uuid bound for a request path is not canonical, and
// nothing was sent.
var ErrMalformedUUID = errors.New("is not a canonical uuid (8-4-4-4-12 hexadecimal digits); nothing was sent to the platform")

// requireUUID refuses a uuid that IsUUID does not accept, before any
// request is built. The value is not echoed: it may be a pasted API key.
func requireUUID(op platformOp, what, uuid string) error {
	if IsUUID(uuid) {
		return nil
	}
	return fmt.Errorf("platform %s: the %s uuid %w", op, what, ErrMalformedUUID)
}

// apiFor looks the provider up in the table once per call.
func apiFor(provider string) (*providerAPI, error) {
	if api, ok := providerAPIs[provider]; ok {
		return api, nil
	}
	return nil, UnknownProvider(provider)
}

func (p *GodoClient) CreateKey(ctx context.Context, provider, name, secret string) (Key, error) {
	api, err := apiFor(provider)
	if err != nil {
		return Key{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var k Key
	resp, err := retryPlatform(ctx, p.retryBase, opCreateKey, func(ctx context.Context) (resp *godo.Response, err error) {
		k, resp, err = api.create(ctx, p.api, name, secret)
		return resp, err
	})
	if err != nil {
		return Key{}, p.classify(opCreateKey, resp, err, secret)
	}
	return k, nil
}

func (p *GodoClient) GetKey(ctx context.Context, provider, uuid string) (Key, error) {
	api, err := apiFor(provider)
	if err != nil {
		return Key{}, err
	}
	if err := requireUUID(opGetKey, "key", uuid); err != nil {
		return Key{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var k Key
	resp, err := retryPlatform(ctx, p.retryBase, opGetKey, func(ctx context.Context) (resp *godo.Response, err error) {
		k, resp, err = api.get(ctx, p.api, uuid)
		return resp, err
	})
	if err != nil {
		return Key{}, p.classify(opGetKey, resp, err)
	}
	return k, nil
}

func (p *GodoClient) UpdateKey(ctx context.Context, provider, uuid string, change KeyChange) (Key, error) {
	api, err := apiFor(provider)
	if err != nil {
		return Key{}, err
	}
	if err := requireUUID(opUpdateKey, "key", uuid); err != nil {
		return Key{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var k Key
	resp, err := retryPlatform(ctx, p.retryBase, opUpdateKey, func(ctx context.Context) (resp *godo.Response, err error) {
		k, resp, err = api.update(ctx, p.api, uuid, change)
		return resp, err
	})
	if err != nil {
		return Key{}, p.classify(opUpdateKey, resp, err, change.Secret)
	}
	return k, nil
}

func (p *GodoClient) DeleteKey(ctx context.Context, provider, uuid string) error {
	api, err := apiFor(provider)
	if err != nil {
		return err
	}
	if err := requireUUID(opDeleteKey, "key", uuid); err != nil {
		return err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	resp, err := retryPlatform(ctx, p.retryBase, opDeleteKey, func(ctx context.Context) (*godo.Response, error) {
		return api.delete(ctx, p.api, uuid)
	})
	if err != nil {
		return p.classify(opDeleteKey, resp, err)
	}
	return nil
}

func (p *GodoClient) ListKeys(ctx context.Context, provider string) ([]Key, error) {
	api, err := apiFor(provider)
	if err != nil {
		return nil, err
	}
	keys, err := listAll(ctx, p, func(ctx context.Context, opt *godo.ListOptions) ([]Key, *godo.Response, error) {
		return api.list(ctx, p.api, opt)
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s keys: %w", provider, err)
	}
	return keys, nil
}

func (p *GodoClient) CheckToken(ctx context.Context) error {
	ctx, cancel := p.operation(ctx)
	defer cancel()
	resp, err := retryPlatform(ctx, p.retryBase, opCheckToken, func(ctx context.Context) (*godo.Response, error) {
		_, resp, err := p.api.ListAnthropicAPIKeys(ctx, &godo.ListOptions{Page: 1, PerPage: 1})
		return resp, err
	})
	if err != nil {
		return p.classify(opCheckToken, resp, err)
	}
	return nil
}

func (p *GodoClient) ListAgentsByKey(ctx context.Context, provider, uuid string) ([]Agent, error) {
	api, err := apiFor(provider)
	if err != nil {
		return nil, err
	}
	if err := requireUUID(opListAgents, "key", uuid); err != nil {
		return nil, err
	}
	listed, err := listAll(ctx, p, func(ctx context.Context, opt *godo.ListOptions) ([]*godo.Agent, *godo.Response, error) {
		return api.listAgents(ctx, p.api, uuid, opt)
	})
	if err != nil {
		return nil, fmt.Errorf("listing the agents that use key %s: %w", uuid, err)
	}
	agents := make([]Agent, 0, len(listed))
	for _, a := range listed {
		agents = append(agents, fromAgent(a))
	}
	return agents, nil
}

func (p *GodoClient) SetAgentKey(ctx context.Context, provider, agentUUID, keyUUID string) (Agent, error) {
	api, err := apiFor(provider)
	if err != nil {
		return Agent{}, err
	}
	if err := requireUUID(opUpdateAgent, "agent", agentUUID); err != nil {
		return Agent{}, err
	}
	// The key uuid goes in the body, not the path, but a malformed one is
	// no more use to the platform than to us.
	if err := requireUUID(opUpdateAgent, "key", keyUUID); err != nil {
		return Agent{}, err
	}
	// Only the key field is sent (godo's omitempty drops the rest): whether
	// the platform keeps fields a PUT leaves out is unconfirmed, so callers
	// compare the returned agent with what they listed before.
	update := &godo.AgentUpdateRequest{Uuid: agentUUID}
	api.setAgentKey(update, keyUUID)
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var agent *godo.Agent
	resp, err := retryPlatform(ctx, p.retryBase, opUpdateAgent, func(ctx context.Context) (resp *godo.Response, err error) {
		agent, resp, err = p.api.UpdateAgent(ctx, agentUUID, update)
		return resp, err
	})
	if err != nil {
		return Agent{}, p.classify(opUpdateAgent, resp, err)
	}
	return fromAgent(agent), nil
}

// listAll calls list with pages 1, 2, ... until a page has no next link,
// or no links at all (the reference says a single page may have none), and
// returns every item. It pages by the page it asked for: godo's CurrentPage
// reads links.pages.prev, which the reference spells "previous", so it
// misreads every later page. A listing that ends with fewer items than
// meta.total is an error, not a shorter list: a key left out would look
// deleted, an agent left out would look gone. A meta.total that changes
// between pages means another client of the account created or deleted
// something meanwhile, which shifts the pages under the listing (an item
// read twice, one never read, whichever way the platform orders them): the
// listing starts again, up to maxListings times, rather than returning that
// list or failing over normal shared use. Each page is retried on its own,
// and the whole listing is one operation within request_timeout. Errors
// from list are classified here once.
func listAll[T any](ctx context.Context, p *GodoClient, list func(context.Context, *godo.ListOptions) ([]T, *godo.Response, error)) ([]T, error) {
	ctx, cancel := p.operation(ctx)
	defer cancel()
	for range maxListings - 1 {
		items, stable, err := listOnce(ctx, p, list)
		if err != nil || stable {
			return items, err
		}
	}
	items, stable, err := listOnce(ctx, p, list)
	if err == nil && !stable {
		err = fmt.Errorf("the platform's meta.total changed during each of %d listings (another client is creating or deleting keys): not using a list that may miss or repeat items; try again", maxListings)
	}
	return items, err
}

// maxListings bounds the listings listAll starts while the count changes.
const maxListings = 3

// listOnce is one pass of listAll; stable is false when meta.total changed
// between its pages, and the items are then not to be used.
func listOnce[T any](ctx context.Context, p *GodoClient, list func(context.Context, *godo.ListOptions) ([]T, *godo.Response, error)) (items []T, stable bool, err error) {
	total := -1
	for page := 1; ; page++ {
		opt := &godo.ListOptions{Page: page, PerPage: MaxPageSize}
		var got []T
		resp, err := retryPlatform(ctx, p.retryBase, opList, func(ctx context.Context) (resp *godo.Response, err error) {
			got, resp, err = list(ctx, opt)
			return resp, err
		})
		if err != nil {
			return nil, false, p.classify(opList, resp, err)
		}
		items = append(items, got...)
		if resp != nil && resp.Meta != nil {
			if total >= 0 && resp.Meta.Total != total {
				return nil, false, nil
			}
			total = resp.Meta.Total
		}
		if total >= 0 && len(items) > total {
			// Pages that do not move (a page number the platform does
			// not honour) would be followed until request_timeout.
			return nil, false, fmt.Errorf("the platform's listing reached %d items by page %d, more than its meta.total of %d: its pages are not what was asked for; not following them", len(items), page, total)
		}
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			break
		}
		if len(got) == 0 {
			return nil, false, fmt.Errorf("the platform's page %d was empty but linked a next page; not following it", page)
		}
	}
	if len(items) < total {
		return nil, false, fmt.Errorf("the platform's listing ended after %d items, but its meta.total said %d: not using a partial list; try again", len(items), total)
	}
	return items, true, nil
}

// RedirectError: an upstream answered a request that carries credentials
// with a redirect. It keeps only the status: the Location could hold
// anything, secrets included, and the *url.Error that http.Client wraps this
// in prints it, so callers unwrap this error rather than print that one.
type RedirectError struct {
	upstream string
	status   int
}

func (e *RedirectError) Error() string {
	return fmt.Sprintf("%s answered with a redirect (HTTP %d); refusing to follow it, because the request carries credentials", e.upstream, e.status)
}

// RefuseRedirects is the CheckRedirect of every client that sends a
// credential. Following a redirect would send it to wherever the Location
// points: bearerTransport sets the token again on every hop, which defeats
// Go's removal of Authorization on a redirect to another host, and Go
// forwards other headers such as x-api-key whatever the host.
func RefuseRedirects(upstream string) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, _ []*http.Request) error {
		status := 0
		if req.Response != nil {
			status = req.Response.StatusCode
		}
		return &RedirectError{upstream: upstream, status: status}
	}
}

// UpstreamTransport is the HTTP transport of every upstream client: Go's
// default, keeping more idle connections per host than its 2, so that
// concurrent requests to one API reuse connections instead of opening (and,
// against the real APIs, TLS-handshaking) new ones.
func UpstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}

// bearerTransport adds the platform token to every request. It is written
// here rather than taken from oauth2.Transport because that one logs a
// deprecation warning each time a request times out, and a static token
// needs none of its refresh machinery.
type bearerTransport struct {
	token string
	base  http.RoundTripper
}

func (t *bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath, which holds the connections.
func (t *bearerTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func fromAnthropic(k *godo.AnthropicApiKeyInfo) Key {
	if k == nil {
		return Key{}
	}
	return Key{UUID: k.Uuid, Name: k.Name, CreatedAt: timestamp(k.CreatedAt), UpdatedAt: timestamp(k.UpdatedAt)}
}

func fromOpenAI(k *godo.OpenAiApiKey) Key {
	if k == nil {
		return Key{}
	}
	return Key{UUID: k.Uuid, Name: k.Name, CreatedAt: timestamp(k.CreatedAt), UpdatedAt: timestamp(k.UpdatedAt)}
}

func mapKeys[K any](page []K, from func(K) Key) []Key {
	keys := make([]Key, 0, len(page))
	for _, k := range page {
		keys = append(keys, from(k))
	}
	return keys
}

func fromAgent(a *godo.Agent) Agent {
	if a == nil {
		return Agent{}
	}
	agent := Agent{UUID: a.Uuid, Name: a.Name, Instruction: a.Instruction, Region: a.Region}
	if a.Model != nil {
		agent.ModelUUID = a.Model.Uuid
	}
	if a.Deployment != nil {
		agent.DeploymentURL = a.Deployment.Url
	}
	return agent
}

func timestamp(t *godo.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time.UTC()
}

// UnknownProvider: provider is none of the table's, and nothing was sent.
func UnknownProvider(provider string) error {
	return errors.New("unknown provider " + provider)
}
