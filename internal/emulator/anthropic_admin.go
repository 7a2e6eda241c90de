package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"time"
)

const (
	anthropicStatusActive   = "active"
	anthropicStatusInactive = "inactive"
	anthropicStatusArchived = "archived"
	anthropicStatusExpired  = "expired" // a list filter only: emulated keys never expire

	anthropicDefaultLimit = 20
	anthropicMaxLimit     = 1000
	anthropicMaxName      = 500

	// anthropicUserID is the user every emulated key was created by.
	anthropicUserID = "user_01EmulatorUser0000000000"

	// msgAnthropicNotAdmin is what a working model key gets on an Admin API
	// endpoint (the 403 and its text are assumed; see doc.go).
	msgAnthropicNotAdmin = "The Admin API requires an admin key (sk-ant-admin...); this API key cannot use it."
)

// anthropicOrgKey is a model key of the Anthropic organization, as the
// Admin API knows it. Only "active" keys pass the key check.
type anthropicOrgKey struct {
	id, name, secret, status string
	createdAt, updatedAt     time.Time
}

// partialKeyHint is what Anthropic shows of a key: the "sk-ant-api03-"
// prefix and the next three characters, "...", then the last four (inferred
// from the documented example "sk-ant-api03-R2D...igAA"). Two keys can share
// one. The secret has the model-key format, so it is long enough.
func partialKeyHint(secret string) string {
	const shown = len("sk-ant-api03-") + 3
	return secret[:shown] + "..." + secret[len(secret)-4:]
}

func (k *anthropicOrgKey) hint() string { return partialKeyHint(k.secret) }

type anthropicActor struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// anthropicKeyObject is the Admin API's api_key object. Emulated keys live
// in the organization's default workspace (workspace_id null) and never
// expire (expires_at null).
type anthropicKeyObject struct {
	Type           string         `json:"type"`
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	Status         string         `json:"status"`
	PartialKeyHint string         `json:"partial_key_hint"`
	CreatedAt      string         `json:"created_at"`
	CreatedBy      anthropicActor `json:"created_by"`
	WorkspaceID    *string        `json:"workspace_id"`
	ExpiresAt      *string        `json:"expires_at"`
}

func (k *anthropicOrgKey) object() anthropicKeyObject {
	return anthropicKeyObject{
		Type: "api_key", ID: k.id, Name: k.name, Status: k.status, PartialKeyHint: k.hint(),
		CreatedAt: k.createdAt.Format(time.RFC3339Nano),
		CreatedBy: anthropicActor{ID: anthropicUserID, Type: "user"},
	}
}

func anthropicKeyID(k *anthropicOrgKey) string { return k.id }

func anthropicFail(status int, message string) failure {
	return func(w http.ResponseWriter) { anthropicErrors(w, nil, status, message) }
}

// anthropicAdmin wraps an Admin API handler, which runs under the lock, in
// the checks Anthropic makes first: the anthropic-version header (400), then
// the key: none or an unknown one is 401, a working model key 403.
func (e *Emulator) anthropicAdmin(h func(r *http.Request, id string) (any, failure)) handler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		if r.Header.Get("anthropic-version") == "" {
			anthropicErrors(w, r, http.StatusBadRequest, "anthropic-version: header is required")
			return
		}
		key := r.Header.Get("x-api-key")
		if key == "" {
			anthropicErrors(w, r, http.StatusUnauthorized, "x-api-key header is required")
			return
		}
		e.answerProviderLocked(w, func() (any, failure) {
			switch {
			case e.adminKeyWorksLocked(ProviderAnthropic, key):
				return h(r, id)
			case e.keyUsableLocked(anthropic, key):
				return nil, anthropicFail(http.StatusForbidden, msgAnthropicNotAdmin)
			default:
				return nil, anthropicFail(http.StatusUnauthorized, "invalid x-api-key")
			}
		})
	}
}

// registerAnthropicKeyLocked records that secret exists at Anthropic (it
// passed a key check, or a test added it) and returns its entry; a secret
// already known keeps its entry, name and status. name "" picks one.
func (e *Emulator) registerAnthropicKeyLocked(secret, name string) *anthropicOrgKey {
	if k := e.org.anthropicBySec[secret]; k != nil {
		return k
	}
	if name == "" {
		name = fmt.Sprintf("key-%d", len(e.org.anthropicKeys)+1)
	}
	now := providerNow()
	k := &anthropicOrgKey{
		id: randomID("apikey_01", 22), name: name, secret: secret,
		status: anthropicStatusActive, createdAt: now, updatedAt: now,
	}
	e.org.anthropicKeys = append(e.org.anthropicKeys, k)
	e.org.anthropicBySec[secret] = k
	return k
}

// AddAnthropicKey makes secret, an Anthropic model key (sk-ant-api03-...),
// exist at Anthropic as an active key named name ("" picks a name), as if a
// person had created it in the console, and returns its Admin API id. A
// secret already known returns its existing id and is left as it is. Keys
// also come to exist by passing a key check (see doc.go). It panics on a
// secret that is not a model key.
func (e *Emulator) AddAnthropicKey(secret, name string) string {
	id, err := e.addAnthropicKey(secret, name)
	if err != nil {
		panic("emulator: AddAnthropicKey: " + err.Error())
	}
	return id
}

func (e *Emulator) addAnthropicKey(secret, name string) (string, error) {
	if !validAnthropicKey(secret) {
		return "", fmt.Errorf("not an Anthropic model key (sk-ant-api03-...)")
	}
	if len(name) > anthropicMaxName {
		return "", fmt.Errorf("name is longer than %d characters", anthropicMaxName)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.registerAnthropicKeyLocked(secret, name).id, nil
}

func (e *Emulator) findAnthropicKeyLocked(id string) *anthropicOrgKey {
	for _, k := range e.org.anthropicKeys {
		if k.id == id {
			return k
		}
	}
	return nil
}

func anthropicKeyNotFound(id string) failure {
	return anthropicFail(http.StatusNotFound, fmt.Sprintf("API key %s not found", id))
}

// listAnthropicKeysLocked answers GET /v1/organizations/api_keys: newest
// first, paged by after_id or before_id, optionally filtered by status.
// workspace_id and created_by_user_id are accepted and ignored.
func (e *Emulator) listAnthropicKeysLocked(r *http.Request, _ string) (any, failure) {
	q := r.URL.Query()
	limit, msg := parseLimit(r, anthropicDefaultLimit, anthropicMaxLimit)
	if msg != "" {
		return nil, anthropicFail(http.StatusBadRequest, msg)
	}
	after, before, status := q.Get("after_id"), q.Get("before_id"), q.Get("status")
	if after != "" && before != "" {
		return nil, anthropicFail(http.StatusBadRequest, "after_id and before_id cannot both be given")
	}
	switch status {
	case "", anthropicStatusActive, anthropicStatusInactive, anthropicStatusArchived, anthropicStatusExpired:
	default:
		return nil, anthropicFail(http.StatusBadRequest, "status: Input should be 'active', 'inactive', 'archived' or 'expired'")
	}
	newestFirst := slices.Clone(e.org.anthropicKeys)
	slices.Reverse(newestFirst)
	keep := func(k *anthropicOrgKey) bool { return status == "" || k.status == status }
	page, more, ok := cursorPage(newestFirst, anthropicKeyID, keep, after, before, limit)
	if !ok {
		return nil, anthropicFail(http.StatusBadRequest, "after_id or before_id is not the id of an API key")
	}
	data := []anthropicKeyObject{}
	for _, k := range page {
		data = append(data, k.object())
	}
	first, last := firstLast(page, anthropicKeyID)
	return struct {
		Data    []anthropicKeyObject `json:"data"`
		HasMore bool                 `json:"has_more"`
		FirstID *string              `json:"first_id"`
		LastID  *string              `json:"last_id"`
	}{data, more, first, last}, nil
}

func (e *Emulator) getAnthropicKeyLocked(_ *http.Request, id string) (any, failure) {
	k := e.findAnthropicKeyLocked(id)
	if k == nil {
		return nil, anthropicKeyNotFound(id)
	}
	return k.object(), nil
}

// updateAnthropicKeyLocked answers POST /v1/organizations/api_keys/{id}
// with {"name"?, "status"?}. A key that is not active fails the key check;
// setting it active again restores it. Archiving is final.
func (e *Emulator) updateAnthropicKeyLocked(r *http.Request, id string) (any, failure) {
	k := e.findAnthropicKeyLocked(id)
	if k == nil {
		return nil, anthropicKeyNotFound(id)
	}
	var body struct {
		Name   *string `json:"name"`
		Status *string `json:"status"`
	}
	if err := decodeBody(r, &body); err != nil {
		return nil, anthropicFail(http.StatusBadRequest, "request body is not valid JSON")
	}
	if body.Name != nil && (*body.Name == "" || len(*body.Name) > anthropicMaxName) {
		return nil, anthropicFail(http.StatusBadRequest, fmt.Sprintf("name: must be 1 to %d characters", anthropicMaxName))
	}
	if body.Status != nil {
		switch *body.Status {
		case anthropicStatusActive, anthropicStatusInactive, anthropicStatusArchived:
		default:
			return nil, anthropicFail(http.StatusBadRequest, "status: Input should be 'active', 'inactive' or 'archived'")
		}
	}
	if k.status == anthropicStatusArchived && (body.Name != nil || body.Status != nil) {
		return nil, anthropicFail(http.StatusBadRequest, "an archived API key cannot be updated")
	}
	changed := false
	if body.Name != nil && *body.Name != k.name {
		k.name, changed = *body.Name, true
	}
	if body.Status != nil && *body.Status != k.status {
		k.status, changed = *body.Status, true
	}
	if changed {
		k.updatedAt = providerNow()
	}
	return k.object(), nil
}
