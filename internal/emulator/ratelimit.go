package emulator

import (
	"net/http"
	"sort"
	"strconv"
	"time"
)

// limits are the per-token request budgets: a burst limit per rolling minute
// and the headline limit per rolling hour (the one ratelimit-limit reports).
type limits struct{ perMinute, perHour int }

// rateWindows holds, per token, the times of the requests admitted in the
// last hour, oldest first. Sliding windows, not fixed buckets, as documented.
type rateWindows map[string][]time.Time

// verdict is the outcome of one admission check.
type verdict struct {
	allowed   bool
	limit     int       // hourly limit
	remaining int       // hourly budget left after this request; 0 on every 429
	reset     time.Time // when the oldest request in the hour window expires
	// retryAfter is set on a burst refusal only: until a slot of the
	// minute frees. An hourly refusal has none, as DigitalOcean documents:
	// its wait is the reset.
	retryAfter time.Duration
}

// admit records a request by token at now unless a window is full. A refused
// request uses no budget, so a client that backs off is not punished twice.
func (ws rateWindows) admit(token string, now time.Time, l limits) verdict {
	hist := ws[token]
	hourAgo, minuteAgo := now.Add(-time.Hour), now.Add(-time.Minute)
	hist = hist[sort.Search(len(hist), func(i int) bool { return hist[i].After(hourAgo) }):]
	inMinute := len(hist) - sort.Search(len(hist), func(i int) bool { return hist[i].After(minuteAgo) })

	v := verdict{limit: l.perHour, reset: now}
	switch {
	case len(hist) >= l.perHour:
		// Nothing remains until the oldest request leaves the hour: the
		// reset says when.
	case inMinute >= l.perMinute:
		// The burst limit: DigitalOcean answers remaining 0 although the
		// hour is not spent, and retry-after says when a slot of the minute
		// frees.
		v.retryAfter = hist[len(hist)-l.perMinute].Add(time.Minute).Sub(now)
	default:
		v.allowed = true
		hist = append(hist, now)
	}
	ws[token] = hist
	if v.allowed {
		v.remaining = max(l.perHour-len(hist), 0)
	}
	if len(hist) > 0 {
		v.reset = hist[0].Add(time.Hour)
	}
	return v
}

// peek is the budget of token at now without recording a request: what a
// 401 reports. With nothing in the hour, the reset is now: no request has
// to expire before the whole budget is there.
func (ws rateWindows) peek(token string, now time.Time, l limits) verdict {
	hourAgo := now.Add(-time.Hour)
	n := 0
	for _, t := range ws[token] {
		if t.After(hourAgo) {
			n++
		}
	}
	v := verdict{limit: l.perHour, remaining: max(l.perHour-n, 0), reset: now}
	if n > 0 {
		v.reset = ws[token][len(ws[token])-n].Add(time.Hour)
	}
	return v
}

// msgRateLimited is the message of every platform 429, word for word as
// DigitalOcean's reference shows it.
const msgRateLimited = "API Rate limit exceeded."

// admit applies the token's limits and writes the rate-limit headers that
// every platform response carries; on refusal it also writes the 429 and
// returns false.
func (e *Emulator) admit(w http.ResponseWriter, token string) bool {
	e.mu.Lock()
	v := e.windows.admit(token, time.Now(), e.limits)
	e.mu.Unlock()

	setRateHeaders(w.Header(), v)
	if v.allowed {
		return true
	}
	if v.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(max(ceilSeconds(v.retryAfter), 1), 10))
	}
	writePlatformError(w, http.StatusTooManyRequests, "too_many_requests", msgRateLimited)
	return false
}

// refuseToken answers 401 for a token the platform does not accept. Like
// every platform answer it carries the rate-limit headers, here the budget
// of the token presented, which the refused request does not use.
func (e *Emulator) refuseToken(w http.ResponseWriter, token string) {
	e.mu.Lock()
	v := e.windows.peek(token, time.Now(), e.limits)
	e.mu.Unlock()
	setRateHeaders(w.Header(), v)
	writePlatformError(w, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
}

func setRateHeaders(h http.Header, v verdict) {
	h.Set("Ratelimit-Limit", strconv.Itoa(v.limit))
	h.Set("Ratelimit-Remaining", strconv.Itoa(v.remaining))
	h.Set("Ratelimit-Reset", strconv.FormatInt(ceilUnix(v.reset), 10))
}

// ceilUnix rounds up so a client that waits until reset finds the slot free.
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
