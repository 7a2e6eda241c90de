package platform

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/digitalocean/godo"
)

// AgentKey is one of an agent's API keys: what applications present to the
// agent's endpoint (Agent.DeploymentURL). Secret is set only in the answers
// of CreateAgentKey and RegenerateAgentKey: the platform shows it nowhere
// else, ever again.
type AgentKey struct {
	UUID      string
	AgentUUID string
	Name      string
	Secret    string
	CreatedAt time.Time
}

// AgentKeys is the view of the Gradient API for agents' API keys. It is
// apart from Client so that the fakes of Client need not grow; GodoClient
// implements both. Its errors are those of Client: *Error, possibly marked
// PossiblyApplied, or plain errors for what was never sent (a malformed
// uuid).
//
// CreateAgentKey and RegenerateAgentKey are sent once: neither is
// idempotent (a second create makes a second key, a second regenerate kills
// the secret the first made). After an ambiguous failure (IsRefusal false)
// the caller cannot know the secret, if any was made: it lists the agent's
// keys to find a create, or regenerates again.
type AgentKeys interface {
	// GetAgent returns the agent, with its deployment url.
	GetAgent(ctx context.Context, agentUUID string) (Agent, error)
	CreateAgentKey(ctx context.Context, agentUUID, name string) (AgentKey, error)
	// ListAgentKeys returns every API key of the agent, following all
	// pages, without secrets.
	ListAgentKeys(ctx context.Context, agentUUID string) ([]AgentKey, error)
	RenameAgentKey(ctx context.Context, agentUUID, keyUUID, name string) (AgentKey, error)
	// DeleteAgentKey answers an error of kind NotFound for a key that is
	// not there, deleted by an earlier attempt included (then also marked
	// PossiblyApplied): whether that counts as done is the caller's call,
	// as with DeleteKey.
	DeleteAgentKey(ctx context.Context, agentUUID, keyUUID string) error
	// RegenerateAgentKey gives the key a new secret under the same uuid;
	// the old secret stops working at once.
	RegenerateAgentKey(ctx context.Context, agentUUID, keyUUID string) (AgentKey, error)
}

var _ AgentKeys = (*GodoClient)(nil)

func (p *GodoClient) GetAgent(ctx context.Context, agentUUID string) (Agent, error) {
	if err := requireUUID(opGetAgent, "agent", agentUUID); err != nil {
		return Agent{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var agent *godo.Agent
	resp, err := retryPlatform(ctx, p.retryBase, opGetAgent, func(ctx context.Context) (resp *godo.Response, err error) {
		agent, resp, err = p.api.GetAgent(ctx, agentUUID)
		return resp, err
	})
	if err != nil {
		return Agent{}, p.classify(opGetAgent, resp, err)
	}
	return fromAgent(agent), nil
}

func (p *GodoClient) CreateAgentKey(ctx context.Context, agentUUID, name string) (AgentKey, error) {
	if err := requireUUID(opCreateAgentKey, "agent", agentUUID); err != nil {
		return AgentKey{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var info *godo.ApiKeyInfo
	resp, err := retryPlatform(ctx, p.retryBase, opCreateAgentKey, func(ctx context.Context) (resp *godo.Response, err error) {
		info, resp, err = p.api.CreateAgentAPIKey(ctx, agentUUID, &godo.AgentAPIKeyCreateRequest{AgentUuid: agentUUID, Name: name})
		return resp, err
	})
	if err != nil {
		return AgentKey{}, p.classify(opCreateAgentKey, resp, err, secretOf(info))
	}
	return p.keyWithSecret(opCreateAgentKey, agentUUID, info, resp)
}

func (p *GodoClient) RegenerateAgentKey(ctx context.Context, agentUUID, keyUUID string) (AgentKey, error) {
	if err := requireAgentKeyUUIDs(opRegenerateAgentKey, agentUUID, keyUUID); err != nil {
		return AgentKey{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var info *godo.ApiKeyInfo
	resp, err := retryPlatform(ctx, p.retryBase, opRegenerateAgentKey, func(ctx context.Context) (resp *godo.Response, err error) {
		info, resp, err = p.api.RegenerateAgentAPIKey(ctx, agentUUID, keyUUID)
		return resp, err
	})
	if err != nil {
		return AgentKey{}, p.classify(opRegenerateAgentKey, resp, err, secretOf(info))
	}
	return p.keyWithSecret(opRegenerateAgentKey, agentUUID, info, resp)
}

// keyWithSecret checks that a create's or a regenerate's answer carries what
// the caller cannot get again: the uuid and the secret. One that does not is
// a failure, not a refusal: the platform may have made the secret all the
// same. The answer is never quoted, since it holds the secret.
func (p *GodoClient) keyWithSecret(op platformOp, agentUUID string, info *godo.ApiKeyInfo, resp *godo.Response) (AgentKey, error) {
	key := fromAgentKeyInfo(agentUUID, info)
	if key.UUID != "" && key.Secret != "" {
		return key, nil
	}
	status, requestID := 0, ""
	if resp != nil && resp.Response != nil {
		status, requestID = resp.StatusCode, Redact(resp.Header.Get("X-Request-Id"), p.token, key.Secret)
	}
	return AgentKey{}, failure(string(op), status, requestID, "the platform's answer has no api_key_info with a uuid and a secret_key; a key or secret may have been made all the same")
}

func (p *GodoClient) ListAgentKeys(ctx context.Context, agentUUID string) ([]AgentKey, error) {
	if err := requireUUID(opList, "agent", agentUUID); err != nil {
		return nil, err
	}
	infos, err := listAll(ctx, p, func(ctx context.Context, opt *godo.ListOptions) ([]*godo.ApiKeyInfo, *godo.Response, error) {
		return p.listAgentKeysPage(ctx, agentUUID, opt)
	})
	if err != nil {
		return nil, fmt.Errorf("listing the API keys of agent %s: %w", agentUUID, err)
	}
	keys := make([]AgentKey, 0, len(infos))
	for _, info := range infos {
		key := fromAgentKeyInfo(agentUUID, info)
		// A listing never carries secrets; should one ever, it is not
		// passed on where callers expect none.
		key.Secret = ""
		keys = append(keys, key)
	}
	return keys, nil
}

// agentKeysPage is a page of the listing, as the reference shapes it.
type agentKeysPage struct {
	Infos []*godo.ApiKeyInfo `json:"api_key_infos"`
	Links *godo.Links        `json:"links"`
	Meta  *godo.Meta         `json:"meta"`
}

// listAgentKeysPage asks for one page. It builds the request itself because
// godo v1.239.0's ListAgentAPIKeys drops its ListOptions and sends no page
// or per_page, so it could only ever read the first 20 keys, where the
// reference pages this listing like every other.
func (p *GodoClient) listAgentKeysPage(ctx context.Context, agentUUID string, opt *godo.ListOptions) ([]*godo.ApiKeyInfo, *godo.Response, error) {
	path := fmt.Sprintf("/v2/gen-ai/agents/%s/api_keys?page=%d&per_page=%d", agentUUID, opt.Page, opt.PerPage)
	req, err := p.rest.NewRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, nil, err
	}
	var page agentKeysPage
	resp, err := p.rest.Do(ctx, req, &page)
	if err != nil {
		return nil, resp, err
	}
	resp.Links, resp.Meta = page.Links, page.Meta
	return page.Infos, resp, nil
}

func (p *GodoClient) RenameAgentKey(ctx context.Context, agentUUID, keyUUID, name string) (AgentKey, error) {
	if err := requireAgentKeyUUIDs(opRenameAgentKey, agentUUID, keyUUID); err != nil {
		return AgentKey{}, err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var info *godo.ApiKeyInfo
	resp, err := retryPlatform(ctx, p.retryBase, opRenameAgentKey, func(ctx context.Context) (resp *godo.Response, err error) {
		info, resp, err = p.api.UpdateAgentAPIKey(ctx, agentUUID, keyUUID, &godo.AgentAPIKeyUpdateRequest{
			AgentUuid: agentUUID, APIKeyUuid: keyUUID, Name: name,
		})
		return resp, err
	})
	if err != nil {
		return AgentKey{}, p.classify(opRenameAgentKey, resp, err, secretOf(info))
	}
	key := fromAgentKeyInfo(agentUUID, info)
	key.Secret = "" // a rename hands out no secret
	return key, nil
}

func (p *GodoClient) DeleteAgentKey(ctx context.Context, agentUUID, keyUUID string) error {
	if err := requireAgentKeyUUIDs(opDeleteAgentKey, agentUUID, keyUUID); err != nil {
		return err
	}
	ctx, cancel := p.operation(ctx)
	defer cancel()
	var info *godo.ApiKeyInfo
	resp, err := retryPlatform(ctx, p.retryBase, opDeleteAgentKey, func(ctx context.Context) (resp *godo.Response, err error) {
		info, resp, err = p.api.DeleteAgentAPIKey(ctx, agentUUID, keyUUID)
		return resp, err
	})
	if err != nil {
		return p.classify(opDeleteAgentKey, resp, err, secretOf(info))
	}
	return nil
}

// requireAgentKeyUUIDs: both uuids go into the request path.
func requireAgentKeyUUIDs(op platformOp, agentUUID, keyUUID string) error {
	if err := requireUUID(op, "agent", agentUUID); err != nil {
		return err
	}
	return requireUUID(op, "agent API key", keyUUID)
}

// secretOf is the secret an answer carried, if any, for redaction: godo
// can decode part of an answer and still fail, and no error text may quote
// a secret.
func secretOf(info *godo.ApiKeyInfo) string {
	if info == nil {
		return ""
	}
	return info.SecretKey
}

func fromAgentKeyInfo(agentUUID string, info *godo.ApiKeyInfo) AgentKey {
	if info == nil {
		return AgentKey{AgentUUID: agentUUID}
	}
	return AgentKey{
		UUID: info.Uuid, AgentUUID: agentUUID, Name: info.Name, Secret: info.SecretKey,
		CreatedAt: timestamp(info.CreatedAt),
	}
}
