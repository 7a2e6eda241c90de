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

// links returns absolute first/prev/next/last URLs built from the request's
// host, only those that apply, and nil when everything fits on one page: the
// platform then leaves "links" out altogether.
func (pr pageRequest) links(r *http.Request, total int) *godo.Links {
	last := pr.pages(total)
	if last <= 1 {
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
	p := &godo.Pages{}
	if pr.page > 1 {
		p.First = at(1)
		p.Prev = at(pr.page - 1) // past the end too, so godo's CurrentPage stays right
	}
	if pr.page < last {
		p.Next = at(pr.page + 1)
		p.Last = at(last)
	}
	return &godo.Links{Pages: p}
}
