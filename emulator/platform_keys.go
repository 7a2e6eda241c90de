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

// keyListBody is a page of keys; "links" is left out on a single page.
type keyListBody struct {
	Infos []any       `json:"api_key_infos"`
	Links *godo.Links `json:"links,omitempty"`
	Meta  *godo.Meta  `json:"meta"`
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
		e.mu.Lock()
		all := e.keys[p.name]
		infos := []any{}
		for _, k := range paginate(all, pr) {
			infos = append(infos, p.info(k, nil))
		}
		total := len(all)
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, keyListBody{Infos: infos, Links: pr.links(r, total), Meta: pr.meta(total)})
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
		e.mu.Lock()
		if !e.keyWorksLocked(p, body.APIKey) {
			e.mu.Unlock()
			writePlatformError(w, http.StatusBadRequest, "invalid_argument", msgVerificationFailed)
			return
		}
		t := now()
		k := &apiKey{uuid: newUUID(), name: body.Name, secret: body.APIKey, createdAt: t, updatedAt: t}
		e.keys[p.name] = append(e.keys[p.name], k)
		info := p.info(k, nil)
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, keyInfoBody{info})
	}
}

func (e *Emulator) getKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		e.mu.Lock()
		k := e.findKeyLocked(p, id)
		var info any
		if k != nil {
			info = p.info(k, nil)
		}
		e.mu.Unlock()
		if k == nil {
			writePlatformError(w, http.StatusNotFound, "not_found", msgNotFound)
			return
		}
		writeJSON(w, http.StatusOK, keyInfoBody{info})
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
		e.mu.Lock()
		k := e.findKeyLocked(p, id)
		status, errID, msg := http.StatusOK, "", ""
		switch {
		case k == nil:
			status, errID, msg = http.StatusNotFound, "not_found", msgNotFound
		case body.UUID != "" && body.UUID != id:
			status, errID, msg = http.StatusBadRequest, "invalid_argument", "api_key_uuid does not match the key in the path"
		case body.APIKey != "" && !e.keyWorksLocked(p, body.APIKey):
			status, errID, msg = http.StatusBadRequest, "invalid_argument", msgVerificationFailed
		}
		var info any
		if status == http.StatusOK {
			changed := false
			if body.Name != "" && body.Name != k.name {
				k.name, changed = body.Name, true
			}
			if body.APIKey != "" && body.APIKey != k.secret {
				k.secret, changed = body.APIKey, true
			}
			if changed {
				k.updatedAt = stampAfter(k.updatedAt)
			}
			info = p.info(k, nil)
		}
		e.mu.Unlock()
		if status != http.StatusOK {
			writePlatformError(w, status, errID, msg)
			return
		}
		writeJSON(w, http.StatusOK, keyInfoBody{info})
	}
}

// deleteKey removes the key and answers with its last state plus deleted_at.
// Agents that used it are left without a key of that provider (assumed: the
// control panel says deleting "removes access for every agent using it").
func (e *Emulator) deleteKey(p *provider) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		e.mu.Lock()
		k := e.findKeyLocked(p, id)
		var info any
		if k != nil {
			e.keys[p.name] = slices.DeleteFunc(e.keys[p.name], func(x *apiKey) bool { return x == k })
			t := now()
			for _, a := range e.agents {
				if ref := a.keyRef(p); *ref == id {
					*ref = ""
					a.updatedAt = stampAfter(a.updatedAt)
				}
			}
			info = p.info(k, ts(t))
		}
		e.mu.Unlock()
		if k == nil {
			writePlatformError(w, http.StatusNotFound, "not_found", msgNotFound)
			return
		}
		writeJSON(w, http.StatusOK, keyInfoBody{info})
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
		e.mu.Lock()
		if e.findKeyLocked(p, id) == nil {
			e.mu.Unlock()
			writePlatformError(w, http.StatusNotFound, "not_found", msgNotFound)
			return
		}
		var using []*agent
		for _, a := range e.agents {
			if *a.keyRef(p) == id {
				using = append(using, a)
			}
		}
		body := e.agentPageLocked(r, using, pr)
		e.mu.Unlock()
		writeJSON(w, http.StatusOK, body)
	}
}
