package emulator

import (
	"net/http"
	"net/url"
	"strconv"

	"github.com/digitalocean/godo"
)

const (
	defaultPerPage = 20
	maxPerPage     = 200
)

// pageRequest is a validated page/per_page pair.
type pageRequest struct{ page, perPage int }

// parsePageRequest reads page (default 1) and per_page (default 20, clamped
// to 200). Anything that is not a positive integer is the caller's mistake.
func parsePageRequest(r *http.Request) (pageRequest, string, bool) {
	q := r.URL.Query()
	pr := pageRequest{page: 1, perPage: defaultPerPage}
	for _, p := range []struct {
		name string
		dst  *int
	}{{"page", &pr.page}, {"per_page", &pr.perPage}} {
		raw := q.Get(p.name)
		if raw == "" {
			continue
		}
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			return pageRequest{}, p.name + " must be a positive integer", false
		}
		*p.dst = n
	}
	pr.perPage = min(pr.perPage, maxPerPage)
	return pr, "", true
}

// paginate returns the items on the requested page; a page past the end is empty.
func paginate[T any](items []T, pr pageRequest) []T {
	start := min((pr.page-1)*pr.perPage, len(items))
	end := min(start+pr.perPage, len(items))
	return items[start:end]
}

func (pr pageRequest) pages(total int) int {
	return (total + pr.perPage - 1) / pr.perPage
}

func (pr pageRequest) meta(total int) *godo.Meta {
	return &godo.Meta{Total: total, Page: pr.page, Pages: pr.pages(total)}
}

// pageLinks is "links" as DigitalOcean's reference schema spells it:
// "previous", where godo's struct reads "prev" (so godo's CurrentPage
// misreads every page after the first, as it does against the platform).
type pageLinks struct {
	Pages pageURLs `json:"pages"`
}

type pageURLs struct {
	First    string `json:"first,omitempty"`
	Previous string `json:"previous,omitempty"`
	Next     string `json:"next,omitempty"`
	Last     string `json:"last,omitempty"`
}

// links returns absolute page URLs built from the request's host: first
// always (on a single page too, as godo's test data shows), previous after
// the first page (past the end too), next and last before the last page.
// With omitSingle, a listing that fits on one page has no "links" at all,
// which the reference's prose allows.
func (pr pageRequest) links(r *http.Request, total int, omitSingle bool) *pageLinks {
	last := pr.pages(total)
	if omitSingle && last <= 1 {
		return nil
	}
	at := func(page int) string {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		q := r.URL.Query()
		q.Set("page", strconv.Itoa(page))
		q.Set("per_page", strconv.Itoa(pr.perPage))
		u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
		return u.String()
	}
	p := pageURLs{First: at(1)}
	if pr.page > 1 {
		p.Previous = at(pr.page - 1)
	}
	if pr.page < last {
		p.Next = at(pr.page + 1)
		p.Last = at(last)
	}
	return &pageLinks{Pages: p}
}
