package emulator_test

import (
	"context"
	"fmt"
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

			tests := []struct {
				page, items int
				pages       godo.Pages
			}{
				{1, 20, godo.Pages{Next: pageURL(2), Last: pageURL(3)}},
				{2, 20, godo.Pages{First: pageURL(1), Prev: pageURL(1), Next: pageURL(3), Last: pageURL(3)}},
				{3, 5, godo.Pages{First: pageURL(1), Prev: pageURL(2)}},
			}
			var got []string
			for _, tc := range tests {
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
				if *resp.Links.Pages != tc.pages {
					t.Errorf("page %d: links %+v, want %+v", tc.page, *resp.Links.Pages, tc.pages)
				}
				if cur, err := resp.Links.CurrentPage(); err != nil || cur != tc.page {
					t.Errorf("page %d: CurrentPage = %d, %v", tc.page, cur, err)
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

			// The usual godo loop, default page size, follows the links to the end.
			var walked []string
			opt := &godo.ListOptions{Page: 1}
			for {
				keys, resp, err := p.list(ctx, c, opt)
				mustOK(t, err)
				for _, k := range keys {
					walked = append(walked, k.UUID)
				}
				if resp.Links == nil || resp.Links.IsLastPage() {
					break
				}
				cur, err := resp.Links.CurrentPage()
				mustOK(t, err)
				opt.Page = cur + 1
			}
			if !slices.Equal(walked, want) {
				t.Errorf("godo loop listed %d keys, want %d in order", len(walked), len(want))
			}
		})
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
		"defaults":         {"", 200, 5, false, 1},
		"clamped per_page": {"?per_page=1000", 200, 5, false, 1},
		"two per page":     {"?per_page=2&page=2", 200, 2, true, 2},
		"past the end":     {"?per_page=2&page=9", 200, 0, true, 9},
		"single page, p2":  {"?page=2", 200, 0, false, 2},
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
