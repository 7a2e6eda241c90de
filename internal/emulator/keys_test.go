package emulator_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestKeyLifecycle(t *testing.T) {
	for name, p := range bothProviders {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			c := e.client(t)
			ctx := context.Background()

			secret := p.secret()
			created, _, err := p.create(ctx, c, "prod-key", secret)
			mustOK(t, err)
			if !uuidV4.MatchString(created.UUID) {
				t.Errorf("uuid %q is not a v4 UUID", created.UUID)
			}
			if created.Name != "prod-key" || created.CreatedBy != "1234567" || created.DeletedAt != nil {
				t.Errorf("created = %+v", created)
			}
			if created.CreatedAt == nil || !created.CreatedAt.Equal(*created.UpdatedAt) || time.Since(created.CreatedAt.Time) > time.Minute {
				t.Errorf("created_at %v, updated_at %v: want equal and recent", created.CreatedAt, created.UpdatedAt)
			}
			if p.name == "openai" && (len(created.Models) == 0 || created.Models[0].Name != "gpt-4o" || created.Models[0].Uuid == "") {
				t.Errorf("OpenAI key models = %+v, want gpt-4o", created.Models)
			}
			if ks := p.state(e.emu.State()); len(ks) != 1 || ks[0].Secret != secret || ks[0].UUID != created.UUID {
				t.Fatalf("state keys = %+v", ks)
			}

			got, _, err := p.get(ctx, c, created.UUID)
			mustOK(t, err)
			if got.UUID != created.UUID || got.Name != "prod-key" || !got.UpdatedAt.Equal(*created.UpdatedAt) {
				t.Errorf("get = %+v, want %+v", got, created)
			}

			list, resp, err := p.list(ctx, c, nil)
			mustOK(t, err)
			if len(list) != 1 || list[0].UUID != created.UUID || resp.Meta.Total != 1 || resp.Links == nil || !resp.Links.IsLastPage() {
				t.Errorf("list = %+v, meta %+v, links %+v", list, resp.Meta, resp.Links)
			}

			// Rename only: uuid and secret stay, updated_at moves.
			renamed, _, err := p.update(ctx, c, created.UUID, "prod-key-2", "")
			mustOK(t, err)
			if renamed.UUID != created.UUID || renamed.Name != "prod-key-2" || !renamed.UpdatedAt.After(created.UpdatedAt.Time) || !renamed.CreatedAt.Equal(*created.CreatedAt) {
				t.Errorf("renamed = %+v (created %+v)", renamed, created)
			}
			if ks := p.state(e.emu.State()); ks[0].Secret != secret {
				t.Errorf("rename changed the secret")
			}

			// Rotate the secret in place.
			rotated := p.secret()
			after, _, err := p.update(ctx, c, created.UUID, "", rotated)
			mustOK(t, err)
			if after.UUID != created.UUID || after.Name != "prod-key-2" || !after.UpdatedAt.After(renamed.UpdatedAt.Time) {
				t.Errorf("rotated = %+v", after)
			}
			if ks := p.state(e.emu.State()); ks[0].Secret != rotated {
				t.Errorf("secret not rotated: %+v", ks[0])
			}

			// Sending what is already there is not a change.
			same, _, err := p.update(ctx, c, created.UUID, "prod-key-2", rotated)
			mustOK(t, err)
			if !same.UpdatedAt.Equal(*after.UpdatedAt) {
				t.Errorf("no-op update moved updated_at from %v to %v", after.UpdatedAt, same.UpdatedAt)
			}

			// A rotation to a key the provider rejects changes nothing.
			_, _, err = p.update(ctx, c, created.UUID, "", "sk-nope")
			apiError(t, err, http.StatusBadRequest)
			if ks := p.state(e.emu.State()); ks[0].Secret != rotated {
				t.Errorf("failed rotation changed the secret")
			}

			deleted, _, err := p.delete(ctx, c, created.UUID)
			mustOK(t, err)
			if deleted.UUID != created.UUID || deleted.Name != "prod-key-2" || deleted.DeletedAt == nil || time.Since(deleted.DeletedAt.Time) > time.Minute {
				t.Errorf("deleted = %+v", deleted)
			}
			if ks := p.state(e.emu.State()); len(ks) != 0 {
				t.Errorf("key still stored after delete: %+v", ks)
			}
			for _, op := range map[string]func() error{
				"get":    func() error { _, _, err := p.get(ctx, c, created.UUID); return err },
				"update": func() error { _, _, err := p.update(ctx, c, created.UUID, "x", ""); return err },
				"delete": func() error { _, _, err := p.delete(ctx, c, created.UUID); return err },
				"agents": func() error { _, _, err := p.agents(ctx, c, created.UUID, nil); return err },
			} {
				apiError(t, op(), http.StatusNotFound)
			}
		})
	}
}

// A uuid of one provider is unknown to the other.
func TestKeyUUIDIsScopedToProvider(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	ctx := context.Background()
	id, _ := e.createKey(t, anthropicProvider, "a")
	_, _, err := openAIProvider.get(ctx, e.client(t), id)
	apiError(t, err, http.StatusNotFound)
	_, _, err = openAIProvider.delete(ctx, e.client(t), id)
	apiError(t, err, http.StatusNotFound)
	if len(e.emu.State().AnthropicKeys) != 1 {
		t.Error("delete through the wrong provider removed the key")
	}
}

func TestDuplicateNamesAllowed(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	a, _ := e.createKey(t, anthropicProvider, "same")
	b, _ := e.createKey(t, anthropicProvider, "same")
	if a == b || len(e.emu.State().AnthropicKeys) != 2 {
		t.Errorf("want two keys named alike, got %+v", e.emu.State().AnthropicKeys)
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	revokedAnthropic, revokedOpenAI := anthropicKey(), openAIKey()
	e.emu.Revoke(revokedAnthropic)
	e.emu.Revoke(revokedOpenAI)

	tests := map[string]struct {
		provider string
		body     any
		message  string
	}{
		"missing name":            {"anthropic", map[string]string{"api_key": anthropicKey()}, "name is required"},
		"missing api_key":         {"openai", map[string]string{"name": "n"}, "api_key is required"},
		"empty body":              {"openai", "", "name is required"},
		"not JSON":                {"anthropic", "{", "request body is not valid JSON"},
		"anthropic admin key":     {"anthropic", map[string]string{"name": "n", "api_key": "sk-ant-admin01-abcdefghijklmnopqrstuv"}, "api key verification failed"},
		"anthropic short key":     {"anthropic", map[string]string{"name": "n", "api_key": "sk-ant-api03-short"}, "api key verification failed"},
		"openai key as anthropic": {"anthropic", map[string]string{"name": "n", "api_key": openAIKey()}, "api key verification failed"},
		"anthropic key as openai": {"openai", map[string]string{"name": "n", "api_key": anthropicKey()}, "api key verification failed"},
		"openai admin key":        {"openai", map[string]string{"name": "n", "api_key": "sk-admin-abcdefghijklmnopqrstuv"}, "api key verification failed"},
		"revoked anthropic":       {"anthropic", map[string]string{"name": "n", "api_key": revokedAnthropic}, "api key verification failed"},
		"revoked openai":          {"openai", map[string]string{"name": "n", "api_key": revokedOpenAI}, "api key verification failed"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.platform(t, http.MethodPost, "/v2/gen-ai/"+tc.provider+"/keys", tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status = %d, want 400: %s", r.status, r.body)
			}
			m := r.json(t)
			if m["id"] != "invalid_argument" || m["message"] != tc.message || m["request_id"] != r.header.Get("x-request-id") {
				t.Errorf("body = %s", r.body)
			}
			if b, ok := tc.body.(map[string]string); ok && b["api_key"] != "" && strings.Contains(string(r.body), b["api_key"]) {
				t.Errorf("error body echoes the key: %s", r.body)
			}
		})
	}
	if s := e.emu.State(); len(s.AnthropicKeys)+len(s.OpenAIKeys) != 0 {
		t.Errorf("failed creates stored keys: %+v", s)
	}
}

func TestUpdateValidation(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	id, secret := e.createKey(t, openAIProvider, "k")
	path := "/v2/gen-ai/openai/keys/" + id
	tests := map[string]struct {
		body    any
		status  int
		errID   string
		message string
	}{
		"uuid mismatch": {map[string]string{"api_key_uuid": "other", "name": "x"}, 400, "invalid_argument", "api_key_uuid does not match the key in the path"},
		"bad key":       {map[string]string{"api_key": "sk-admin-abcdefghijklmnopqrstuv"}, 400, "invalid_argument", "api key verification failed"},
		"not JSON":      {"[", 400, "invalid_argument", "request body is not valid JSON"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.platform(t, http.MethodPut, path, tc.body)
			m := r.json(t)
			if r.status != tc.status || m["id"] != tc.errID || m["message"] != tc.message {
				t.Errorf("got %d %s", r.status, r.body)
			}
		})
	}
	if k := e.emu.State().OpenAIKeys[0]; k.Name != "k" || k.Secret != secret {
		t.Errorf("rejected updates changed the key: %+v", k)
	}
	// An empty PUT is valid and changes nothing.
	if r := e.platform(t, http.MethodPut, path, nil); r.status != http.StatusOK {
		t.Errorf("empty PUT: %d %s", r.status, r.body)
	}
}

// The wire format: what godo cannot show, such as absent fields and the
// secret never leaving the platform.
func TestKeyWireFormat(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	secret := openAIKey()
	created := e.platform(t, http.MethodPost, "/v2/gen-ai/openai/keys", map[string]string{"name": "wire", "api_key": secret})
	if created.status != http.StatusOK {
		t.Fatalf("create: %d %s", created.status, created.body)
	}
	info := created.json(t)["api_key_info"].(map[string]any)
	id := info["uuid"].(string)
	if _, ok := info["deleted_at"]; ok {
		t.Errorf("deleted_at present on a live key: %v", info)
	}
	for _, f := range []string{"created_at", "updated_at"} {
		s, _ := info[f].(string)
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil || !strings.HasSuffix(s, "Z") || ts.Location() != time.UTC {
			t.Errorf("%s = %q: want RFC 3339 UTC (%v)", f, s, err)
		}
	}
	if ct := created.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}

	responses := []rawResponse{
		created,
		e.platform(t, http.MethodGet, "/v2/gen-ai/openai/keys", nil),
		e.platform(t, http.MethodGet, "/v2/gen-ai/openai/keys/"+id, nil),
		e.platform(t, http.MethodPut, "/v2/gen-ai/openai/keys/"+id, map[string]string{"name": "wire2"}),
		e.platform(t, http.MethodDelete, "/v2/gen-ai/openai/keys/"+id, nil),
	}
	for i, r := range responses {
		if r.status != http.StatusOK {
			t.Errorf("response %d: status %d", i, r.status)
		}
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"api_key"`) {
			t.Errorf("response %d carries the secret: %s", i, r.body)
		}
	}
	// A single page carries links with first, as the first of many does.
	list := responses[1].json(t)
	if links, _ := list["links"].(map[string]any); links == nil || len(links["pages"].(map[string]any)) != 1 || links["pages"].(map[string]any)["first"] == nil {
		t.Errorf("links on a single page: %s", responses[1].body)
	}
	if meta, _ := list["meta"].(map[string]any); meta["total"] != 1.0 {
		t.Errorf("meta = %v", list["meta"])
	}
	del := responses[4].json(t)["api_key_info"].(map[string]any)
	if _, err := time.Parse(time.RFC3339, del["deleted_at"].(string)); err != nil || del["uuid"] != id {
		t.Errorf("delete body = %s", responses[4].body)
	}

	// An empty list is [] rather than null.
	if r := e.platform(t, http.MethodGet, "/v2/gen-ai/anthropic/keys", nil); !strings.Contains(string(r.body), `"api_key_infos":[]`) {
		t.Errorf("empty list = %s", r.body)
	}
}

func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() {
			p := bothProviders[[]string{"anthropic", "openai"}[i%2]]
			_, _, err := p.create(context.Background(), c, "k", p.secret())
			errs <- err
		}()
	}
	for range n {
		mustOK(t, <-errs)
	}
	s := e.emu.State()
	seen := map[string]bool{}
	for _, k := range append(s.AnthropicKeys, s.OpenAIKeys...) {
		seen[k.UUID] = true
	}
	if len(s.AnthropicKeys) != n/2 || len(s.OpenAIKeys) != n/2 || len(seen) != n {
		t.Errorf("got %d anthropic, %d openai, %d distinct uuids", len(s.AnthropicKeys), len(s.OpenAIKeys), len(seen))
	}
}
