package platform

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
)

// The retry policy of every upstream call, in one place.
//
// Reads, updates and deletes of the platform are re-sent after a transient
// failure (a transport error, a 429 or a 5xx other than 501): an update sends
// the whole new state, so sending it twice is the same as once, and a delete
// that lands twice answers 404, which counts as done. A create is never
// re-sent blindly: it is not idempotent, and a second one can leave a
// duplicate key. After an ambiguous create, the backend looks up the
// create's provisional name and either takes the key the first call made
// under it or creates once more (recoverCreate). Provider verification is re-sent after a 429 or a 5xx;
// a 401 or 403 is the provider's final word.
//
// Every attempt and every wait fits inside the operation's request_timeout:
// when the next wait would not, the last error is the answer.
var retriedPlatformOps = map[platformOp]bool{
	opGetKey:      true,
	opList:        true,
	opCheckToken:  true,
	opUpdateKey:   true,
	opDeleteKey:   true,
	opUpdateAgent: true,
	opCreateKey:   false,

	opGetAgent:       true,
	opRenameAgentKey: true,
	opDeleteAgentKey: true,
	// A regenerate is a PUT but not idempotent: each one makes a new
	// secret and kills the last, so a second after a lost answer would
	// kill the secret the first handed out unseen. Like a create, the
	// caller learns the outcome is unknown (not a refusal) and decides.
	opCreateAgentKey:     false,
	opRegenerateAgentKey: false,
}

// platformOp names a kind of platform call, in the retry policy and in
// error text; a typo is a compile error, not a call silently not retried.
type platformOp string

const (
	opCreateKey   platformOp = "create key"
	opGetKey      platformOp = "get key"
	opUpdateKey   platformOp = "update key"
	opDeleteKey   platformOp = "delete key"
	opList        platformOp = "list"
	opListAgents  platformOp = "list agents"
	opCheckToken  platformOp = "check token"
	opUpdateAgent platformOp = "update agent"

	opGetAgent           platformOp = "get agent"
	opCreateAgentKey     platformOp = "create agent key"
	opRenameAgentKey     platformOp = "rename agent key"
	opDeleteAgentKey     platformOp = "delete agent key"
	opRegenerateAgentKey platformOp = "regenerate agent key"
)

const (
	MaxAttempts      = 4
	retryMaxDelay    = 5 * time.Second
	retryJitterShare = 0.5
)

// DefaultRetryBaseDelay is the first backoff; each client is built with
// its own (the backend's tuning), which tests shorten.
const DefaultRetryBaseDelay = 100 * time.Millisecond

// RetryAfter returns how long to wait before attempt+1: exponential backoff
// from base
// with jitter, but never less than the upstream asked for. A burst 429
// carries retry-after, and that is the wait: its ratelimit-remaining says 0
// though the hour is not spent. A 429 without it and with nothing remaining
// means the hour is spent: it waits for the reset, when the oldest request
// of the hour expires.
func RetryAfter(base time.Duration, attempt int, resp *http.Response, now time.Time) time.Duration {
	d := min(base<<attempt, retryMaxDelay)
	d = d - time.Duration(rand.Float64()*retryJitterShare*float64(d))
	if resp == nil {
		return d
	}
	if wait, ok := burstWait(resp, now); ok {
		return max(d, wait)
	}
	if wait, ok := retryAfterHeader(resp.Header, now); ok {
		return max(d, wait)
	}
	if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Ratelimit-Remaining") == "0" {
		if unix, err := strconv.ParseInt(resp.Header.Get("Ratelimit-Reset"), 10, 64); err == nil {
			// The reset is on the platform's clock: read it against the
			// answer's Date.
			base := now
			if date, err := http.ParseTime(resp.Header.Get("Date")); err == nil {
				base = date
			}
			d = max(d, min(time.Unix(unix, 0).Sub(base), maxPause))
		}
	}
	return d
}

// TransientStatus reports a status worth another attempt.
func TransientStatus(status int) bool {
	return status == http.StatusTooManyRequests || (status >= 500 && status != http.StatusNotImplemented)
}

// retryPlatform runs one platform call under op's policy. When an attempt
// may have been applied (a transport failure or a 5xx) and a later one is
// refused, the refusal is not the whole story: the error says the change
// may have happened, so the write-ahead log road undoes it rather than
// trusting the refusal.
func retryPlatform(ctx context.Context, base time.Duration, op platformOp, call func(context.Context) (*godo.Response, error)) (*godo.Response, error) {
	ambiguous := false
	for attempt := 0; ; attempt++ {
		resp, err := call(ctx)
		if err != nil && ambiguous {
			err = &possiblyApplied{err: err}
		}
		if err == nil || !retriedPlatformOps[op] || attempt+1 >= MaxAttempts || !transientPlatformError(ctx, err) {
			return resp, err
		}
		ambiguous = ambiguous || !isRateLimitAnswer(err)
		var httpResp *http.Response
		if resp != nil {
			httpResp = resp.Response
		}
		if !SleepWithin(ctx, RetryAfter(base, attempt, httpResp, time.Now())) {
			return resp, err
		}
	}
}

// possiblyApplied marks an error after which the platform may hold the
// change all the same: an earlier attempt of the same call, or an earlier
// call of the same change, got no definite answer.
type possiblyApplied struct{ err error }

func (e *possiblyApplied) Error() string { return e.err.Error() }
func (e *possiblyApplied) Unwrap() error { return e.err }

// PossiblyApplied marks err as following an earlier attempt that may have
// been applied: IsRefusal is then false whatever err says, so the
// write-ahead road undoes the change rather than trusting a refusal.
func PossiblyApplied(err error) error { return &possiblyApplied{err: err} }

// isRateLimitAnswer: the platform (or the mount's budget) refused with a
// 429, which changed nothing.
func isRateLimitAnswer(err error) bool {
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return apiErr.Response.StatusCode == http.StatusTooManyRequests
	}
	return errors.Is(err, ErrRateLimited)
}

// transientPlatformError: a 429 or 5xx answer, or a transport failure while
// the operation still has time. The mount's own rate budget running out is
// not transient: it already waited all it could.
func transientPlatformError(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrRateLimited) {
		return false
	}
	var redirect *RedirectError
	if errors.As(err, &redirect) {
		return false
	}
	var apiErr *godo.ErrorResponse
	if errors.As(err, &apiErr) && apiErr.Response != nil {
		return TransientStatus(apiErr.Response.StatusCode)
	}
	return true
}

// SleepWithin waits d unless that would run past the context's deadline or
// the context ends first; it reports whether it waited.
func SleepWithin(ctx context.Context, d time.Duration) bool {
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

// IsPossiblyApplied reports an error marked PossiblyApplied.
func IsPossiblyApplied(err error) bool {
	var pa *possiblyApplied
	return errors.As(err, &pa)
}
