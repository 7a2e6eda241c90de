package platform

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The wait before a retry honours retry-after and, for a 429, the
// rate-limit window's reset; otherwise it backs off exponentially.
func TestRetry_WaitHonoursTheUpstream(t *testing.T) {
	now := time.Now()
	resp := func(status int, headers ...string) *http.Response {
		r := &http.Response{StatusCode: status, Header: http.Header{}}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		return r
	}
	if d := RetryAfter(testRetryBase, 0, resp(503, "Retry-After", "7"), now); d < 7*time.Second {
		t.Errorf("retry-after 7: waits %v", d)
	}
	reset := strconv.FormatInt(now.Add(20*time.Second).Unix(), 10)
	if d := RetryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "0", "Ratelimit-Reset", reset), now); d < 19*time.Second {
		t.Errorf("429 with nothing remaining until a reset in 20 s: waits %v", d)
	}
	if d := RetryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "12", "Ratelimit-Reset", reset), now); d > time.Second {
		t.Errorf("429 with requests remaining waits for the reset: %v", d)
	}
	// DigitalOcean's burst 429: remaining 0 and a reset up to an hour away,
	// but retry-after is the wait (issue 16: it used to be the reset).
	hourAway := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	if d := RetryAfter(testRetryBase, 0, resp(429, "Ratelimit-Remaining", "0", "Ratelimit-Reset", hourAway, "Retry-After", "29"), now); d < 29*time.Second || d > 30*time.Second {
		t.Errorf("burst 429 with retry-after 29 and a reset an hour away: waits %v", d)
	}
	if d := RetryAfter(testRetryBase, 0, resp(503, "Ratelimit-Reset", reset), now); d > time.Second {
		t.Errorf("a 503 waits for the rate-limit reset: %v", d)
	}
	if a, b := RetryAfter(testRetryBase, 0, nil, now), RetryAfter(testRetryBase, 3, nil, now); b <= a || b > retryMaxDelay {
		t.Errorf("backoff does not grow: attempt 0 %v, attempt 3 %v", a, b)
	}
}
