// Package platformtest holds what the tests of the upstream clients and of
// the backend share: a server that answers with a redirect.
package platformtest

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// LocationMarker is in every redirect's Location: no error may show it,
// since a Location could carry anything.
const LocationMarker = "LOCATIONMARKER"

// RedirectRefusal is the text of a refused redirect, after "the platform",
// "the provider" or "the provider's Admin API"; %d is the status.
const RedirectRefusal = "answered with a redirect (HTTP %d); refusing to follow it, because the request carries credentials"

// NewRedirectPair starts a server that answers every request with status,
// pointing at a second server that would answer 200 with an empty list. It
// returns the first server's URL and the number of requests the second one
// received.
func NewRedirectPair(t testing.TB, status int) (string, *atomic.Int32) {
	t.Helper()
	hits := &atomic.Int32{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"api_key_infos":[],"api_key_info":{"uuid":"3f1c2b9a-8d4e-4a6b-9c1d-2e3f4a5b6c7d"},"data":[],"meta":{"total":0}}`))
	}))
	t.Cleanup(target.Close)
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path+"?leak="+LocationMarker, status)
	}))
	t.Cleanup(redirector.Close)
	return redirector.URL, hits
}
