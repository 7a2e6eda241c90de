package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/digitalocean/godo"
)

// Provider names, as users write them and as the platform's URL families
// spell them.
const (
	providerAnthropic = "anthropic"
	providerOpenAI    = "openai"
)

// platformKey is what the plugin needs to know about one of the platform's
// provider keys. The platform never returns the secret itself.
type platformKey struct {
	UUID      string
	Name      string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// platformAgent is the part of a Gradient agent the plugin reports and checks.
type platformAgent struct {
	UUID        string
	Name        string
	Instruction string
	ModelUUID   string
	Region      string
}

// keyChange is a partial update of a platform key: empty fields are left as
// they are, which is how the platform's PUT treats them too.
type keyChange struct {
	Name   string
	Secret string
}

// platform is the narrow view of the Gradient API that the handlers use. It
// exists so logic can be tested with a fake and so handlers never build HTTP
// requests; the real implementation is godoPlatform.
type platform interface {
	CreateKey(ctx context.Context, provider, name, secret string) (platformKey, error)
	GetKey(ctx context.Context, provider, uuid string) (platformKey, error)
	UpdateKey(ctx context.Context, provider, uuid string, change keyChange) (platformKey, error)
	DeleteKey(ctx context.Context, provider, uuid string) error
	// ListKeys returns every key of the provider, following all pages.
	ListKeys(ctx context.Context, provider string) ([]platformKey, error)
	// CheckToken makes one cheap authenticated call.
	CheckToken(ctx context.Context) error
	// ListAgentsByKey returns every agent using the key, following all pages.
	ListAgentsByKey(ctx context.Context, provider, uuid string) ([]platformAgent, error)
	// SetAgentKey points the agent at another key of the same provider and
	// returns the agent as the platform reports it afterwards.
	SetAgentKey(ctx context.Context, provider, agentUUID, keyUUID string) (platformAgent, error)
	// ClockOffset bounds the platform's clock minus this node's, as last
	// measured from an answer; ok is false before any answer came.
	ClockOffset() (lo, hi time.Duration, ok bool)
}

// maxPageSize is the platform's largest per_page: fewer round trips, fewer
// requests against the hourly rate budget.
const maxPageSize = 200

// godoPlatform implements platform with godo's AgentPlatform service.
type godoPlatform struct {
	api   godo.AgentPlatformService
	clock *platformClock
}

// newGodoPlatform builds a client without godo's automatic retries: those
// retry POST too, and a retried create can leave a duplicate key behind.
func newGodoPlatform(baseURL, token, userAgent string, timeout time.Duration) (*godoPlatform, error) {
	clock := newPlatformClock()
	httpClient := &http.Client{
		Timeout: timeout,
		Transport: &clockTransport{clock: clock, base: &bearerTransport{
			token: token, base: http.DefaultTransport.(*http.Transport).Clone(),
		}},
	}
	client, err := godo.New(httpClient, godo.SetBaseURL(baseURL), godo.SetUserAgent(userAgent))
	if err != nil {
		return nil, fmt.Errorf("building the platform client: %w", err)
	}
	return &godoPlatform{api: client.AgentPlatform, clock: clock}, nil
}

func (p *godoPlatform) ClockOffset() (lo, hi time.Duration, ok bool) { return p.clock.offset() }

func (p *godoPlatform) CreateKey(ctx context.Context, provider, name, secret string) (platformKey, error) {
	switch provider {
	case providerAnthropic:
		k, resp, err := p.api.CreateAnthropicAPIKey(ctx, &godo.AnthropicAPIKeyCreateRequest{Name: name, ApiKey: secret})
		if err != nil {
			return platformKey{}, classifyPlatformError("create key", resp, err, secret)
		}
		return fromAnthropic(k), nil
	case providerOpenAI:
		k, resp, err := p.api.CreateOpenAIAPIKey(ctx, &godo.OpenAIAPIKeyCreateRequest{Name: name, ApiKey: secret})
		if err != nil {
			return platformKey{}, classifyPlatformError("create key", resp, err, secret)
		}
		return fromOpenAI(k), nil
	}
	return platformKey{}, unknownProvider(provider)
}

func (p *godoPlatform) GetKey(ctx context.Context, provider, uuid string) (platformKey, error) {
	switch provider {
	case providerAnthropic:
		k, resp, err := p.api.GetAnthropicAPIKey(ctx, uuid)
		if err != nil {
			return platformKey{}, classifyPlatformError("get key", resp, err)
		}
		return fromAnthropic(k), nil
	case providerOpenAI:
		k, resp, err := p.api.GetOpenAIAPIKey(ctx, uuid)
		if err != nil {
			return platformKey{}, classifyPlatformError("get key", resp, err)
		}
		return fromOpenAI(k), nil
	}
	return platformKey{}, unknownProvider(provider)
}

func (p *godoPlatform) UpdateKey(ctx context.Context, provider, uuid string, change keyChange) (platformKey, error) {
	switch provider {
	case providerAnthropic:
		k, resp, err := p.api.UpdateAnthropicAPIKey(ctx, uuid, &godo.AnthropicAPIKeyUpdateRequest{
			ApiKeyUuid: uuid, Name: change.Name, ApiKey: change.Secret,
		})
		if err != nil {
			return platformKey{}, classifyPlatformError("update key", resp, err, change.Secret)
		}
		return fromAnthropic(k), nil
	case providerOpenAI:
		k, resp, err := p.api.UpdateOpenAIAPIKey(ctx, uuid, &godo.OpenAIAPIKeyUpdateRequest{
			ApiKeyUuid: uuid, Name: change.Name, ApiKey: change.Secret,
		})
		if err != nil {
			return platformKey{}, classifyPlatformError("update key", resp, err, change.Secret)
		}
		return fromOpenAI(k), nil
	}
	return platformKey{}, unknownProvider(provider)
}

func (p *godoPlatform) DeleteKey(ctx context.Context, provider, uuid string) error {
	var resp *godo.Response
	var err error
	switch provider {
	case providerAnthropic:
		_, resp, err = p.api.DeleteAnthropicAPIKey(ctx, uuid)
	case providerOpenAI:
		_, resp, err = p.api.DeleteOpenAIAPIKey(ctx, uuid)
	default:
		return unknownProvider(provider)
	}
	if err != nil {
		return classifyPlatformError("delete key", resp, err)
	}
	return nil
}

func (p *godoPlatform) ListKeys(ctx context.Context, provider string) ([]platformKey, error) {
	var keys []platformKey
	err := forEachPage(func(opt *godo.ListOptions) (*godo.Response, error) {
		switch provider {
		case providerAnthropic:
			page, resp, err := p.api.ListAnthropicAPIKeys(ctx, opt)
			for _, k := range page {
				keys = append(keys, fromAnthropic(k))
			}
			return resp, err
		case providerOpenAI:
			page, resp, err := p.api.ListOpenAIAPIKeys(ctx, opt)
			for _, k := range page {
				keys = append(keys, fromOpenAI(k))
			}
			return resp, err
		}
		return nil, unknownProvider(provider)
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s keys: %w", provider, err)
	}
	return keys, nil
}

func (p *godoPlatform) CheckToken(ctx context.Context) error {
	_, resp, err := p.api.ListAnthropicAPIKeys(ctx, &godo.ListOptions{Page: 1, PerPage: 1})
	if err != nil {
		return classifyPlatformError("check token", resp, err)
	}
	return nil
}

func (p *godoPlatform) ListAgentsByKey(ctx context.Context, provider, uuid string) ([]platformAgent, error) {
	var agents []platformAgent
	err := forEachPage(func(opt *godo.ListOptions) (*godo.Response, error) {
		var page []*godo.Agent
		var resp *godo.Response
		var err error
		switch provider {
		case providerAnthropic:
			page, resp, err = p.api.ListAgentsByAnthropicAPIKey(ctx, uuid, opt)
		case providerOpenAI:
			page, resp, err = p.api.ListAgentsByOpenAIAPIKey(ctx, uuid, opt)
		default:
			return nil, unknownProvider(provider)
		}
		for _, a := range page {
			agents = append(agents, fromAgent(a))
		}
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing the agents that use key %s: %w", uuid, err)
	}
	return agents, nil
}

func (p *godoPlatform) SetAgentKey(ctx context.Context, provider, agentUUID, keyUUID string) (platformAgent, error) {
	// Only the key field is sent (godo's omitempty drops the rest): whether
	// the platform keeps fields a PUT leaves out is unconfirmed, so callers
	// compare the returned agent with what they listed before.
	update := &godo.AgentUpdateRequest{Uuid: agentUUID}
	switch provider {
	case providerAnthropic:
		update.AnthropicKeyUuid = keyUUID
	case providerOpenAI:
		update.OpenAiKeyUuid = keyUUID
	default:
		return platformAgent{}, unknownProvider(provider)
	}
	agent, resp, err := p.api.UpdateAgent(ctx, agentUUID, update)
	if err != nil {
		return platformAgent{}, classifyPlatformError("update agent", resp, err)
	}
	return fromAgent(agent), nil
}

// forEachPage calls list with successive pages until the platform says the
// last page was reached. Errors from list are classified here once.
func forEachPage(list func(*godo.ListOptions) (*godo.Response, error)) error {
	opt := &godo.ListOptions{Page: 1, PerPage: maxPageSize}
	for {
		resp, err := list(opt)
		if err != nil {
			return classifyPlatformError("list", resp, err)
		}
		// The platform leaves out links entirely when one page holds
		// everything.
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() {
			return nil
		}
		current, err := resp.Links.CurrentPage()
		if err != nil || current < opt.Page {
			current = opt.Page
		}
		opt = &godo.ListOptions{Page: current + 1, PerPage: maxPageSize}
	}
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

func fromAnthropic(k *godo.AnthropicApiKeyInfo) platformKey {
	if k == nil {
		return platformKey{}
	}
	return platformKey{UUID: k.Uuid, Name: k.Name, CreatedAt: timestamp(k.CreatedAt), UpdatedAt: timestamp(k.UpdatedAt)}
}

func fromOpenAI(k *godo.OpenAiApiKey) platformKey {
	if k == nil {
		return platformKey{}
	}
	return platformKey{UUID: k.Uuid, Name: k.Name, CreatedAt: timestamp(k.CreatedAt), UpdatedAt: timestamp(k.UpdatedAt)}
}

func fromAgent(a *godo.Agent) platformAgent {
	if a == nil {
		return platformAgent{}
	}
	agent := platformAgent{UUID: a.Uuid, Name: a.Name, Instruction: a.Instruction, Region: a.Region}
	if a.Model != nil {
		agent.ModelUUID = a.Model.Uuid
	}
	return agent
}

func timestamp(t *godo.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time.UTC()
}

func unknownProvider(provider string) error {
	return errors.New("unknown provider " + provider)
}
