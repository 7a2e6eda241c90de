package platform

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// admitted runs n requests through the budget on a simulated clock, each as
// early as the budget allows, and returns when each went out.
func admitted(b *Budget, n int) []time.Time {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]time.Time, 0, n)
	for range n {
		delay, _ := b.reserve(now)
		now = now.Add(max(delay, 0))
		out = append(out, now)
	}
	return out
}

// most returns the largest number of times inside any window of length w.
func most(times []time.Time, w time.Duration) int {
	best, start := 0, 0
	for end := range times {
		for times[end].Sub(times[start]) >= w {
			start++
		}
		best = max(best, end-start+1)
	}
	return best
}

// The budget never lets more through than the platform's limit in any
// rolling minute or hour, and spaces requests evenly rather than in bursts.
func TestRateBudget_NeverExceedsTheLimitInAnyWindow(t *testing.T) {
	for _, limits := range [][2]int{{250, 5000}, {60, 1000}, {10, 100}, {1000, 20000}} {
		perMinute, perHour := limits[0], limits[1]
		t.Run(strconv.Itoa(perMinute)+"-"+strconv.Itoa(perHour), func(t *testing.T) {
			times := admitted(NewBudget(perMinute, perHour, time.Now), 2*perHour)
			if got := most(times, time.Minute); got > perMinute {
				t.Errorf("%d requests in one minute, limit %d", got, perMinute)
			}
			if got := most(times, time.Hour); got > perHour {
				t.Errorf("%d requests in one hour, limit %d", got, perHour)
			}
			// Evenly paced: while the hourly burst lasts, no gap is much
			// longer than the fair share of a minute.
			fair := time.Minute / time.Duration(perMinute)
			for i := 1; i < perHour/4; i++ {
				if gap := times[i].Sub(times[i-1]); gap > 2*fair {
					t.Fatalf("request %d waited %v after the one before; fair share is %v", i, gap, fair)
				}
			}
		})
	}
}

// The budget follows the platform's headers as DigitalOcean documents them:
// a burst 429 (remaining 0 with retry-after, though the hour is not spent)
// holds requests back for retry-after only; a 429 without retry-after and
// nothing remaining, or a success with nothing remaining, means the hour is
// spent, and requests wait for the reset.
func TestRateBudget_FollowsThePlatformsHeaders(t *testing.T) {
	answer := func(now time.Time, status int, remaining, retryAfter string) *http.Response {
		resp := &http.Response{StatusCode: status, Header: http.Header{}}
		resp.Header.Set("Ratelimit-Limit", "5000")
		resp.Header.Set("Ratelimit-Remaining", remaining)
		resp.Header.Set("Ratelimit-Reset", strconv.FormatInt(now.Add(45*time.Minute).Unix(), 10))
		if retryAfter != "" {
			resp.Header.Set("Retry-After", retryAfter)
		}
		return resp
	}
	for name, tc := range map[string]struct {
		status           int
		remaining, retry string
		atLeast, atMost  time.Duration
	}{
		"burst 429":                     {http.StatusTooManyRequests, "0", "29", 28 * time.Second, 30 * time.Second},
		"hourly 429":                    {http.StatusTooManyRequests, "0", "", 44 * time.Minute, 46 * time.Minute},
		"success taking the last place": {http.StatusOK, "0", "", 44 * time.Minute, 46 * time.Minute},
		"success with room":             {http.StatusOK, "4000", "", 0, time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			b := NewBudget(6_000_000, 360_000_000, time.Now)
			now := time.Now()
			b.now = func() time.Time { return now }
			b.observe(answer(now, tc.status, tc.remaining, tc.retry))
			if delay, _ := b.reserve(now); delay < tc.atLeast || delay > tc.atMost {
				t.Fatalf("the next request may go in %v; want %v to %v", delay, tc.atLeast, tc.atMost)
			}
			// A burst 429's remaining 0 is not the hour's count: status
			// and a later change of limits keep the last real one.
			if seen := b.LastSeen(); tc.retry != "" && !seen.At.IsZero() || tc.retry == "" && (seen.Limit != 5000 || strconv.Itoa(seen.Remaining) != tc.remaining) {
				t.Fatalf("last seen = %+v", seen)
			}
			b.Configure(6_000_000, 360_000_000, 10)
			if delay, _ := b.reserve(now); delay < tc.atLeast || delay > tc.atMost {
				t.Fatalf("after a change of limits the next request may go in %v; want %v to %v", delay, tc.atLeast, tc.atMost)
			}
		})
	}
}

// Scheduled work never takes more than its share of the budget, even when
// nothing else is asking: the headroom is always free for requests, which
// then go out within a fair share or two.
func TestRateBudget_SchedulerLeavesHeadroom(t *testing.T) {
	const perMinute, headroom = 120, 25
	b := NewBudget(perMinute, 1_000_000, time.Now)
	b.Configure(perMinute, 1_000_000, headroom)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fair := time.Minute / time.Duration(perMinute)
	budgetPerMinute := 0.95 * perMinute

	// Scheduled work alone, flat out for ten minutes: one item at a time,
	// each as soon as its pace and the shared budget allow.
	background, now := 0, start
	var worst time.Duration
	for now.Before(start.Add(10 * time.Minute)) {
		at := now.Add(b.background.ReserveN(now, 1).DelayFrom(now))
		delay, _ := b.reserve(at)
		background++
		now = at.Add(delay)
		// A request arriving just after it still finds a place soon.
		if background%10 == 0 {
			d, _ := b.reserve(now)
			worst = max(worst, d)
		}
	}
	perMinuteUsed := float64(background) / 10
	if limit := budgetPerMinute * (100 - headroom) / 100; perMinuteUsed > limit+1 {
		t.Errorf("scheduled work used %.1f places a minute; its share is %.1f of %.1f", perMinuteUsed, limit, budgetPerMinute)
	}
	if worst > 2*fair {
		t.Errorf("a request waited %v behind scheduled work; fair share is %v", worst, fair)
	}
}

// RFC 9110 lets retry-after be an HTTP date as well as seconds. A burst 429
// whose retry-after the budget could not read as seconds was taken for the
// hour's count (remaining 0) and paused the mount until the reset, up to an
// hour; the retry waited for the reset too. Any retry-after on a 429 marks
// the burst: a date is read against the answer's Date, and a value that is
// neither waits out the burst window.
func TestRateBudget_BurstRetryAfterInAnyForm(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	burst := func(retryAfter string) *http.Response {
		resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
		resp.Header.Set("Ratelimit-Limit", "5000")
		resp.Header.Set("Ratelimit-Remaining", "0")
		resp.Header.Set("Ratelimit-Reset", strconv.FormatInt(now.Add(59*time.Minute).Unix(), 10))
		resp.Header.Set("Date", now.Format(http.TimeFormat))
		resp.Header.Set("Retry-After", retryAfter)
		return resp
	}
	for name, tc := range map[string]struct {
		retryAfter      string
		atLeast, atMost time.Duration
	}{
		"HTTP date":  {now.Add(29 * time.Second).Format(http.TimeFormat), 28 * time.Second, 30 * time.Second},
		"unreadable": {"soon", 0, time.Minute},
		"negative":   {"-5", 0, time.Second},
		"overflow":   {"99999999999", 0, maxPause},
	} {
		t.Run(name, func(t *testing.T) {
			b := NewBudget(6_000_000, 360_000_000, time.Now)
			b.now = func() time.Time { return now }
			b.observe(burst(tc.retryAfter))
			if delay, _ := b.reserve(now); delay < tc.atLeast || delay > tc.atMost {
				t.Errorf("after a burst 429 with retry-after %q the next request may go in %v; want %v to %v", tc.retryAfter, delay, tc.atLeast, tc.atMost)
			}
			if d := RetryAfter(testRetryBase, 0, burst(tc.retryAfter), now); d < tc.atLeast || d > max(tc.atMost, testRetryBase) {
				t.Errorf("a retry after a burst 429 with retry-after %q waits %v; want %v to %v", tc.retryAfter, d, tc.atLeast, tc.atMost)
			}
		})
	}
}

// A tiny hourly limit still refills: the budget is slow, never wedged.
func TestRateBudget_TinyHourlyLimitStillRefills(t *testing.T) {
	for _, perHour := range []int{1, 2, 3} {
		b := NewBudget(250, perHour, time.Now)
		now := time.Now()
		if delay, _ := b.reserve(now); delay > 0 {
			t.Fatalf("limit %d: the first request waits %v", perHour, delay)
		}
		if delay, _ := b.reserve(now); delay <= 0 || delay > 3*time.Hour {
			t.Fatalf("limit %d: the next place comes in %v; want a few hours at most", perHour, delay)
		}
	}
}
