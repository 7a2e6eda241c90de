package emulator_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// anthropicKeyBody is the Admin API's api_key object.
type anthropicKeyBody struct {
	Type           string  `json:"type"`
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Status         string  `json:"status"`
	PartialKeyHint string  `json:"partial_key_hint"`
	CreatedAt      string  `json:"created_at"`
	WorkspaceID    *string `json:"workspace_id"`
	CreatedBy      struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	} `json:"created_by"`
}

type anthropicListBody struct {
	Data    []anthropicKeyBody `json:"data"`
	HasMore bool               `json:"has_more"`
	FirstID *string            `json:"first_id"`
	LastID  *string            `json:"last_id"`
}

var anthropicKeyIDFormat = regexp.MustCompile(`^apikey_01[A-Za-z0-9]{22}$`)

// listAnthropic lists keys with query q and decodes the page.
func (e *env) listAnthropic(t *testing.T, q string) anthropicListBody {
	t.Helper()
	r := e.anthropicAdmin(t, "GET", "/api_keys"+q, nil)
	if r.status != 200 {
		t.Fatalf("list%s: %d %s", q, r.status, r.body)
	}
	return decode[anthropicListBody](t, r)
}

func ids(keys []anthropicKeyBody) []string {
	out := []string{}
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

func TestAnthropicAdminListPaging(t *testing.T) {
	e := newAdminEnv(t)
	var added []string // oldest first
	for i := range 7 {
		added = append(added, e.emu.AddAnthropicKey(anthropicKey(), fmt.Sprintf("key-%d", i)))
	}
	newest := func(from, to int) []string { // added[from..to] newest first, inclusive
		var out []string
		for i := to; i >= from; i-- {
			out = append(out, added[i])
		}
		return out
	}

	// Three pages through after_id, newest first.
	pages := []struct {
		ids  []string
		more bool
	}{{newest(4, 6), true}, {newest(1, 3), true}, {newest(0, 0), false}}
	after := ""
	for i, want := range pages {
		q := "?limit=3"
		if after != "" {
			q += "&after_id=" + after
		}
		page := e.listAnthropic(t, q)
		if fmt.Sprint(ids(page.Data)) != fmt.Sprint(want.ids) || page.HasMore != want.more ||
			*page.FirstID != want.ids[0] || *page.LastID != want.ids[len(want.ids)-1] {
			t.Fatalf("page %d: %v has_more=%v, want %v %v", i+1, ids(page.Data), page.HasMore, want.ids, want.more)
		}
		after = *page.LastID
	}
	// And back with before_id.
	page := e.listAnthropic(t, "?limit=3&before_id="+added[0])
	if fmt.Sprint(ids(page.Data)) != fmt.Sprint(newest(1, 3)) || !page.HasMore {
		t.Errorf("before_id: %v has_more=%v", ids(page.Data), page.HasMore)
	}
	page = e.listAnthropic(t, "?before_id="+added[4])
	if fmt.Sprint(ids(page.Data)) != fmt.Sprint(newest(5, 6)) || page.HasMore {
		t.Errorf("before_id at the start: %v has_more=%v", ids(page.Data), page.HasMore)
	}
	page = e.listAnthropic(t, "?after_id="+added[0])
	if len(page.Data) != 0 || page.HasMore || page.FirstID != nil || page.LastID != nil {
		t.Errorf("after the last key: %+v", page)
	}

	// The object itself.
	k := e.listAnthropic(t, "?limit=1").Data[0]
	created, err := time.Parse(time.RFC3339, k.CreatedAt)
	switch {
	case err != nil || time.Since(created) > time.Minute:
		t.Errorf("created_at %q: %v", k.CreatedAt, err)
	case k.Type != "api_key" || !anthropicKeyIDFormat.MatchString(k.ID) || k.Name != "key-6" || k.Status != "active":
		t.Errorf("key %+v", k)
	case k.WorkspaceID != nil || k.CreatedBy.Type != "user" || !strings.HasPrefix(k.CreatedBy.ID, "user_"):
		t.Errorf("key %+v", k)
	}
	if s := e.emu.ProviderState().AnthropicKeys; len(s) != 7 || s[6].ID != k.ID || s[6].PartialKeyHint != k.PartialKeyHint {
		t.Errorf("provider state %+v", s)
	}

	// The default page is 20.
	for range 18 {
		e.emu.AddAnthropicKey(anthropicKey(), "")
	}
	if page := e.listAnthropic(t, ""); len(page.Data) != 20 || !page.HasMore {
		t.Errorf("default page: %d keys, has_more=%v", len(page.Data), page.HasMore)
	}
	if page := e.listAnthropic(t, "?limit=1000"); len(page.Data) != 25 || page.HasMore {
		t.Errorf("limit 1000: %d keys, has_more=%v", len(page.Data), page.HasMore)
	}
}

// Keys come to exist at Anthropic by passing a key check (the provider's,
// or the platform's "Verify and Save") or by AddAnthropicKey.
func TestAnthropicKeysComeToExist(t *testing.T) {
	e := newAdminEnv(t)
	checked, pushed, malformed, revoked := anthropicKey(), anthropicKey(), "sk-ant-api03-short", anthropicKey()
	e.emu.Revoke(revoked)

	for range 2 {
		if s := e.anthropicKeyCheck(t, checked); s != 200 {
			t.Fatalf("key check: %d", s)
		}
	}
	e.anthropicKeyCheck(t, malformed)
	e.anthropicKeyCheck(t, revoked)
	_, _, err := anthropicProvider.create(context.Background(), e.client(t), "pushed", pushed)
	mustOK(t, err)
	_, _, err = anthropicProvider.create(context.Background(), e.client(t), "refused", revoked)
	apiError(t, err, http.StatusBadRequest)
	named := e.emu.AddAnthropicKey(anthropicKey(), "from the console")
	if again := e.emu.AddAnthropicKey(checked, "renamed?"); again == named {
		t.Errorf("two secrets, one id")
	}

	s := e.emu.ProviderState().AnthropicKeys
	if len(s) != 3 || s[0].Secret != checked || s[1].Secret != pushed || s[2].ID != named || s[2].Name != "from the console" {
		t.Fatalf("keys at Anthropic: %+v", s)
	}
	if s[0].Name != "key-1" || s[0].Status != "active" {
		t.Errorf("a key seen by a check: %+v", s[0])
	}
	listed := e.listAnthropic(t, "")
	if fmt.Sprint(ids(listed.Data)) != fmt.Sprint([]string{s[2].ID, s[1].ID, s[0].ID}) {
		t.Errorf("listed %v", ids(listed.Data))
	}
	if strings.Contains(fmt.Sprint(listed), checked) {
		t.Error("the list shows a whole key")
	}
}

func TestAnthropicKeyStatus(t *testing.T) {
	e := newAdminEnv(t)
	secret := anthropicKey()
	id := e.emu.AddAnthropicKey(secret, "retiring")
	other := e.emu.AddAnthropicKey(anthropicKey(), "other")
	c := e.client(t)
	ctx := context.Background()
	update := func(body any) rawResponse {
		t.Helper()
		return e.anthropicAdmin(t, "POST", "/api_keys/"+id, body)
	}

	r := update(map[string]string{"status": "inactive"})
	k := decode[anthropicKeyBody](t, r)
	if r.status != 200 || k.ID != id || k.Status != "inactive" || k.Name != "retiring" || k.Type != "api_key" {
		t.Fatalf("set inactive: %d %s", r.status, r.body)
	}
	if s := e.anthropicKeyCheck(t, secret); s != 401 {
		t.Errorf("inactive key passes the key check: %d", s)
	}
	_, _, err := anthropicProvider.create(ctx, c, "inactive", secret)
	apiError(t, err, http.StatusBadRequest)
	if page := e.listAnthropic(t, "?status=inactive"); fmt.Sprint(ids(page.Data)) != fmt.Sprint([]string{id}) {
		t.Errorf("status=inactive lists %v", ids(page.Data))
	}
	if page := e.listAnthropic(t, "?status=active"); fmt.Sprint(ids(page.Data)) != fmt.Sprint([]string{other}) {
		t.Errorf("status=active lists %v", ids(page.Data))
	}
	if page := e.listAnthropic(t, "?status=expired"); len(page.Data) != 0 {
		t.Errorf("status=expired lists %v", ids(page.Data))
	}
	if r := e.anthropicAdmin(t, "GET", "/api_keys/"+id, nil); decode[anthropicKeyBody](t, r).Status != "inactive" {
		t.Errorf("get: %s", r.body)
	}

	// Active again, renamed, then archived for good.
	if r := update(map[string]string{"status": "active", "name": "back"}); r.status != 200 || decode[anthropicKeyBody](t, r).Name != "back" {
		t.Fatalf("reactivate: %d %s", r.status, r.body)
	}
	if s := e.anthropicKeyCheck(t, secret); s != 200 {
		t.Errorf("reactivated key: %d", s)
	}
	if r := update(map[string]string{}); r.status != 200 || decode[anthropicKeyBody](t, r).Status != "active" {
		t.Errorf("empty update: %d %s", r.status, r.body)
	}
	if r := update(map[string]string{"status": "archived"}); r.status != 200 {
		t.Fatalf("archive: %d %s", r.status, r.body)
	}
	if s := e.anthropicKeyCheck(t, secret); s != 401 {
		t.Errorf("archived key: %d", s)
	}
	if r := update(map[string]string{"status": "active"}); r.status != 400 {
		t.Errorf("reactivating an archived key: %d %s", r.status, r.body)
	}
	if s := e.emu.ProviderState().AnthropicKeys[0]; s.Status != "archived" || s.Name != "back" || s.UpdatedAt.Before(s.CreatedAt) {
		t.Errorf("provider state %+v", s)
	}
	// The other key never moved.
	if s := e.emu.ProviderState().AnthropicKeys[1]; s.Status != "active" {
		t.Errorf("other key %+v", s)
	}
}

// Two keys can share a hint; the list shows both, so a caller can see that
// a hint alone does not tell them apart.
func TestAnthropicHintCollision(t *testing.T) {
	e := newAdminEnv(t)
	a := "sk-ant-api03-R2D" + strings.Repeat("a", 40) + "igAA"
	b := "sk-ant-api03-R2D" + strings.Repeat("b", 40) + "igAA"
	c := "sk-ant-api03-R2E" + strings.Repeat("a", 40) + "igAA"
	idA, idB, idC := e.emu.AddAnthropicKey(a, "a"), e.emu.AddAnthropicKey(b, "b"), e.emu.AddAnthropicKey(c, "c")

	hints := map[string][]string{}
	for _, k := range e.listAnthropic(t, "").Data {
		hints[k.PartialKeyHint] = append(hints[k.PartialKeyHint], k.ID)
	}
	if got := hints["sk-ant-api03-R2D...igAA"]; len(got) != 2 || got[0] != idB || got[1] != idA {
		t.Errorf("colliding hint lists %v, want [%s %s] (all: %v)", got, idB, idA, hints)
	}
	if got := hints["sk-ant-api03-R2E...igAA"]; len(got) != 1 || got[0] != idC {
		t.Errorf("distinct hint lists %v", got)
	}
	// Only the key whose status changes stops working.
	e.anthropicAdmin(t, "POST", "/api_keys/"+idA, map[string]string{"status": "inactive"})
	if sa, sb := e.anthropicKeyCheck(t, a), e.anthropicKeyCheck(t, b); sa != 401 || sb != 200 {
		t.Errorf("after retiring a: a=%d b=%d", sa, sb)
	}
}

func TestAnthropicAdminRefusesOtherKeys(t *testing.T) {
	e := newAdminEnv(t)
	model := anthropicKey()
	id := e.emu.AddAnthropicKey(model, "target")
	inactive := anthropicKey()
	e.anthropicAdmin(t, "POST", "/api_keys/"+e.emu.AddAnthropicKey(inactive, ""), map[string]string{"status": "inactive"})
	revokedAdmin := "sk-ant-admin01-revoked0000000000000000"
	e.emu.AddAdminKey(emulator.ProviderAnthropic, revokedAdmin)
	e.emu.Revoke(revokedAdmin)

	keys := map[string]struct {
		headers   []string
		status    int
		errorType string
	}{
		"no version":          {[]string{"x-api-key", anthropicAdminKey}, 400, "invalid_request_error"},
		"no key":              {[]string{"anthropic-version", anthropicVersion}, 401, "authentication_error"},
		"unknown admin key":   {[]string{"x-api-key", "sk-ant-admin01-unknown00000000000000", "anthropic-version", anthropicVersion}, 401, "authentication_error"},
		"revoked admin key":   {[]string{"x-api-key", revokedAdmin, "anthropic-version", anthropicVersion}, 401, "authentication_error"},
		"openai admin key":    {[]string{"x-api-key", openAIAdminKey, "anthropic-version", anthropicVersion}, 401, "authentication_error"},
		"model key":           {[]string{"x-api-key", model, "anthropic-version", anthropicVersion}, 403, "permission_error"},
		"unseen model key":    {[]string{"x-api-key", anthropicKey(), "anthropic-version", anthropicVersion}, 403, "permission_error"},
		"inactive model key":  {[]string{"x-api-key", inactive, "anthropic-version", anthropicVersion}, 401, "authentication_error"},
		"admin key as bearer": {[]string{"Authorization", "Bearer " + anthropicAdminKey, "anthropic-version", anthropicVersion}, 401, "authentication_error"},
	}
	endpoints := map[string]struct {
		method, path string
		body         any
	}{
		"list":   {"GET", "/api_keys?limit=1", nil},
		"get":    {"GET", "/api_keys/" + id, nil},
		"update": {"POST", "/api_keys/" + id, map[string]string{"status": "inactive"}},
	}
	for kname, k := range keys {
		for ename, ep := range endpoints {
			t.Run(kname+"/"+ename, func(t *testing.T) {
				r := e.do(t, ep.method, "/anthropic/v1/organizations"+ep.path, ep.body, k.headers...)
				m := r.json(t)
				if r.status != k.status {
					t.Fatalf("status %d, want %d: %s", r.status, k.status, r.body)
				}
				d := m["error"].(map[string]any)
				if m["type"] != "error" || d["type"] != k.errorType || d["message"] == "" {
					t.Errorf("body %s", r.body)
				}
				if r.header.Get("request-id") == "" {
					t.Error("no request-id header")
				}
			})
		}
	}
	if s := e.anthropicKeyCheck(t, model); s != 200 {
		t.Errorf("a refused update changed the key: %d", s)
	}
}

func TestAnthropicAdminNotFoundAndBadRequests(t *testing.T) {
	e := newAdminEnv(t)
	id := e.emu.AddAnthropicKey(anthropicKey(), "target")
	tests := map[string]struct {
		method, path string
		body         any
		status       int
		errorType    string
	}{
		"get unknown":          {"GET", "/api_keys/apikey_01nope", nil, 404, "not_found_error"},
		"update unknown":       {"POST", "/api_keys/apikey_01nope", map[string]string{"status": "inactive"}, 404, "not_found_error"},
		"limit zero":           {"GET", "/api_keys?limit=0", nil, 400, "invalid_request_error"},
		"limit too big":        {"GET", "/api_keys?limit=1001", nil, 400, "invalid_request_error"},
		"limit not a number":   {"GET", "/api_keys?limit=all", nil, 400, "invalid_request_error"},
		"unknown after_id":     {"GET", "/api_keys?after_id=apikey_01nope", nil, 400, "invalid_request_error"},
		"after and before":     {"GET", "/api_keys?after_id=" + id + "&before_id=" + id, nil, 400, "invalid_request_error"},
		"unknown status":       {"GET", "/api_keys?status=revoked", nil, 400, "invalid_request_error"},
		"update bad status":    {"POST", "/api_keys/" + id, map[string]string{"status": "deleted"}, 400, "invalid_request_error"},
		"update empty name":    {"POST", "/api_keys/" + id, map[string]string{"name": ""}, 400, "invalid_request_error"},
		"update long name":     {"POST", "/api_keys/" + id, map[string]string{"name": strings.Repeat("n", 501)}, 400, "invalid_request_error"},
		"update bad json":      {"POST", "/api_keys/" + id, "{", 400, "invalid_request_error"},
		"delete is no route":   {"DELETE", "/api_keys/" + id, nil, 405, "invalid_request_error"},
		"create is no route":   {"POST", "/api_keys", map[string]string{"name": "new"}, 405, "invalid_request_error"},
		"unknown admin path":   {"GET", "/workspaces", nil, 404, "not_found_error"},
		"status update nested": {"POST", "/api_keys/" + id + "/status", nil, 404, "not_found_error"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.anthropicAdmin(t, tc.method, tc.path, tc.body)
			m := r.json(t)
			if r.status != tc.status || m["type"] != "error" || m["error"].(map[string]any)["type"] != tc.errorType {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}
	if s := e.emu.ProviderState().AnthropicKeys; len(s) != 1 || s[0].Status != "active" || s[0].Name != "target" {
		t.Errorf("a refused request changed the key: %+v", s)
	}
}
