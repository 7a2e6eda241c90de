package backend

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"
)

// The retry policy of every upstream call, in one place.
//
// Reads, updates and deletes of the platform are re-sent after a transient
// failure (a transport error, a 429 or a 5xx other than 501): an update sends
// the whole new state, so sending it twice is the same as once, and a delete
// that lands twice answers 404, which counts as done. A create is never
// re-sent blindly: it is not idempotent, and a second one can leave a
// duplicate key. After an ambiguous create, createKey looks the name up and
// either takes the key the first call made or creates once more
// (recoverCreate). Provider verification is re-sent after a 429 or a 5xx;
// a 401 or 403 is the provider's final word.
//
// Every attempt and every wait fits inside the operation's request_timeout:
// when the next wait would not, the last error is the answer.
var retriedPlatformOps = map[string]bool{
	"get key":      true,
	"list":         true,
	"check token":  true,
	"update key":   true,
	"delete key":   true,
	"update agent": true,
	"create key":   false,
}

const (
	maxAttempts      = 4
	retryMaxDelay    = 5 * time.Second
	retryJitterShare = 0.5
)

// retryBaseDelay is the first backoff; tests shorten it.
var retryBaseDelay = 100 * time.Millisecond

// retryAfter returns how long to wait before attempt+1: exponential backoff
// with jitter, but never less than the upstream asked for (retry-after, or a
// rate-limit window's reset).
func retryAfter(attempt int, resp *http.Response, now time.Time) time.Duration {
	d := min(retryBaseDelay<<attempt, retryMaxDelay)
	d = d - time.Duration(rand.Float64()*retryJitterShare*float64(d))
	if resp == nil {
		return d
	}
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
		d = max(d, time.Duration(secs)*time.Second)
	}
	// A 429 with nothing remaining in the window waits for its reset.
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Ratelimit-Remaining") == "0" {
		if unix, err := strconv.ParseInt(resp.Header.Get("Ratelimit-Reset"), 10, 64); err == nil {
			d = max(d, time.Unix(unix, 0).Sub(now))
		}
	}
	return d
}

// transientStatus reports a status worth another attempt.
func transientStatus(status int) bool {
	return status == http.StatusTooManyRequests || (status >= 500 && status != http.StatusNotImplemented)
}

// retryPlatform runs one platform call under op's policy.
//
// When an attempt may have been applied (no answer, or a 5xx) and a later
// one is refused outright (a 429, the mount's own budget, a 4xx other than
// 404), the answer is the earlier attempt's: the refusal only says that the
// last attempt changed nothing, not that the change did not happen, and a
// caller that took it as "nothing changed" would leave the platform and
// storage apart with no undo.
func retryPlatform(ctx context.Context, op string, call func(context.Context) (*godo.Response, error)) (*godo.Response, error) {
	var unsureResp *godo.Response
	var unsure error
	answer := func(resp *godo.Response, err error) (*godo.Response, error) {
		if err != nil && unsure != nil && refusedOutright(err) {
			return unsureResp, unsure
		}
		return resp, err
	}
	for attempt := 0; ; attempt++ {
		resp, err := call(ctx)
		if err == nil || !retriedPlatformOps[op] || attempt+1 >= maxAttempts || !transientPlatformError(ctx, err) {
			return answer(resp, err)
		}
		if mayHaveBeenApplied(err) {
			unsureResp, unsure = resp, err
		}
		var httpResp *http.Response
		if resp != nil {
			httpResp = resp.Response
		}
		if !sleepWithin(ctx, retryAfter(attempt, httpResp, time.Now())) {
			return answer(resp, err)
		}
	}
}

// mayHaveBeenApplied: the attempt got no answer, or a 5xx; the platform may
// have made the change.
func mayHaveBeenApplied(err error) bool {
	if errors.Is(err, logical.ErrUpstreamRateLimited) {
		return false // the mount's budget: never sent
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return apiErr.Response.StatusCode >= 500
	}
	var redirect *redirectError
	return !errors.As(err, &redirect)
}

// refusedOutright: the attempt was answered with a refusal that says only
// that this attempt changed nothing. A 404 is left alone: after a delete
// that may have landed it means done, after an update that the key is gone.
func refusedOutright(err error) bool {
	if errors.Is(err, logical.ErrUpstreamRateLimited) {
		return true
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		status := apiErr.Response.StatusCode
		return status >= 400 && status < 500 && status != http.StatusNotFound
	}
	return false
}

// transientPlatformError: a 429 or 5xx answer, or a transport failure while
// the operation still has time. The mount's own rate budget running out is
// not transient: it already waited all it could.
func transientPlatformError(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, logical.ErrUpstreamRateLimited) {
		return false
	}
	var redirect *redirectError
	if errors.As(err, &redirect) {
		return false
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return transientStatus(apiErr.Response.StatusCode)
	}
	return true
}

// sleepWithin waits d unless that would run past the context's deadline or
// the context ends first; it reports whether it waited.
func sleepWithin(ctx context.Context, d time.Duration) bool {
	if deadline, ok := ctx.Deadline(); ok && time.Now().Add(d).After(deadline) {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
