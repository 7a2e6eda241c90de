package emulator

import (
	"testing"
	"time"
)

// The sliding windows, driven by a fake clock.
func TestRateWindowsSlide(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	l := limits{perMinute: 3, perHour: 5}
	ws := rateWindows{}
	at := func(d time.Duration) verdict { return ws.admit("tok", t0.Add(d), l) }

	for i, d := range []time.Duration{0, 10 * time.Second, 20 * time.Second} {
		if v := at(d); !v.allowed || v.remaining != 5-(i+1) || !v.reset.Equal(t0.Add(time.Hour)) {
			t.Fatalf("request %d: %+v", i, v)
		}
	}
	// The minute is full until the request at t0 leaves it. As DigitalOcean
	// documents, the burst 429 says remaining 0 though the hour is not
	// spent, with the oldest request's reset and a retry-after.
	if v := at(30 * time.Second); v.allowed || v.retryAfter != 30*time.Second || v.remaining != 0 || !v.reset.Equal(t0.Add(time.Hour)) {
		t.Errorf("burst: %+v", v)
	}
	// The refusal used none of the hour.
	if v := at(time.Minute); !v.allowed || v.remaining != 1 {
		t.Errorf("slot at t0+1m not free, or the refusal counted: %+v", v)
	}
	if v := at(2 * time.Minute); !v.allowed || v.remaining != 0 {
		t.Errorf("5th request: %+v", v)
	}
	// The hour is full until t0 leaves it: the reset says when, and an
	// hourly 429 has no retry-after. Refusals use no budget.
	for range 3 {
		if v := at(3 * time.Minute); v.allowed || v.retryAfter != 0 || v.remaining != 0 || !v.reset.Equal(t0.Add(time.Hour)) {
			t.Errorf("hourly: %+v", v)
		}
	}
	if v := at(time.Hour); !v.allowed || !v.reset.Equal(t0.Add(time.Hour+10*time.Second)) {
		t.Errorf("after the hour: %+v", v)
	}
	if other := ws.admit("other", t0.Add(time.Hour), l); !other.allowed || other.remaining != 4 {
		t.Errorf("windows are not per token: %+v", other)
	}
}

func TestCeilHelpers(t *testing.T) {
	if got := ceilUnix(time.Unix(100, 1)); got != 101 {
		t.Errorf("ceilUnix = %d", got)
	}
	if got := ceilUnix(time.Unix(100, 0)); got != 100 {
		t.Errorf("ceilUnix = %d", got)
	}
	if got := ceilSeconds(1500 * time.Millisecond); got != 2 {
		t.Errorf("ceilSeconds = %d", got)
	}
}
