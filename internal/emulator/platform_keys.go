package emulator

import (
	"net/http"
	"slices"
	"time"

	"github.com/digitalocean/godo"
)

// apiKey is a provider key the platform holds. The secret stays inside the
// emulator: no platform response carries it.
type apiKey struct {
	uuid, name, secret   string
	createdAt, updatedAt time.Time
}

const (
	// createdBy is the user id every key reports, as a string like the real API.
	createdBy = "1234567"
	// gpt4oModelUUID is fixed so OpenAI key infos compare equal across calls.
	gpt4oModelUUID = "4d3c9b4e-2b1f-4c6e-9a51-0f2d8e7b6a11"

	msgNotFound           = "The resource you were accessing could not be found."
	msgVerificationFailed = "api key verification failed"
)

func ts(t time.Time) *godo.Timestamp { return &godo.Timestamp{Time: t} }

func (k *apiKey) anthropicInfo(deletedAt *godo.Timestamp) *godo.AnthropicApiKeyInfo {
	return &godo.AnthropicApiKeyInfo{
		Uuid: k.uuid, Name: k.name, CreatedBy: createdBy,
		CreatedAt: ts(k.createdAt), UpdatedAt: ts(k.updatedAt), DeletedAt: deletedAt,
	}
}

func (k *apiKey) openAIInfo(deletedAt *godo.Timestamp) *godo.OpenAiApiKey {
	return &godo.OpenAiApiKey{
		Uuid: k.uuid, Name: k.name, CreatedBy: createdBy,
		CreatedAt: ts(k.createdAt), UpdatedAt: ts(k.updatedAt), DeletedAt: deletedAt,
		Models: []*godo.Model{{Uuid: gpt4oModelUUID, Name: "gpt-4o", Provider: "OpenAI"}},
	}
}

// info is the provider's api_key_info object; deletedAt is nil unless the
// key is being deleted.
func (p *provider) info(k *apiKey, deletedAt *godo.Timestamp) any {
	if p == openAI {
		return k.openAIInfo(deletedAt)
	}
	return k.anthropicInfo(deletedAt)
}

// keyInfoBody is the body of every single-key response, delete included.
type keyInfoBody struct {
	Info any `json:"api_key_info"`
}

// keyListBody is a page of keys; "links" is left out on a single page only
// when a test asks for it (OmitSinglePageLinks).
type keyListBody struct {
	Infos []any      `json:"api_key_infos"`
	Links *pageLinks `json:"links,omitempty"`
	Meta  *godo.Meta `json:"meta"`
}

// findKeyLocked returns the provider's key with that uuid, or nil: a uuid of
// the other provider is not found. The caller holds e.mu.
func (e *Emulator) findKeyLocked(p *provider, uuid string) *apiKey {
	for _, k := range e.keys[p.name] {
		if k.uuid == uuid {
			return k
		}
	}
	return nil
}

func (e *Emulator) listKeys(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		pr, msg, ok := parsePageRequest(r)
		if !ok {
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", msg)
			return
		}
		e.answerLocked(w, func() (any, *apiError) {
			all := e.keys[p.name]
			infos := []any{}
			for _, k := range paginate(all, pr) {
				infos = append(infos, p.info(k, nil))
			}
			return keyListBody{Infos: infos, Links: pr.links(r, len(all), e.omitSinglePageLinks), Meta: pr.meta(len(all))}, nil
		})
	}
}

func (e *Emulator) createKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		var body struct {
			Name   string `json:"name"`
			APIKey string `json:"api_key"`
		}
		if err := decodeBody(r, &body); err != nil {
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", "request body is not valid JSON")
			return
		}
		switch {
		case body.Name == "":
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", "name is required")
			return
		case body.APIKey == "":
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", "api_key is required")
			return
		}
		e.answerLocked(w, func() (any, *apiError) {
			if !e.keyWorksLocked(p, body.APIKey) {
				return nil, invalidArgument(msgVerificationFailed)
			}
			t := e.nowLocked()
			k := &apiKey{uuid: newUUID(), name: body.Name, secret: body.APIKey, createdAt: t, updatedAt: t}
			e.keys[p.name] = append(e.keys[p.name], k)
			return keyInfoBody{p.info(k, nil)}, nil
		})
	}
}

func (e *Emulator) getKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		e.answerLocked(w, func() (any, *apiError) {
			k := e.findKeyLocked(p, id)
			if k == nil {
				return nil, notFound()
			}
			return keyInfoBody{p.info(k, nil)}, nil
		})
	}
}

// updateKey changes the name and/or the secret in place. The uuid stays, so
// agents that use the key keep working: this is how a key is rotated safely.
func (e *Emulator) updateKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		var body struct {
			UUID   string `json:"api_key_uuid"`
			Name   string `json:"name"`
			APIKey string `json:"api_key"`
		}
		if err := decodeBody(r, &body); err != nil {
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", "request body is not valid JSON")
			return
		}
		e.answerLocked(w, func() (any, *apiError) {
			k := e.findKeyLocked(p, id)
			switch {
			case k == nil:
				return nil, notFound()
			case body.UUID != "" && body.UUID != id:
				return nil, invalidArgument("api_key_uuid does not match the key in the path")
			case body.APIKey != "" && !e.keyWorksLocked(p, body.APIKey):
				return nil, invalidArgument(msgVerificationFailed)
			}
			changed := false
			if body.Name != "" && body.Name != k.name {
				k.name, changed = body.Name, true
			}
			if body.APIKey != "" && body.APIKey != k.secret {
				k.secret, changed = body.APIKey, true
				e.noteSecretChangeLocked(k.uuid)
			}
			if changed {
				k.updatedAt = e.stampAfterLocked(k.updatedAt)
			}
			return keyInfoBody{p.info(k, nil)}, nil
		})
	}
}

// deleteKey removes the key and answers with its last state plus deleted_at.
// Agents that used it are left without a key of that provider (assumed: the
// control panel says deleting "removes access for every agent using it").
func (e *Emulator) deleteKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		e.answerLocked(w, func() (any, *apiError) {
			k := e.findKeyLocked(p, id)
			if k == nil {
				return nil, notFound()
			}
			e.keys[p.name] = slices.DeleteFunc(e.keys[p.name], func(x *apiKey) bool { return x == k })
			deletedAt := e.nowLocked()
			for _, a := range e.agents {
				if ref := a.keyRef(p); *ref == id {
					*ref = ""
					a.updatedAt = e.stampAfterLocked(a.updatedAt)
				}
			}
			return keyInfoBody{p.info(k, ts(deletedAt))}, nil
		})
	}
}

// listAgentsByKey pages through the agents whose key of this provider is id.
func (e *Emulator) listAgentsByKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		pr, msg, ok := parsePageRequest(r)
		if !ok {
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", msg)
			return
		}
		e.answerLocked(w, func() (any, *apiError) {
			if e.findKeyLocked(p, id) == nil {
				return nil, notFound()
			}
			var using []*agent
			for _, a := range e.agents {
				if *a.keyRef(p) == id {
					using = append(using, a)
				}
			}
			return e.agentPageLocked(r, using, pr), nil
		})
	}
}
