package emulator

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Provider names, as AddAdminKey and the control API take them. They match
// the platform's path segments (/v2/gen-ai/<name>/keys).
const (
	ProviderAnthropic = "anthropic"
	ProviderOpenAI    = "openai"
)

// Admin keys are not model keys: each provider tells them apart by prefix.
const (
	anthropicAdminPrefix = "sk-ant-admin"
	openAIAdminPrefix    = "sk-admin-"
)

// orgState is what the providers' Admin APIs manage: OpenAI projects and
// their service accounts, and the Anthropic keys of the organization. Reset
// replaces it with newOrgState(); admin keys live outside it, like tokens.
type orgState struct {
	projects        []*openAIProject  // in creation order
	serviceAccounts []*serviceAccount // in creation order; deleted ones stay, marked
	accountBySecret map[string]*serviceAccount
	anthropicKeys   []*anthropicOrgKey // in creation order
	anthropicBySec  map[string]*anthropicOrgKey
}

func newOrgState() orgState {
	return orgState{
		projects: []*openAIProject{{
			id: DefaultOpenAIProjectID, name: "Default project", createdAt: providerNow(),
		}},
		accountBySecret: map[string]*serviceAccount{},
		anthropicBySec:  map[string]*anthropicOrgKey{},
	}
}

// providerNow is the providers' clock. It is this machine's: the platform's
// clock skew (SetClockSkew) does not apply to Anthropic or OpenAI.
func providerNow() time.Time { return time.Now().UTC().Round(0) }

// retiredLocked reports whether the provider has switched secret off through
// its Admin API: an Anthropic key no longer "active", or the key of a
// deleted OpenAI service account. The caller holds e.mu.
func (e *Emulator) retiredLocked(p *provider, secret string) bool {
	switch p {
	case anthropic:
		k := e.org.anthropicBySec[secret]
		return k != nil && k.status != anthropicStatusActive
	case openAI:
		a := e.org.accountBySecret[secret]
		return a != nil && a.deleted()
	}
	return false
}

// AddAdminKey makes provider (ProviderAnthropic or ProviderOpenAI) accept key
// on its Admin API. Like AddToken, admin keys survive Reset; Revoke(key)
// makes the provider refuse one (until Reset clears revocations). It panics
// on an unknown provider or a key without the provider's admin prefix
// (sk-ant-admin..., sk-admin-...): a broken test setup should fail loudly.
func (e *Emulator) AddAdminKey(provider, key string) {
	if err := e.addAdminKey(provider, key); err != nil {
		panic("emulator: AddAdminKey: " + err.Error())
	}
}

func (e *Emulator) addAdminKey(provider, key string) error {
	var prefix string
	switch provider {
	case ProviderAnthropic:
		prefix = anthropicAdminPrefix
	case ProviderOpenAI:
		prefix = openAIAdminPrefix
	default:
		return fmt.Errorf("provider %q is not %q or %q", provider, ProviderAnthropic, ProviderOpenAI)
	}
	if !strings.HasPrefix(key, prefix) || len(key) <= len(prefix) {
		return fmt.Errorf("a %s admin key starts with %q", provider, prefix)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.adminKeys[provider] == nil {
		e.adminKeys[provider] = map[string]bool{}
	}
	e.adminKeys[provider][key] = true
	return nil
}

// adminKeyWorksLocked reports whether the provider's Admin API accepts key.
func (e *Emulator) adminKeyWorksLocked(provider, key string) bool {
	return e.adminKeys[provider][key] && !e.revoked[key]
}

// ProviderState is a snapshot of what the providers' Admin APIs hold, for
// assertions in tests ("no service account leaked"). It is apart from State,
// which is the platform's, so a provider-side change (a key seen by a key
// check, say) never shows up as a platform change.
type ProviderState struct {
	OpenAIProjects        []OpenAIProjectState        `json:"openai_projects"`         // in creation order
	OpenAIServiceAccounts []OpenAIServiceAccountState `json:"openai_service_accounts"` // in creation order, deleted ones included
	AnthropicKeys         []AnthropicKeyState         `json:"anthropic_keys"`          // in creation order
}

// OpenAIProjectState is one OpenAI project; ArchivedAt is zero while it is
// active.
type OpenAIProjectState struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	ArchivedAt time.Time `json:"archived_at,omitzero"`
}

// OpenAIServiceAccountState is one service account and the key minted with
// it. APIKey is the secret: OpenAI shows it once, on create; only the control
// API shows it again. A deleted account stays here with Deleted set, and its
// key no longer works.
type OpenAIServiceAccountState struct {
	ID        string    `json:"id"`
	ProjectID string    `json:"project_id"`
	Name      string    `json:"name"`
	KeyID     string    `json:"key_id"`
	APIKey    string    `json:"api_key"`
	CreatedAt time.Time `json:"created_at"`
	Deleted   bool      `json:"deleted"`
	DeletedAt time.Time `json:"deleted_at,omitzero"`
}

// AnthropicKeyState is one model key of the Anthropic organization, as its
// Admin API lists it, plus the secret (for tests only).
type AnthropicKeyState struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"`
	Secret         string    `json:"secret"`
	PartialKeyHint string    `json:"partial_key_hint"`
	Status         string    `json:"status"` // active, inactive or archived
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// ProviderState returns a copy of the providers' Admin API state.
func (e *Emulator) ProviderState() ProviderState {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ProviderState{
		OpenAIProjects:        []OpenAIProjectState{},
		OpenAIServiceAccounts: []OpenAIServiceAccountState{},
		AnthropicKeys:         []AnthropicKeyState{},
	}
	for _, p := range e.org.projects {
		s.OpenAIProjects = append(s.OpenAIProjects, OpenAIProjectState{ID: p.id, Name: p.name, CreatedAt: p.createdAt, ArchivedAt: p.archivedAt})
	}
	for _, a := range e.org.serviceAccounts {
		s.OpenAIServiceAccounts = append(s.OpenAIServiceAccounts, OpenAIServiceAccountState{
			ID: a.id, ProjectID: a.projectID, Name: a.name, KeyID: a.keyID, APIKey: a.secret,
			CreatedAt: a.createdAt, Deleted: a.deleted(), DeletedAt: a.deletedAt,
		})
	}
	for _, k := range e.org.anthropicKeys {
		s.AnthropicKeys = append(s.AnthropicKeys, AnthropicKeyState{
			ID: k.id, Name: k.name, Secret: k.secret, PartialKeyHint: k.hint(), Status: k.status,
			CreatedAt: k.createdAt, UpdatedAt: k.updatedAt,
		})
	}
	return s
}

// failure writes a provider error once the lock is released.
type failure func(w http.ResponseWriter)

// answerProviderLocked runs fn under the emulator's lock and writes its
// answer, 200 with the body or fn's failure, after unlocking.
func (e *Emulator) answerProviderLocked(w http.ResponseWriter, fn func() (any, failure)) {
	e.mu.Lock()
	body, fail := fn()
	e.mu.Unlock()
	if fail != nil {
		fail(w)
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// cursorPage returns up to limit items of all that keep accepts, taken after
// the item whose id is after, or (when before is set) just before the item
// whose id is before; more says whether further kept items lie that way.
// The cursor is looked up among all items, kept or not, so a cursor whose
// item has since been filtered out (a deleted account, a key whose status
// changed) still pages on. An unknown cursor is reported with ok false.
func cursorPage[T any](all []T, id func(T) string, keep func(T) bool, after, before string, limit int) (page []T, more, ok bool) {
	cursor := func(c string) int {
		for i, it := range all {
			if id(it) == c {
				return i
			}
		}
		return -1
	}
	if before != "" {
		end := cursor(before)
		if end < 0 {
			return nil, false, false
		}
		for i := end - 1; i >= 0; i-- {
			if !keep(all[i]) {
				continue
			}
			if len(page) == limit {
				more = true
				break
			}
			page = append(page, all[i])
		}
		for i, j := 0, len(page)-1; i < j; i, j = i+1, j-1 {
			page[i], page[j] = page[j], page[i]
		}
		return page, more, true
	}
	start := 0
	if after != "" {
		i := cursor(after)
		if i < 0 {
			return nil, false, false
		}
		start = i + 1
	}
	for _, it := range all[start:] {
		if !keep(it) {
			continue
		}
		if len(page) == limit {
			more = true
			break
		}
		page = append(page, it)
	}
	return page, more, true
}

// firstLast are the first_id and last_id of a page: null when it is empty.
func firstLast[T any](page []T, id func(T) string) (first, last *string) {
	if len(page) == 0 {
		return nil, nil
	}
	return ptr(id(page[0])), ptr(id(page[len(page)-1]))
}

// parseLimit reads the limit query parameter: def when absent, an error
// message when it is not an integer in [1, max].
func parseLimit(r *http.Request, def, maxLimit int) (int, string) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return def, ""
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxLimit {
		return 0, fmt.Sprintf("limit must be an integer between 1 and %d", maxLimit)
	}
	return n, ""
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomID returns prefix and n random letters and digits, the shape of the
// providers' object ids (apikey_01Rj2N8S..., svc_acct_..., proj_...).
func randomID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	for i := range b {
		b[i] = base62[int(b[i])%len(base62)]
	}
	return prefix + string(b)
}

// addProviderAdminRoutes lists the Admin API endpoints of both providers.
func (e *Emulator) addProviderAdminRoutes(rt *router) {
	projects := openAIPrefix + "/v1/organization/projects"
	accounts := projects + "/{project_id}/service_accounts"
	rt.add(http.MethodGet, projects, e.openAIAdmin(e.listProjectsLocked))
	rt.add(http.MethodGet, projects+"/{project_id}", e.openAIAdmin(e.getProjectLocked))
	rt.add(http.MethodGet, accounts, e.openAIAdmin(e.listServiceAccountsLocked))
	rt.add(http.MethodPost, accounts, e.openAIAdmin(e.createServiceAccountLocked))
	rt.add(http.MethodGet, accounts+"/{service_account_id}", e.openAIAdmin(e.getServiceAccountLocked))
	rt.add(http.MethodDelete, accounts+"/{service_account_id}", e.openAIAdmin(e.deleteServiceAccountLocked))

	keys := anthropicPrefix + "/v1/organizations/api_keys"
	rt.add(http.MethodGet, keys, e.anthropicAdmin(e.listAnthropicKeysLocked))
	rt.add(http.MethodGet, keys+"/{api_key_id}", e.anthropicAdmin(e.getAnthropicKeyLocked))
	rt.add(http.MethodPost, keys+"/{api_key_id}", e.anthropicAdmin(e.updateAnthropicKeyLocked))
}
