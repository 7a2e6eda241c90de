package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// Agent API keys are what applications present to an agent's endpoint
// (agent.deployment.url): the platform makes their secrets, shows each one
// once (in the answer to a create or a regenerate), and the endpoint accepts
// the current secret of any key of its agent. The emulator serves their five
// platform routes and the endpoint itself, so a test can tell a live secret
// from a dead one the way an application would.

const (
	// agentEndpointPrefix is where the emulator serves agent endpoints: the
	// agent deployed at https://<host>.agents.do-ai.run answers at
	// <server>/agent-endpoints/<host> (AgentEndpointURL).
	agentEndpointPrefix = "/agent-endpoints"
	// agentEndpointDomain is the real endpoints' domain, as godo's test
	// data shows it: https://bndu2aqk2tnxj6ldwsatdmyu.agents.do-ai.run.
	agentEndpointDomain = ".agents.do-ai.run"

	// The spec's enum values; every emulated agent is deployed, running,
	// and needs an API key (private).
	deploymentRunning = "STATUS_RUNNING"
	deploymentPrivate = "VISIBILITY_PRIVATE"

	// agentSecretLength: DigitalOcean documents endpoint access keys as an
	// "alphanumeric string" with no prefix, so nothing but an exact match
	// can find one in text. The emulator's are 32 characters.
	agentSecretLength = 32
)

// agentAPIKey is one API key of an agent. Its secret is shown only in the
// answers to create and regenerate, and by the endpoint's 200.
type agentAPIKey struct {
	uuid, name, secret string
	createdAt          time.Time
}

// info is the key's api_key_info; the secret goes in only when the caller
// passes withSecret (create, regenerate), deleted_at only on delete.
func (k *agentAPIKey) info(withSecret bool, deletedAt *godo.Timestamp) *godo.ApiKeyInfo {
	info := &godo.ApiKeyInfo{Uuid: k.uuid, Name: k.name, CreatedBy: createdBy, CreatedAt: ts(k.createdAt), DeletedAt: deletedAt}
	if withSecret {
		info.SecretKey = k.secret
	}
	return info
}

var lowerBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newEndpointHost returns 24 lowercase letters and digits, the shape of the
// host label in godo's test data.
func newEndpointHost() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(lowerBase32.EncodeToString(b[:]))
}

// newAgentSecret returns agentSecretLength random letters and digits.
func newAgentSecret() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	return randomFrom(alphabet, agentSecretLength)
}

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		// 256 is not a multiple of 62; the bias is irrelevant to a test secret.
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (a *agent) deploymentURL() string { return "https://" + a.endpointHost + agentEndpointDomain }

func (a *agent) findAPIKey(uuid string) *agentAPIKey {
	for _, k := range a.apiKeys {
		if k.uuid == uuid {
			return k
		}
	}
	return nil
}

// agentAPIKeyRequest is the body of create and rename: the reference's
// {agent_uuid, name} and {agent_uuid, api_key_uuid, name}. godo fills
// agent_uuid in itself.
type agentAPIKeyRequest struct {
	AgentUUID  string `json:"agent_uuid"`
	APIKeyUUID string `json:"api_key_uuid"`
	Name       string `json:"name"`
}

// decodeAgentAPIKeyRequest reads the body and refuses ids that contradict
// the path (a create's path names no key, so its body's key uuid is
// ignored), before the lock. It answers the caller itself and reports false
// when the request goes no further.
func decodeAgentAPIKeyRequest(w http.ResponseWriter, r *http.Request) (agentAPIKeyRequest, bool) {
	var body agentAPIKeyRequest
	if err := decodeBody(r, &body); err != nil {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "request body is not valid JSON")
		return body, false
	}
	switch {
	case body.AgentUUID != "" && body.AgentUUID != r.PathValue("agent_uuid"):
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "agent_uuid does not match the agent in the path")
		return body, false
	case body.APIKeyUUID != "" && r.PathValue("api_key_uuid") != "" && body.APIKeyUUID != r.PathValue("api_key_uuid"):
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "api_key_uuid does not match the key in the path")
		return body, false
	}
	return body, true
}

// agentAndKeyLocked finds the agent of the path and, when the route names
// one, its key; either missing is a 404. The caller holds e.mu.
func (e *Emulator) agentAndKeyLocked(r *http.Request) (*agent, *agentAPIKey, *apiError) {
	a := e.findAgentLocked(r.PathValue("agent_uuid"))
	if a == nil {
		return nil, nil, notFound()
	}
	keyUUID := r.PathValue("api_key_uuid")
	if keyUUID == "" {
		return a, nil, nil
	}
	k := a.findAPIKey(keyUUID)
	if k == nil {
		return nil, nil, notFound()
	}
	return a, k, nil
}

func (e *Emulator) listAgentAPIKeys(w http.ResponseWriter, r *http.Request, _ string) {
	pr, msg, ok := parsePageRequest(r)
	if !ok {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", msg)
		return
	}
	e.answerLocked(w, func() (any, *apiError) {
		a, _, apiErr := e.agentAndKeyLocked(r)
		if apiErr != nil {
			return nil, apiErr
		}
		infos := []any{}
		for _, k := range paginate(a.apiKeys, pr) {
			infos = append(infos, k.info(false, nil))
		}
		return keyListBody{Infos: infos, Links: pr.links(r, len(a.apiKeys), e.omitSinglePageLinks), Meta: pr.meta(len(a.apiKeys))}, nil
	})
}

func (e *Emulator) createAgentAPIKey(w http.ResponseWriter, r *http.Request, _ string) {
	body, ok := decodeAgentAPIKeyRequest(w, r)
	if !ok {
		return
	}
	if body.Name == "" {
		writePlatformError(w, http.StatusBadRequest, "invalid_argument", "name is required")
		return
	}
	e.answerLocked(w, func() (any, *apiError) {
		a, _, apiErr := e.agentAndKeyLocked(r)
		if apiErr != nil {
			return nil, apiErr
		}
		k := &agentAPIKey{uuid: newUUID(), name: body.Name, secret: newAgentSecret(), createdAt: e.nowLocked()}
		a.apiKeys = append(a.apiKeys, k)
		return keyInfoBody{k.info(true, nil)}, nil
	})
}

// renameAgentAPIKey changes the name; an empty name leaves it, as a provider
// key's PUT does. The secret is not in the answer.
func (e *Emulator) renameAgentAPIKey(w http.ResponseWriter, r *http.Request, _ string) {
	body, ok := decodeAgentAPIKeyRequest(w, r)
	if !ok {
		return
	}
	e.answerLocked(w, func() (any, *apiError) {
		_, k, apiErr := e.agentAndKeyLocked(r)
		if apiErr != nil {
			return nil, apiErr
		}
		if body.Name != "" {
			k.name = body.Name
		}
		return keyInfoBody{k.info(false, nil)}, nil
	})
}

// deleteAgentAPIKey removes the key, so its secret stops working at once,
// and answers its last state with deleted_at.
func (e *Emulator) deleteAgentAPIKey(w http.ResponseWriter, r *http.Request, _ string) {
	e.answerLocked(w, func() (any, *apiError) {
		a, k, apiErr := e.agentAndKeyLocked(r)
		if apiErr != nil {
			return nil, apiErr
		}
		a.apiKeys = slices.DeleteFunc(a.apiKeys, func(x *agentAPIKey) bool { return x == k })
		return keyInfoBody{k.info(false, ts(e.nowLocked()))}, nil
	})
}

// regenerateAgentAPIKey gives the key a new secret under the same uuid; the
// old secret stops working at once. It counts as a secret change
// (SecretChanges). godo sends no body, and none is read.
func (e *Emulator) regenerateAgentAPIKey(w http.ResponseWriter, r *http.Request, _ string) {
	e.answerLocked(w, func() (any, *apiError) {
		_, k, apiErr := e.agentAndKeyLocked(r)
		if apiErr != nil {
			return nil, apiErr
		}
		k.secret = newAgentSecret()
		e.noteSecretChangeLocked(k.uuid)
		return keyInfoBody{k.info(true, nil)}, nil
	})
}

// serveAgentEndpoint is the pipeline of the agent endpoints: like a
// provider's, no platform token and no rate limit (an endpoint's own limits
// are not the API's), but counts, latency and faults apply, so a test can
// make an agent slow or broken.
func (e *Emulator) serveAgentEndpoint(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(headerRequestID, newUUID())
	m := e.routes.match(r.Method, r.URL.Path)
	e.count(m)
	if !bufferBody(w, r, platformErrors) || !sleepCtx(r.Context(), e.currentLatency()) {
		return
	}
	e.dispatch(w, r, m, platformErrors)
}

// agentChatCompletion is the endpoint's POST /api/v1/chat/completions: 200
// with a fixed answer for the current secret of any API key of the agent,
// 401 for anything else (a deleted key, a secret replaced by regenerate,
// another agent's key, a platform token), 404 for a host no agent has.
func (e *Emulator) agentChatCompletion(w http.ResponseWriter, r *http.Request, _ string) {
	secret, _ := bearerToken(r)
	e.mu.Lock()
	var a *agent
	for _, x := range e.agents {
		if x.endpointHost == r.PathValue("endpoint_host") {
			a = x
			break
		}
	}
	live := a != nil && secret != "" && slices.ContainsFunc(a.apiKeys, func(k *agentAPIKey) bool {
		return subtle.ConstantTimeCompare([]byte(k.secret), []byte(secret)) == 1
	})
	var model string
	if a != nil {
		model = a.modelUUID
	}
	created := e.nowLocked().Unix()
	e.mu.Unlock()
	switch {
	case a == nil:
		writePlatformError(w, http.StatusNotFound, "not_found", msgNotFound)
	case !live:
		writePlatformError(w, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
	default:
		writeJSON(w, http.StatusOK, chatCompletion{
			ID: "chatcmpl-" + newRequestID(), Object: "chat.completion", Created: created, Model: model,
			Choices: []chatChoice{{Message: chatMessage{Role: "assistant", Content: "Hello from the emulated agent."}, FinishReason: "stop"}},
		})
	}
}

// chatCompletion is the OpenAI-compatible answer of an agent endpoint,
// reduced to what a client checks.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
}

type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// AgentEndpointURL maps an agent's deployment url, as the platform reports
// it (https://<host>.agents.do-ai.run), to where this emulator serves that
// endpoint under serverURL: <serverURL>/agent-endpoints/<host>. The
// endpoint's paths follow, e.g. /api/v1/chat/completions. It reports false
// for a url that is not an agent endpoint's.
func AgentEndpointURL(serverURL, deploymentURL string) (string, bool) {
	host, ok := strings.CutPrefix(deploymentURL, "https://")
	if !ok {
		return "", false
	}
	host, ok = strings.CutSuffix(strings.TrimSuffix(host, "/"), agentEndpointDomain)
	if !ok || host == "" || strings.ContainsAny(host, "./") {
		return "", false
	}
	return strings.TrimSuffix(serverURL, "/") + agentEndpointPrefix + "/" + host, true
}

// AgentAPIKeyState is one agent API key, for counting in tests; the control
// API never shows its secret.
type AgentAPIKeyState struct {
	AgentUUID string    `json:"agent_uuid"`
	UUID      string    `json:"uuid"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// AgentAPIKeys lists every agent's API keys, agents and keys in creation
// order, without secrets: whether a secret works is for the endpoint to say.
func (e *Emulator) AgentAPIKeys() []AgentAPIKeyState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []AgentAPIKeyState{}
	for _, a := range e.agents {
		for _, k := range a.apiKeys {
			out = append(out, AgentAPIKeyState{AgentUUID: a.uuid, UUID: k.uuid, Name: k.name, CreatedAt: k.createdAt})
		}
	}
	return out
}
