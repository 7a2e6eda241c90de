package backend

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// admitted runs n requests through the budget on a simulated clock, each as
// early as the budget allows, and returns when each went out.
func admitted(b *rateBudget, n int) []time.Time {
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
			times := admitted(newRateBudget(perMinute, perHour), 2*perHour)
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

// A 429's retry-after and a window with nothing remaining hold every
// request back until the platform is ready again.
func TestRateBudget_FollowsThePlatformsHeaders(t *testing.T) {
	b := newRateBudget(6_000_000, 360_000_000)
	now := time.Now()
	b.now = func() time.Time { return now }
	resp := &http.Response{StatusCode: http.StatusTooManyRequests, Header: http.Header{}}
	resp.Header.Set("Retry-After", "30")
	resp.Header.Set("Ratelimit-Limit", "250")
	resp.Header.Set("Ratelimit-Remaining", "0")
	resp.Header.Set("Ratelimit-Reset", strconv.FormatInt(now.Add(45*time.Second).Unix(), 10))
	b.observe(resp)
	if delay, _ := b.reserve(now); delay < 44*time.Second {
		t.Fatalf("after a 429 with nothing remaining until reset, the next request may go in %v", delay)
	}
	if seen := b.lastSeen(); seen.Limit != 250 || seen.Remaining != 0 {
		t.Fatalf("last seen = %+v", seen)
	}
}

// When the budget is spent, a request that cannot get a place within its
// timeout fails at once with a clear rate-limit error, and the platform
// never answers 429.
func TestRateBudget_SpentBudgetIsAClearErrorAndNo429(t *testing.T) {
	e := newTestEnv(t, map[string]any{"rate_limit_per_minute": 250, "rate_limit_per_hour": 20, "name_cache_ttl": "1h"})
	// The platform itself allows 20 an hour; the mount's budget lets 9
	// through at once (half of 95%) and then one every 6.3 minutes.
	e.emu.SetRateLimits(250, 20)
	var failed string
	for i := range 12 {
		resp, err := e.request(logical.CreateOperation, "keys/budget-"+strconv.Itoa(i), map[string]any{"provider": "openai", "api_key": openAIKey("budget" + strconv.Itoa(i))})
		if err != nil {
			failed = err.Error()
			break
		}
		if resp.IsError() {
			t.Fatalf("create %d: %v", i, resp.Error())
		}
	}
	if !strings.Contains(failed, "rate budget is spent") || !strings.Contains(failed, "retry after") {
		t.Fatalf("want a clear rate-limit error once the budget is spent, got %q", failed)
	}
	if n := e.emu.Statuses()[http.StatusTooManyRequests]; n != 0 {
		t.Fatalf("the platform answered 429 %d times", n)
	}
	for _, k := range e.state().OpenAIKeys {
		if !strings.HasPrefix(k.Name, "budget-") {
			t.Fatalf("unexpected key %+v", k)
		}
	}
}

// Scheduled work never takes more than its share of the budget, even when
// nothing else is asking: the headroom is always free for requests, which
// then go out within a fair share or two.
func TestRateBudget_SchedulerLeavesHeadroom(t *testing.T) {
	const perMinute, headroom = 120, 25
	b := newRateBudget(perMinute, 1_000_000)
	b.configure(perMinute, 1_000_000, headroom)
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
