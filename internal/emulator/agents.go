package emulator

import (
	"net/http"
	"slices"
	"time"

	"github.com/digitalocean/godo"
)

const agentsPath = "/v2/gen-ai/agents"

// agent keeps only what the plugin cares about: which provider key it uses,
// where its endpoint is, and the API keys that endpoint accepts. An empty
// key uuid means no key of that provider.
type agent struct {
	uuid, name, instruction, modelUUID, region, projectID string
	anthropicKeyUUID, openAIKeyUUID                       string
	createdAt, updatedAt                                  time.Time
	// endpointHost is the first label of the deployment's host name,
	// "<endpointHost>.agents.do-ai.run": what the emulated endpoint is
	// found by (agent_api_keys.go).
	endpointHost string
	// apiKeys are the agent's API keys in creation order; they go with
	// the agent when it is deleted.
	apiKeys []*agentAPIKey
}

// keyRef points at the agent's key uuid for provider p.
func (a *agent) keyRef(p *provider) *string {
	if p == openAI {
		return &a.openAIKeyUUID
	}
	return &a.anthropicKeyUUID
}

// agentJSON is an agent on the wire. It is not godo.Agent because the
// OpenAPI spec names the embedded OpenAI key "openai_api_key" where godo's
// struct says "open_ai_api_key"; the emulator follows the spec.
type agentJSON struct {
	UUID            string                    `json:"uuid"`
	Name            string                    `json:"name"`
	Instruction     string                    `json:"instruction"`
	Region          string                    `json:"region"`
	ProjectID       string                    `json:"project_id"`
	CreatedAt       *godo.Timestamp           `json:"created_at"`
	UpdatedAt       *godo.Timestamp           `json:"updated_at"`
	Model           *godo.Model               `json:"model"`
	AnthropicAPIKey *godo.AnthropicApiKeyInfo `json:"anthropic_api_key,omitempty"`
	OpenAIAPIKey    *godo.OpenAiApiKey        `json:"openai_api_key,omitempty"`
	Deployment      deploymentJSON            `json:"deployment"`
}

// deploymentJSON is the part of the spec's apiDeployment that clients of
// agent API keys need: where the agent answers, and whether it does.
type deploymentJSON struct {
	URL        string `json:"url"`
	Status     string `json:"status"`
	Visibility string `json:"visibility"`
}

type agentBody struct {
	Agent agentJSON `json:"agent"`
}

type agentListBody struct {
	Agents []agentJSON `json:"agents"`
	Links  *pageLinks  `json:"links,omitempty"`
	Meta   *godo.Meta  `json:"meta"`
}

// viewLocked renders an agent with the current state of its keys embedded.
// The caller holds e.mu.
func (e *Emulator) viewLocked(a *agent) agentJSON {
	v := agentJSON{
		UUID: a.uuid, Name: a.name, Instruction: a.instruction,
		Region: a.region, ProjectID: a.projectID,
		CreatedAt: ts(a.createdAt), UpdatedAt: ts(a.updatedAt),
		Model:      &godo.Model{Uuid: a.modelUUID},
		Deployment: deploymentJSON{URL: a.deploymentURL(), Status: deploymentRunning, Visibility: deploymentPrivate},
	}
	if k := e.findKeyLocked(anthropic, a.anthropicKeyUUID); k != nil {
		v.AnthropicAPIKey = k.anthropicInfo(nil)
	}
	if k := e.findKeyLocked(openAI, a.openAIKeyUUID); k != nil {
		v.OpenAIAPIKey = k.openAIInfo(nil)
	}
	return v
}

// agentPageLocked renders one page of agents. The caller holds e.mu.
func (e *Emulator) agentPageLocked(r *http.Request, agents []*agent, pr pageRequest) agentListBody {
	body := agentListBody{Agents: []agentJSON{}, Links: pr.links(r, len(agents), e.omitSinglePageLinks), Meta: pr.meta(len(agents))}
	for _, a := range paginate(agents, pr) {
		body.Agents = append(body.Agents, e.viewLocked(a))
	}
	return body
}

func (e *Emulator) findAgentLocked(uuid string) *agent {
	for _, a := range e.agents {
		if a.uuid == uuid {
			return a
		}
	}
	return nil
}

// checkKeyRefsLocked returns a message when a key uuid given for an agent
// is not a key of that provider. The caller holds e.mu.
func (e *Emulator) checkKeyRefsLocked(anthropicUUID, openAIUUID string) string {
	if anthropicUUID != "" && e.findKeyLocked(anthropic, anthropicUUID) == nil {
		return "anthropic_key_uuid does not refer to an Anthropic key"
	}
	if openAIUUID != "" && e.findKeyLocked(openAI, openAIUUID) == nil {
		return "open_ai_key_uuid does not refer to an OpenAI key"
	}
	return ""
}

func (e *Emulator) listAgents(w http.ResponseWriter, r *http.Request, _ string) {
	pr, msg, ok := parsePageRequest(r)
	if !ok {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", msg)
		return
	}
	e.answerLocked(w, func() (any, *apiError) {
		return e.agentPageLocked(r, e.agents, pr), nil
	})
}

func (e *Emulator) createAgent(w http.ResponseWriter, r *http.Request, _ string) {
	var req godo.AgentCreateRequest
	if err := decodeBody(r, &req); err != nil {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "request body is not valid JSON")
		return
	}
	for _, f := range []struct{ name, value string }{
		{"name", req.Name}, {"instruction", req.Instruction}, {"model_uuid", req.ModelUuid},
		{"region", req.Region}, {"project_id", req.ProjectId},
	} {
		if f.value == "" {
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", f.name+" is required")
			return
		}
	}
	e.answerLocked(w, func() (any, *apiError) {
		if msg := e.checkKeyRefsLocked(req.AnthropicKeyUuid, req.OpenAiKeyUuid); msg != "" {
			return nil, invalidArgument(msg)
		}
		t := e.nowLocked()
		a := &agent{
			uuid: newUUID(), name: req.Name, instruction: req.Instruction, modelUUID: req.ModelUuid,
			region: req.Region, projectID: req.ProjectId,
			anthropicKeyUUID: req.AnthropicKeyUuid, openAIKeyUUID: req.OpenAiKeyUuid,
			createdAt: t, updatedAt: t, endpointHost: newEndpointHost(),
		}
		e.agents = append(e.agents, a)
		return agentBody{e.viewLocked(a)}, nil
	})
}

func (e *Emulator) getAgent(w http.ResponseWriter, r *http.Request, id string) {
	e.answerLocked(w, func() (any, *apiError) {
		a := e.findAgentLocked(id)
		if a == nil {
			return nil, notFound()
		}
		return agentBody{e.viewLocked(a)}, nil
	})
}

// updateAgent changes only the fields the PUT sets to a non-empty value
// (assumed; upstream leaves this unconfirmed), so switching an agent's key
// sends the key uuid alone.
func (e *Emulator) updateAgent(w http.ResponseWriter, r *http.Request, id string) {
	var req godo.AgentUpdateRequest
	if err := decodeBody(r, &req); err != nil {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "request body is not valid JSON")
		return
	}
	e.answerLocked(w, func() (any, *apiError) {
		a := e.findAgentLocked(id)
		if a == nil {
			return nil, notFound()
		}
		if req.Uuid != "" && req.Uuid != id {
			return nil, invalidArgument("uuid does not match the agent in the path")
		}
		if msg := e.checkKeyRefsLocked(req.AnthropicKeyUuid, req.OpenAiKeyUuid); msg != "" {
			return nil, invalidArgument(msg)
		}
		changed := false
		for _, f := range []struct {
			dst *string
			src string
		}{
			{&a.name, req.Name}, {&a.instruction, req.Instruction}, {&a.modelUUID, req.ModelUuid},
			{&a.region, req.Region}, {&a.projectID, req.ProjectId},
			{&a.anthropicKeyUUID, req.AnthropicKeyUuid}, {&a.openAIKeyUUID, req.OpenAiKeyUuid},
		} {
			if f.src != "" && f.src != *f.dst {
				*f.dst, changed = f.src, true
			}
		}
		if changed {
			a.updatedAt = e.stampAfterLocked(a.updatedAt)
		}
		return agentBody{e.viewLocked(a)}, nil
	})
}

func (e *Emulator) deleteAgent(w http.ResponseWriter, r *http.Request, id string) {
	e.answerLocked(w, func() (any, *apiError) {
		a := e.findAgentLocked(id)
		if a == nil {
			return nil, notFound()
		}
		body := agentBody{e.viewLocked(a)}
		e.agents = slices.DeleteFunc(e.agents, func(x *agent) bool { return x == a })
		return body, nil
	})
}
