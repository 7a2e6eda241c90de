package emulator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// The shapes OpenAI's Admin API answers with, decoded strictly enough that a
// missing or renamed field fails the test.
type openAIListBody[T any] struct {
	Object  string  `json:"object"`
	Data    []T     `json:"data"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
	HasMore bool    `json:"has_more"`
}

type openAIProjectBody struct {
	Object     string `json:"object"`
	ID         string `json:"id"`
	Name       string `json:"name"`
	CreatedAt  int64  `json:"created_at"`
	ArchivedAt *int64 `json:"archived_at"`
	Status     string `json:"status"`
}

type serviceAccountBody struct {
	Object    string `json:"object"`
	ID        string `json:"id"`
	Name      string `json:"name"`
	Role      string `json:"role"`
	CreatedAt int64  `json:"created_at"`
	APIKey    *struct {
		Object    string `json:"object"`
		Value     string `json:"value"`
		Name      string `json:"name"`
		CreatedAt int64  `json:"created_at"`
		ID        string `json:"id"`
	} `json:"api_key"`
}

func decode[T any](t *testing.T, r rawResponse) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}

var (
	svcacctKeyFormat = regexp.MustCompile(`^sk-svcacct-[A-Za-z0-9]{64}$`)
	svcacctIDFormat  = regexp.MustCompile(`^svc_acct_[A-Za-z0-9]{24}$`)
	keyIDFormat      = regexp.MustCompile(`^key_[A-Za-z0-9]{24}$`)
)

const accountsPath = "/projects/" + emulator.DefaultOpenAIProjectID + "/service_accounts"

// mint creates a service account in the default project and returns it.
func (e *env) mint(t *testing.T, name string) serviceAccountBody {
	t.Helper()
	r := e.openAIAdmin(t, "POST", accountsPath, map[string]string{"name": name})
	if r.status != 200 {
		t.Fatalf("mint: %d %s", r.status, r.body)
	}
	return decode[serviceAccountBody](t, r)
}

func TestOpenAIServiceAccountMintAndDelete(t *testing.T) {
	e := newAdminEnv(t)
	ctx := context.Background()

	// The cheap read that proves an admin key works.
	r := e.openAIAdmin(t, "GET", "/projects?limit=1", nil)
	projects := decode[openAIListBody[openAIProjectBody]](t, r)
	if r.status != 200 || projects.Object != "list" || len(projects.Data) != 1 || projects.HasMore ||
		projects.FirstID == nil || *projects.FirstID != emulator.DefaultOpenAIProjectID || *projects.LastID != emulator.DefaultOpenAIProjectID {
		t.Fatalf("projects: %d %s", r.status, r.body)
	}
	if p := projects.Data[0]; p.Object != "organization.project" || p.ID != emulator.DefaultOpenAIProjectID || p.Status != "active" || p.ArchivedAt != nil || p.CreatedAt == 0 {
		t.Errorf("project %+v", p)
	}

	before := time.Now().Unix()
	a := e.mint(t, "gradient-prod-v1")
	k := a.APIKey
	switch {
	case a.Object != "organization.project.service_account" || !svcacctIDFormat.MatchString(a.ID) || a.Name != "gradient-prod-v1" || a.Role != "member":
		t.Errorf("account %+v", a)
	case a.CreatedAt < before-1 || a.CreatedAt > time.Now().Unix()+1:
		t.Errorf("created_at %d is not now", a.CreatedAt)
	case k == nil || k.Object != "organization.project.service_account.api_key" || k.Name != "Secret Key" || !keyIDFormat.MatchString(k.ID) || k.CreatedAt != a.CreatedAt:
		t.Fatalf("api_key %+v", k)
	case !svcacctKeyFormat.MatchString(k.Value):
		t.Fatalf("minted key %q is not sk-svcacct-<random>", k.Value)
	}

	// The minted key is a working model key, at OpenAI and on the platform.
	if s := e.openAIKeyCheck(t, k.Value); s != 200 {
		t.Fatalf("minted key fails verification: %d", s)
	}
	_, _, err := openAIProvider.create(ctx, e.client(t), "minted", k.Value)
	mustOK(t, err)

	// Reads never show the key again.
	r = e.openAIAdmin(t, "GET", accountsPath, nil)
	list := decode[openAIListBody[serviceAccountBody]](t, r)
	if r.status != 200 || len(list.Data) != 1 || list.Data[0].ID != a.ID || list.Data[0].APIKey != nil || strings.Contains(string(r.body), k.Value) {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	r = e.openAIAdmin(t, "GET", accountsPath+"/"+a.ID, nil)
	if got := decode[serviceAccountBody](t, r); r.status != 200 || got.ID != a.ID || got.Name != a.Name || got.APIKey != nil {
		t.Errorf("get: %d %s", r.status, r.body)
	}
	want := emulator.OpenAIServiceAccountState{ID: a.ID, ProjectID: emulator.DefaultOpenAIProjectID, Name: a.Name, KeyID: k.ID, APIKey: k.Value}
	if s := e.emu.ProviderState().OpenAIServiceAccounts; len(s) != 1 || !sameAccount(s[0], want) || s[0].Deleted {
		t.Fatalf("provider state %+v", s)
	}

	r = e.openAIAdmin(t, "DELETE", accountsPath+"/"+a.ID, nil)
	if m := r.json(t); r.status != 200 || m["object"] != "organization.project.service_account.deleted" || m["id"] != a.ID || m["deleted"] != true || len(m) != 3 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}

	// Deleting the account retired its key everywhere.
	if s := e.openAIKeyCheck(t, k.Value); s != 401 {
		t.Errorf("deleted account's key: %d, want 401", s)
	}
	r = e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+k.Value)
	if code := r.json(t)["error"].(map[string]any)["code"]; code != "invalid_api_key" {
		t.Errorf("deleted key: %s", r.body)
	}
	_, _, err = openAIProvider.create(ctx, e.client(t), "retired", k.Value)
	apiError(t, err, http.StatusBadRequest)
	if s := e.emu.ProviderState().OpenAIServiceAccounts; len(s) != 1 || !s[0].Deleted || s[0].DeletedAt.IsZero() || s[0].APIKey != k.Value {
		t.Errorf("provider state after delete %+v", s)
	}
	for _, method := range []string{"DELETE", "GET"} {
		if r := e.openAIAdmin(t, method, accountsPath+"/"+a.ID, nil); r.status != 404 {
			t.Errorf("%s after delete: %d %s", method, r.status, r.body)
		}
	}
	r = e.openAIAdmin(t, "GET", accountsPath, nil)
	if list := decode[openAIListBody[serviceAccountBody]](t, r); len(list.Data) != 0 || list.FirstID != nil || list.LastID != nil || list.HasMore {
		t.Errorf("list after delete: %s", r.body)
	}

	// Every mint is a new account and a new key.
	b := e.mint(t, "gradient-prod-v1")
	if b.ID == a.ID || b.APIKey.Value == k.Value || b.APIKey.ID == k.ID {
		t.Errorf("second mint repeats the first: %+v", b)
	}
}

func sameAccount(got, want emulator.OpenAIServiceAccountState) bool {
	got.CreatedAt, got.DeletedAt, got.Deleted = time.Time{}, time.Time{}, false
	return got == want
}

func TestOpenAIAdminRefusesOtherKeys(t *testing.T) {
	e := newAdminEnv(t)
	live := e.mint(t, "live")
	dead := e.mint(t, "dead")
	e.openAIAdmin(t, "DELETE", accountsPath+"/"+dead.ID, nil)
	revokedAdmin := "sk-admin-revoked00000000000000000000"
	e.emu.AddAdminKey(emulator.ProviderOpenAI, revokedAdmin)
	e.emu.Revoke(revokedAdmin)
	unknownAdmin := "sk-admin-unknown00000000000000000000"

	keys := map[string]struct {
		auth   string
		status int
		code   any
	}{
		"no key":              {"", 401, nil},
		"unknown admin key":   {"Bearer " + unknownAdmin, 401, "invalid_api_key"},
		"revoked admin key":   {"Bearer " + revokedAdmin, 401, "invalid_api_key"},
		"anthropic admin key": {"Bearer " + anthropicAdminKey, 401, "invalid_api_key"},
		"project key":         {"Bearer " + openAIKey(), 403, nil},
		"minted key":          {"Bearer " + live.APIKey.Value, 403, nil},
		"retired minted key":  {"Bearer " + dead.APIKey.Value, 401, "invalid_api_key"},
		"malformed":           {"Bearer nonsense", 401, "invalid_api_key"},
	}
	endpoints := map[string]struct {
		method, path string
		body         any
	}{
		"list projects": {"GET", "/projects?limit=1", nil},
		"list accounts": {"GET", accountsPath, nil},
		"create":        {"POST", accountsPath, map[string]string{"name": "refused"}},
		"delete":        {"DELETE", accountsPath + "/" + live.ID, nil},
	}
	before := e.emu.ProviderState()
	for kname, k := range keys {
		for ename, ep := range endpoints {
			t.Run(kname+"/"+ename, func(t *testing.T) {
				var headers []string
				if k.auth != "" {
					headers = []string{"Authorization", k.auth}
				}
				r := e.do(t, ep.method, "/openai/v1/organization"+ep.path, ep.body, headers...)
				if r.status != k.status {
					t.Fatalf("status %d, want %d: %s", r.status, k.status, r.body)
				}
				d := r.json(t)["error"].(map[string]any)
				if d["type"] != "invalid_request_error" || d["code"] != k.code || d["message"] == "" {
					t.Errorf("body %s", r.body)
				}
				if p, ok := d["param"]; !ok || p != nil {
					t.Errorf("param should be present and null: %s", r.body)
				}
				if secret := strings.TrimPrefix(k.auth, "Bearer "); len(secret) > 12 && strings.Contains(string(r.body), secret) {
					t.Errorf("full key echoed: %s", r.body)
				}
			})
		}
	}
	if after := e.emu.ProviderState(); len(after.OpenAIServiceAccounts) != len(before.OpenAIServiceAccounts) || after.OpenAIServiceAccounts[0].Deleted {
		t.Errorf("a refused request changed the accounts: %+v", after.OpenAIServiceAccounts)
	}
}

func TestOpenAIAdminNotFoundAndBadRequests(t *testing.T) {
	e := newAdminEnv(t)
	other := e.emu.AddOpenAIProject("proj_other", "Other")
	a := e.mint(t, "in-default")
	tests := map[string]struct {
		method, path string
		body         any
		status       int
		param        any
	}{
		"get unknown project":           {"GET", "/projects/proj_nope", nil, 404, nil},
		"create in unknown project":     {"POST", "/projects/proj_nope/service_accounts", map[string]string{"name": "x"}, 404, nil},
		"list unknown project":          {"GET", "/projects/proj_nope/service_accounts", nil, 404, nil},
		"get unknown account":           {"GET", accountsPath + "/svc_acct_nope", nil, 404, nil},
		"delete unknown account":        {"DELETE", accountsPath + "/svc_acct_nope", nil, 404, nil},
		"delete in unknown project":     {"DELETE", "/projects/proj_nope/service_accounts/" + a.ID, nil, 404, nil},
		"delete from the wrong project": {"DELETE", "/projects/" + other + "/service_accounts/" + a.ID, nil, 404, nil},
		"create without name":           {"POST", accountsPath, map[string]string{}, 400, "name"},
		"create with empty body":        {"POST", accountsPath, nil, 400, "name"},
		"create with bad json":          {"POST", accountsPath, "{", 400, nil},
		"limit zero":                    {"GET", "/projects?limit=0", nil, 400, "limit"},
		"limit too big":                 {"GET", "/projects?limit=101", nil, 400, "limit"},
		"limit not a number":            {"GET", accountsPath + "?limit=ten", nil, 400, "limit"},
		"unknown cursor":                {"GET", "/projects?after=proj_nope", nil, 400, "after"},
		"unknown path":                  {"GET", "/users", nil, 404, nil},
		"wrong method":                  {"PUT", accountsPath, nil, 405, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.openAIAdmin(t, tc.method, tc.path, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			d := r.json(t)["error"].(map[string]any)
			if d["type"] != "invalid_request_error" || d["message"] == "" {
				t.Errorf("body %s", r.body)
			}
			if p, ok := d["param"]; !ok || p != tc.param {
				t.Errorf("param = %v, want %v: %s", p, tc.param, r.body)
			}
			if _, ok := d["code"]; !ok {
				t.Errorf("no code: %s", r.body)
			}
		})
	}
	if s := e.emu.ProviderState().OpenAIServiceAccounts; len(s) != 1 || s[0].Deleted {
		t.Errorf("a refused request changed the accounts: %+v", s)
	}
	if s := e.openAIKeyCheck(t, a.APIKey.Value); s != 200 {
		t.Errorf("key of the untouched account: %d", s)
	}
}

func TestOpenAIAdminPaging(t *testing.T) {
	e := newAdminEnv(t)
	wantProjects := []string{emulator.DefaultOpenAIProjectID}
	for i := range 4 {
		wantProjects = append(wantProjects, e.emu.AddOpenAIProject(fmt.Sprintf("proj_p%d", i), ""))
	}
	var accounts []string
	for i := range 5 {
		accounts = append(accounts, e.mint(t, fmt.Sprintf("sa-%d", i)).ID)
	}
	// A deleted account leaves the list, but its id still works as a cursor.
	e.openAIAdmin(t, "DELETE", accountsPath+"/"+accounts[1], nil)

	pageAll := func(path string, limit int, after string) ([]string, []bool) {
		var ids []string
		var more []bool
		for range 10 {
			q := fmt.Sprintf("%s?limit=%d", path, limit)
			if after != "" {
				q += "&after=" + after
			}
			r := e.openAIAdmin(t, "GET", q, nil)
			page := decode[openAIListBody[struct {
				ID string `json:"id"`
			}]](t, r)
			if r.status != 200 || len(page.Data) == 0 || *page.FirstID != page.Data[0].ID || *page.LastID != page.Data[len(page.Data)-1].ID {
				t.Fatalf("%s: %d %s", q, r.status, r.body)
			}
			for _, d := range page.Data {
				ids = append(ids, d.ID)
			}
			more = append(more, page.HasMore)
			if !page.HasMore {
				return ids, more
			}
			after = *page.LastID
		}
		t.Fatal("paging never ends")
		return nil, nil
	}

	ids, more := pageAll("/projects", 2, "")
	if fmt.Sprint(ids) != fmt.Sprint(wantProjects) || fmt.Sprint(more) != "[true true false]" {
		t.Errorf("projects %v (has_more %v), want %v", ids, more, wantProjects)
	}
	ids, more = pageAll(accountsPath, 2, "")
	if want := []string{accounts[0], accounts[2], accounts[3], accounts[4]}; fmt.Sprint(ids) != fmt.Sprint(want) || fmt.Sprint(more) != "[true false]" {
		t.Errorf("accounts %v (has_more %v), want %v", ids, more, want)
	}
	if ids, _ := pageAll(accountsPath, 2, accounts[1]); fmt.Sprint(ids) != fmt.Sprint(accounts[2:]) {
		t.Errorf("after a deleted account: %v", ids)
	}
}

// An archived project still answers its GET, with status "archived", but
// creating or listing its service accounts is 400 "project is archived".
// Accounts made before stay: their keys work and they can be deleted.
func TestOpenAIArchivedProject(t *testing.T) {
	e := newAdminEnv(t)
	before := e.mint(t, "before-archive")
	e.emu.ArchiveOpenAIProject(emulator.DefaultOpenAIProjectID)

	r := e.openAIAdmin(t, "GET", "/projects/"+emulator.DefaultOpenAIProjectID, nil)
	p := decode[openAIProjectBody](t, r)
	if r.status != 200 || p.Status != "archived" || p.ArchivedAt == nil || *p.ArchivedAt < p.CreatedAt {
		t.Errorf("get archived project: %d %s", r.status, r.body)
	}
	for name, req := range map[string]struct {
		method string
		body   any
	}{"create": {"POST", map[string]string{"name": "x"}}, "list": {"GET", nil}} {
		r := e.openAIAdmin(t, req.method, accountsPath, req.body)
		var body struct {
			Error struct {
				Message, Type string
			}
		}
		if err := json.Unmarshal(r.body, &body); err != nil || r.status != 400 || body.Error.Message != "project is archived" || body.Error.Type != "invalid_request_error" {
			t.Errorf("%s in an archived project: %d %s", name, r.status, r.body)
		}
	}
	if n := len(e.emu.ProviderState().OpenAIServiceAccounts); n != 1 {
		t.Errorf("%d accounts after a refused create", n)
	}
	if r := e.do(t, "GET", "/openai/v1/models", nil, "Authorization", "Bearer "+before.APIKey.Value); r.status != 200 {
		t.Errorf("the key of an account made before archiving: %d", r.status)
	}
	if r := e.openAIAdmin(t, "DELETE", accountsPath+"/"+before.ID, nil); r.status != 200 {
		t.Errorf("delete in an archived project: %d %s", r.status, r.body)
	}
	if ps := e.emu.ProviderState().OpenAIProjects; len(ps) != 1 || ps[0].ArchivedAt.IsZero() {
		t.Errorf("provider state %+v", ps)
	}

	// The control API archives too; an unknown project is its 400.
	other := e.emu.AddOpenAIProject("proj_other", "Other")
	if r := e.do(t, "POST", "/_emulator/openai-projects/archive", `{"id":"`+other+`"}`); r.status != 204 {
		t.Fatalf("archive: %d %s", r.status, r.body)
	}
	if p := decode[openAIProjectBody](t, e.openAIAdmin(t, "GET", "/projects/"+other, nil)); p.Status != "archived" {
		t.Errorf("archived through the control API: %+v", p)
	}
	if r := e.do(t, "POST", "/_emulator/openai-projects/archive", `{"id":"proj_nope"}`); r.status != 400 {
		t.Errorf("archive of an unknown project: %d", r.status)
	}
	e.emu.Reset()
	if p := decode[openAIProjectBody](t, e.openAIAdmin(t, "GET", "/projects/"+emulator.DefaultOpenAIProjectID, nil)); p.Status != "active" || p.ArchivedAt != nil {
		t.Errorf("after Reset: %+v", p)
	}
}
