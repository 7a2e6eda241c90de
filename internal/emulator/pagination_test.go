package emulator_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/digitalocean/godo"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestPaginationAcrossThreePages(t *testing.T) {
	for name, p := range bothProviders {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, emulator.Config{})
			c := e.client(t)
			ctx := context.Background()
			var want []string
			for i := range 45 {
				id, _ := e.createKey(t, p, fmt.Sprintf("key-%02d", i))
				want = append(want, id)
			}
			base := e.srv.URL + "/v2/gen-ai/" + p.name + "/keys"
			pageURL := func(n int) string { return fmt.Sprintf("%s?page=%d&per_page=20", base, n) }

			// The reference's schema: first on every page, previous (not
			// godo's "prev") after the first, next and last before the last.
			tests := []struct {
				page, items int
				pages       map[string]any
			}{
				{1, 20, map[string]any{"first": pageURL(1), "next": pageURL(2), "last": pageURL(3)}},
				{2, 20, map[string]any{"first": pageURL(1), "previous": pageURL(1), "next": pageURL(3), "last": pageURL(3)}},
				{3, 5, map[string]any{"first": pageURL(1), "previous": pageURL(2)}},
			}
			var got []string
			for _, tc := range tests {
				raw := e.platform(t, http.MethodGet, fmt.Sprintf("/v2/gen-ai/%s/keys?page=%d&per_page=20", p.name, tc.page), nil)
				links, _ := raw.json(t)["links"].(map[string]any)
				if links == nil || !maps.Equal(links["pages"].(map[string]any), tc.pages) {
					t.Errorf("page %d: links %v, want pages %v", tc.page, links, tc.pages)
				}

				keys, resp, err := p.list(ctx, c, &godo.ListOptions{Page: tc.page, PerPage: 20})
				mustOK(t, err)
				if len(keys) != tc.items {
					t.Errorf("page %d: %d items, want %d", tc.page, len(keys), tc.items)
				}
				for _, k := range keys {
					got = append(got, k.UUID)
				}
				if resp.Links == nil || resp.Links.Pages == nil {
					t.Fatalf("page %d: no links", tc.page)
				}
				// godo reads "prev", which the platform does not send.
				if resp.Links.Pages.Prev != "" || resp.Links.Pages.First != pageURL(1) {
					t.Errorf("page %d: godo read %+v", tc.page, *resp.Links.Pages)
				}
				if last := resp.Links.IsLastPage(); last != (tc.page == 3) {
					t.Errorf("page %d: IsLastPage = %v", tc.page, last)
				}
				if *resp.Meta != (godo.Meta{Total: 45, Page: tc.page, Pages: 3}) {
					t.Errorf("page %d: meta %+v", tc.page, *resp.Meta)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("pages do not list the keys once each in creation order")
			}

			// Paging by the page asked for and next, default page size,
			// reaches the end; godo's CurrentPage would not (it reads prev).
			var walked []string
			opt := &godo.ListOptions{Page: 1}
			for {
				keys, resp, err := p.list(ctx, c, opt)
				mustOK(t, err)
				walked = append(walked, keyUUIDs(keys)...)
				if resp.Links == nil || resp.Links.IsLastPage() {
					break
				}
				opt.Page++
			}
			if !slices.Equal(walked, want) {
				t.Errorf("listed %d keys, want %d in order", len(walked), len(want))
			}
		})
	}
}

func keyUUIDs(keys []keyInfo) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.UUID)
	}
	return ids
}

// Links are on every page by default; OmitSinglePageLinks leaves them out
// when one page holds everything, as the reference's prose allows, and Reset
// brings them back. Both shapes are what clients must accept.
func TestPaginationSinglePageLinks(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.createKey(t, anthropicProvider, "k")
	hasLinks := func(path string) bool {
		t.Helper()
		r := e.platform(t, http.MethodGet, path, nil)
		_, ok := r.json(t)["links"]
		return ok
	}
	if !hasLinks("/v2/gen-ai/anthropic/keys") || !hasLinks("/v2/gen-ai/agents") {
		t.Errorf("single page without links by default")
	}
	if r := e.do(t, "POST", "/_emulator/list-links", `{"omit_single_page":true}`); r.status != 204 {
		t.Fatalf("list-links: %d %s", r.status, r.body)
	}
	if hasLinks("/v2/gen-ai/anthropic/keys") || hasLinks("/v2/gen-ai/agents") {
		t.Errorf("single page with links after omit_single_page")
	}
	e.createKey(t, anthropicProvider, "k2")
	if !hasLinks("/v2/gen-ai/anthropic/keys?per_page=1") {
		t.Errorf("a page of many without links")
	}
	e.emu.Reset()
	if !hasLinks("/v2/gen-ai/anthropic/keys") {
		t.Errorf("Reset kept omit_single_page")
	}
	if r := e.do(t, "POST", "/_emulator/list-links", `{"omit":true}`); r.status != 400 {
		t.Errorf("misspelt field accepted: %d", r.status)
	}
}

// A "short" fault drops the last item of a page and keeps meta, so the
// listing ends short of meta.total.
func TestPaginationShortFault(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	for range 3 {
		e.createKey(t, openAIProvider, "k")
	}
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Mode: "short"})
	r := e.platform(t, http.MethodGet, "/v2/gen-ai/openai/keys", nil)
	m := r.json(t)
	if r.status != 200 || len(m["api_key_infos"].([]any)) != 2 || m["meta"].(map[string]any)["total"] != 3.0 || m["links"] == nil ||
		r.header.Get("x-request-id") == "" || r.header.Get("ratelimit-remaining") == "" {
		t.Errorf("short page: %d %s, headers %v", r.status, r.body, r.header)
	}
	if r := e.platform(t, http.MethodGet, "/v2/gen-ai/openai/keys", nil); len(r.json(t)["api_key_infos"].([]any)) != 3 {
		t.Errorf("the fault outlived its count: %s", r.body)
	}
	// Not a listing: the answer passes unchanged.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys/", Mode: "short"})
	if r := e.platform(t, http.MethodGet, "/v2/gen-ai/openai/keys/00000000-0000-4000-8000-000000000000", nil); r.status != 404 || r.json(t)["id"] != "not_found" {
		t.Errorf("short on an error: %d %s", r.status, r.body)
	}
}

func TestPaginationParameters(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	for range 5 {
		e.createKey(t, anthropicProvider, "k")
	}
	tests := map[string]struct {
		query    string
		status   int
		items    int
		links    bool
		metaPage float64
	}{
		"defaults":         {"", 200, 5, true, 1},
		"clamped per_page": {"?per_page=1000", 200, 5, true, 1},
		"two per page":     {"?per_page=2&page=2", 200, 2, true, 2},
		"past the end":     {"?per_page=2&page=9", 200, 0, true, 9},
		"single page, p2":  {"?page=2", 200, 0, true, 2},
		"per_page zero":    {"?per_page=0", 400, 0, false, 0},
		"negative page":    {"?page=-1", 400, 0, false, 0},
		"non-numeric page": {"?page=two", 400, 0, false, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := e.platform(t, http.MethodGet, "/v2/gen-ai/anthropic/keys"+tc.query, nil)
			m := r.json(t)
			if r.status != tc.status {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if tc.status != 200 {
				if m["id"] != "invalid_argument" {
					t.Errorf("body %s", r.body)
				}
				return
			}
			if n := len(m["api_key_infos"].([]any)); n != tc.items {
				t.Errorf("%d items, want %d", n, tc.items)
			}
			if _, ok := m["links"]; ok != tc.links {
				t.Errorf("links present = %v, want %v: %s", ok, tc.links, r.body)
			}
			if meta := m["meta"].(map[string]any); meta["total"] != 5.0 || meta["page"] != tc.metaPage {
				t.Errorf("meta = %v", meta)
			}
		})
	}

	// Links keep the clamped page size and other query parameters.
	r := e.platform(t, http.MethodGet, "/v2/gen-ai/anthropic/keys?per_page=2&page=1&only_deployed=true", nil)
	next := r.json(t)["links"].(map[string]any)["pages"].(map[string]any)["next"].(string)
	u, err := url.Parse(next)
	mustOK(t, err)
	if u.Host != e.srv.Listener.Addr().String() || u.Query().Get("page") != "2" || u.Query().Get("per_page") != "2" || u.Query().Get("only_deployed") != "true" {
		t.Errorf("next = %s", next)
	}
}
