package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pagedPlatform is an httptest platform that lists six keys (or six agents
// by key) two a page, whatever per_page asks, with the reference's links
// (first, previous, next, last) and a godo-spelt "prev" that lies: it names
// a page two ahead, so a client that derives the page from it (godo's
// CurrentPage) skips pages. It records the pages asked for.
type pagedPlatform struct {
	srv   *httptest.Server
	asked []int
	// endless links a next page from every page, the empty ones past the
	// end included.
	endless bool
}

func newPagedPlatform(t *testing.T) *pagedPlatform {
	t.Helper()
	f := &pagedPlatform{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

const pagedItems, pagedPerPage = 6, 2

func pagedUUID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func (f *pagedPlatform) serve(w http.ResponseWriter, r *http.Request) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	f.asked = append(f.asked, page)
	last := pagedItems / pagedPerPage
	at := func(p int) string {
		return fmt.Sprintf("%s%s?page=%d&per_page=%d", f.srv.URL, r.URL.Path, p, pagedPerPage)
	}
	pages := map[string]string{"first": at(1), "prev": at(page + 2)}
	if page > 1 {
		pages["previous"] = at(page - 1)
	}
	if page < last || f.endless {
		pages["next"], pages["last"] = at(page+1), at(last)
	}
	var items []any
	for i := (page - 1) * pagedPerPage; i < min(page*pagedPerPage, pagedItems); i++ {
		items = append(items, map[string]any{"uuid": pagedUUID(i), "name": fmt.Sprintf("item-%d", i)})
	}
	field := "api_key_infos"
	if r.URL.Path != "/v2/gen-ai/anthropic/keys" {
		field = "agents"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		field:   items,
		"links": map[string]any{"pages": pages},
		"meta":  map[string]any{"total": pagedItems, "page": page, "pages": last},
	})
}

// The plugin pages by the page it asked for and next, never by prev or
// previous: a prev that misleads godo's CurrentPage skips nothing.
func TestGodoPlatform_PagesByPageAskedAndNext(t *testing.T) {
	ctx := context.Background()
	want := []string{}
	for i := range pagedItems {
		want = append(want, pagedUUID(i))
	}
	for name, list := range map[string]func(p *GodoClient) ([]string, error){
		"keys": func(p *GodoClient) ([]string, error) {
			keys, err := p.ListKeys(ctx, Anthropic)
			ids := []string{}
			for _, k := range keys {
				ids = append(ids, k.UUID)
			}
			return ids, err
		},
		"agents by key": func(p *GodoClient) ([]string, error) {
			agents, err := p.ListAgentsByKey(ctx, Anthropic, testKeyUUID)
			ids := []string{}
			for _, a := range agents {
				ids = append(ids, a.UUID)
			}
			return ids, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			f := newPagedPlatform(t)
			p, err := New(f.srv.URL+"/", "fake-platform-token", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
			if err != nil {
				t.Fatal(err)
			}
			got, err := list(p)
			if err != nil || !slices.Equal(got, want) {
				t.Fatalf("listed %v, %v; want %v", got, err, want)
			}
			if !slices.Equal(f.asked, []int{1, 2, 3}) {
				t.Errorf("pages asked: %v, want 1, 2, 3", f.asked)
			}

			// A platform that links a next page from an empty one is
			// not followed for ever.
			f.asked, f.endless = nil, true
			if _, err := list(p); err == nil || !strings.Contains(err.Error(), "page 4 was empty") {
				t.Errorf("endless listing: %v", err)
			}
			if !slices.Equal(f.asked, []int{1, 2, 3, 4}) {
				t.Errorf("endless listing asked %d pages, want 4", len(f.asked))
			}
		})
	}
}

// changingPlatform lists keys two a page from a list that a test changes
// between pages, as another tool sharing the account does: meta.total is
// the count at the time of each page.
type changingPlatform struct {
	srv   *httptest.Server
	items []int
	// afterPage runs once a page was served.
	afterPage func(page int)
	// sticky answers page 1, next link and all, whatever page is asked.
	sticky bool
	asked  int
}

func (f *changingPlatform) serve(w http.ResponseWriter, r *http.Request) {
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	f.asked++
	if f.sticky {
		page = 1
	}
	last := (len(f.items) + pagedPerPage - 1) / pagedPerPage
	at := func(p int) string {
		return fmt.Sprintf("%s%s?page=%d&per_page=%d", f.srv.URL, r.URL.Path, p, pagedPerPage)
	}
	pages := map[string]string{"first": at(1)}
	if page < last {
		pages["next"], pages["last"] = at(page+1), at(last)
	}
	items := []any{}
	for _, i := range f.items[min((page-1)*pagedPerPage, len(f.items)):min(page*pagedPerPage, len(f.items))] {
		items = append(items, map[string]any{"uuid": pagedUUID(i), "name": fmt.Sprintf("item-%d", i)})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"api_key_infos": items,
		"links":         map[string]any{"pages": pages},
		"meta":          map[string]any{"total": len(f.items), "page": page, "pages": last},
	})
	if f.afterPage != nil {
		f.afterPage(page)
	}
}

// Keys deleted or created by another tool while the plugin pages through a
// listing are normal use of a shared account: the listing is neither a
// false error (a key deleted on a later page) nor a list that silently
// skips a key (one deleted on an earlier page shifts the rest) or holds
// one twice (one created ahead of the pages read).
func TestGodoPlatform_ListingChangedMeanwhile(t *testing.T) {
	for name, tc := range map[string]struct {
		change func([]int) []int
		want   []int
	}{
		"deleted on a later page": {func(s []int) []int { return slices.Delete(s, 4, 5) }, []int{0, 1, 2, 3, 5}},
		"deleted on a page read":  {func(s []int) []int { return slices.Delete(s, 0, 1) }, []int{1, 2, 3, 4, 5}},
		"created ahead":           {func(s []int) []int { return slices.Insert(s, 0, 6) }, []int{6, 0, 1, 2, 3, 4, 5}},
		"created at the end":      {func(s []int) []int { return append(s, 6) }, []int{0, 1, 2, 3, 4, 5, 6}},
	} {
		t.Run(name, func(t *testing.T) {
			f := &changingPlatform{items: []int{0, 1, 2, 3, 4, 5}}
			f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
			t.Cleanup(f.srv.Close)
			changed := false
			f.afterPage = func(page int) {
				if page == 1 && !changed {
					changed, f.items = true, tc.change(f.items)
				}
			}
			p, err := New(f.srv.URL+"/", "fake-platform-token", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
			if err != nil {
				t.Fatal(err)
			}
			keys, err := p.ListKeys(context.Background(), Anthropic)
			if err != nil {
				t.Fatal(err)
			}
			got := []string{}
			for _, k := range keys {
				got = append(got, k.UUID)
			}
			want := []string{}
			for _, i := range tc.want {
				want = append(want, pagedUUID(i))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("listed %v, want %v", got, want)
			}
		})
	}
}

// A platform that answers the first page whatever page is asked, next link
// included, is not paged through until request_timeout: once the listing
// holds more items than meta.total it stops with an error.
func TestGodoPlatform_ListingPastMetaTotalStops(t *testing.T) {
	f := &changingPlatform{items: []int{0, 1, 2, 3, 4, 5}, sticky: true}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	p, err := New(f.srv.URL+"/", "fake-platform-token", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.ListKeys(context.Background(), Anthropic); err == nil || !strings.Contains(err.Error(), "meta.total") {
		t.Fatalf("err = %v", err)
	}
	if f.asked != 4 {
		t.Errorf("asked %d pages, want 4 (the first with more items than meta.total)", f.asked)
	}
}
