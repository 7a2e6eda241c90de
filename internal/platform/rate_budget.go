package platform

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The platform counts every request of a token over a rolling minute and a
// rolling hour (250 and 5,000 by default) and answers 429 past either. The
// mount keeps a budget of its own so that bulk imports and scheduled
// rotations never get there: every platform request, from a handler, the
// scheduler or any background work, waits for the budget first.
//
// golang.org/x/time/rate does the pacing. It is the Go team's token bucket,
// already in the SDK's dependency graph, and a bucket of size b filled at r
// per second lets through at most b + r*w requests in any window of w
// seconds, which is exactly the bound a rolling window needs:
//   - per minute: b = 1, r = 95% of the limit / 60 s. Requests are spaced
//     evenly, none waits much longer than its fair share, and no minute ever
//     sees more than 1 + 0.95 * limit.
//   - per hour: b = r * 3600 s = half of 95% of the limit. A bulk import of
//     up to that many requests runs at the minute pace; past it the pace
//     falls evenly to the sustained rate, and no hour ever sees more than
//     95% of the limit.
const (
	DefaultRateLimitPerMinute = 250
	DefaultRateLimitPerHour   = 5000
	// BudgetShare is the part of the platform's limits the mount uses,
	// leaving room for the token's other users and for rounding.
	BudgetShare = 0.95
	// DefaultSchedulerHeadroomPercent is the share of the mount's budget
	// that scheduled work (rotations, sync) always leaves to requests.
	DefaultSchedulerHeadroomPercent = 10
)

// Budget is one mount's share of the platform's rate limits.
type Budget struct {
	mu     sync.Mutex
	minute *rate.Limiter
	hour   *rate.Limiter
	// perHour is the configured hourly limit, which the platform's own
	// count is measured against (followCountLocked).
	perHour int
	// background paces scheduled work, before it takes its place in the
	// budget like any request: at most (100 - headroom)% of the budget, so
	// the rest is always there for people and programs waiting on an
	// answer.
	background *rate.Limiter
	// pausedUntil holds every request back after a burst 429, for its
	// retry-after; hourFullUntil while the platform's count leaves no room
	// in the hour, until its reset. The second is worked out again from
	// every answer and every change of limits.
	pausedUntil   time.Time
	hourFullUntil time.Time
	seen          Seen
	// known is set by the first answer that carried the platform's count;
	// until then learning lets one request out at a time (untilKnown).
	known    bool
	learning chan struct{}
	now      func() time.Time
}

// Seen is what the platform's rate-limit headers said last.
type Seen struct {
	Limit     int
	Remaining int
	Reset     time.Time
	At        time.Time
}

// NewBudget is a budget under the given limits (zero: the defaults) that
// reads the time from now, the backend's clock.
func NewBudget(perMinute, perHour int, now func() time.Time) *Budget {
	b := &Budget{now: now, learning: make(chan struct{}, 1)}
	b.Configure(perMinute, perHour, DefaultSchedulerHeadroomPercent)
	return b
}

// Configure sets the limits; an accepted config write calls it, and so does
// building clients from the stored config. Zero means default. The counts
// survive: requests already made still count against the new limits.
func (b *Budget) Configure(perMinute, perHour, headroomPercent int) {
	if perMinute <= 0 {
		perMinute = DefaultRateLimitPerMinute
	}
	if perHour <= 0 {
		perHour = DefaultRateLimitPerHour
	}
	minuteRate := rate.Limit(BudgetShare * float64(perMinute) / 60)
	// Computed in floating point: a tiny hourly limit must still refill.
	hourShare := BudgetShare * float64(perHour) / 2
	hourBurst := max(int(hourShare), 1)
	hourRate := rate.Limit(hourShare / 3600)
	// Scheduled work runs at its share of the per-minute pace; the hourly
	// bucket, which it also draws from, bounds it over the hour.
	backgroundRate := minuteRate * rate.Limit(100-headroomPercent) / 100
	b.mu.Lock()
	defer b.mu.Unlock()
	b.perHour = perHour
	if b.minute == nil {
		b.minute = rate.NewLimiter(minuteRate, 1)
		b.hour = rate.NewLimiter(hourRate, hourBurst)
		b.background = rate.NewLimiter(backgroundRate, 1)
		return
	}
	b.minute.SetLimit(minuteRate)
	b.hour.SetLimit(hourRate)
	b.hour.SetBurst(hourBurst)
	b.background.SetLimit(backgroundRate)
	if b.known {
		b.followCountLocked(b.now())
	}
}

// WaitBackground paces one piece of scheduled work (a rotation, a sync
// page). Its platform requests then wait for the budget like any other.
func (b *Budget) WaitBackground(ctx context.Context) error {
	b.mu.Lock()
	l := b.background
	b.mu.Unlock()
	return l.Wait(ctx)
}

// wait takes one request's place in the budget, waiting for it within the
// context's deadline. When the wait would run past the deadline nothing is
// taken and the error wraps ErrRateLimited with how long to
// wait.
func (b *Budget) wait(ctx context.Context) error {
	now := b.now()
	delay, cancel := b.reserve(now)
	// The deadline and the timer are on the wall clock, whatever now says.
	if deadline, ok := ctx.Deadline(); ok && delay > time.Until(deadline) {
		cancel()
		return fmt.Errorf("the mount's platform rate budget is spent for now (rate_limit_per_minute, rate_limit_per_hour); retry after %d s: %w",
			int(delay.Round(time.Second).Seconds())+1, ErrRateLimited)
	}
	if delay <= 0 {
		return nil
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		cancel()
		return ctx.Err()
	}
}

// reserve takes one place at now and says how long to wait for it; cancel
// gives it back.
func (b *Budget) reserve(now time.Time) (time.Duration, func()) {
	b.mu.Lock()
	pause := max(b.pausedUntil.Sub(now), b.hourFullUntil.Sub(now))
	minute := b.minute.ReserveN(now, 1)
	hour := b.hour.ReserveN(now, 1)
	b.mu.Unlock()
	return max(pause, minute.DelayFrom(now), hour.DelayFrom(now)), func() {
		minute.CancelAt(now)
		hour.CancelAt(now)
	}
}

// observe follows the platform's rate-limit headers as DigitalOcean
// documents them:
//   - A 429 with retry-after is the burst limit (250 a minute): every
//     request waits retry-after, and no longer. Its ratelimit-remaining says
//     0 though the hour is not spent, so it is not the hour's count.
//   - Every other answer carries the hour's count for the token, its other
//     users included (followCountLocked).
//
// The reset is a time on the platform's clock, so it is read against the
// answer's own Date header, and no pause is longer than the platform's
// longest window.
func (b *Budget) observe(resp *http.Response) {
	h := resp.Header
	limit, errL := strconv.Atoi(h.Get("Ratelimit-Limit"))
	remaining, errR := strconv.Atoi(h.Get("Ratelimit-Remaining"))
	resetUnix, errT := strconv.ParseInt(h.Get("Ratelimit-Reset"), 10, 64)
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if wait, ok := burstWait(resp, now); ok {
		// Not the hour's count: seen keeps the last one, for status
		// and for a change of limits (configure).
		b.pauseLocked(now.Add(wait))
		return
	}
	if errL != nil || errR != nil || errT != nil || limit <= 0 {
		return
	}
	untilReset := time.Unix(resetUnix, 0).Sub(now)
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		untilReset = time.Unix(resetUnix, 0).Sub(date)
	}
	untilReset = min(untilReset, maxPause)
	b.seen = Seen{Limit: limit, Remaining: remaining, Reset: now.Add(untilReset), At: now}
	b.followCountLocked(now)
}

// followCountLocked holds the hour bucket to the platform's own count: the
// bucket never has more places than the room the count leaves under 95% of
// the hourly limit. The bucket lives in memory and starts full after a
// reload or a failover; this makes it start from the platform's count
// instead, which also holds the token's other users. When no room is left
// (a 2xx with remaining 0 means the hour is spent, and so does a 429
// without retry-after), every request waits for the reset, when the oldest
// request of the hour expires and frees a place.
func (b *Budget) followCountLocked(now time.Time) {
	b.known = true
	used := b.seen.Limit - b.seen.Remaining
	room := int(BudgetShare*float64(min(b.seen.Limit, b.perHour))) - used
	b.hourFullUntil = time.Time{}
	if room <= 0 {
		b.hourFullUntil = b.seen.Reset
		room = 0
	}
	if excess := int(b.hour.TokensAt(now)) - room; excess > 0 {
		b.hour.ReserveN(now, excess)
	}
}

// untilKnown lets requests out one at a time until an answer has carried
// the platform's count: a node that just started knows nothing of the
// hour, which the node before it may have spent. The caller calls release
// once its answer has been observed.
func (b *Budget) untilKnown(ctx context.Context) (release func(), err error) {
	if b.isKnown() {
		return func() {}, nil
	}
	select {
	case b.learning <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release = func() { <-b.learning }
	if b.isKnown() {
		release()
		return func() {}, nil
	}
	return release, nil
}

func (b *Budget) isKnown() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.known
}

// maxPause bounds any pause the platform's headers can ask for: its
// longest window is an hour.
const maxPause = time.Hour

// burstWindow is the platform's burst window: the wait after a burst 429
// whose retry-after cannot be read.
const burstWindow = time.Minute

// retryAfterHeader reads retry-after in either form RFC 9110 allows:
// seconds, or an HTTP date, which is on the platform's clock and so is read
// against the answer's own Date. The wait is bounded by maxPause.
func retryAfterHeader(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		// Bounded before it becomes a Duration, which a huge value would
		// overflow.
		return time.Duration(min(max(secs, 0), int64(maxPause/time.Second))) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if date, err := http.ParseTime(h.Get("Date")); err == nil {
		now = date
	}
	return min(max(at.Sub(now), 0), maxPause), true
}

// burstWait reports whether resp is the platform's burst refusal, and how
// long to wait: DigitalOcean sends retry-after on burst 429s only, so any
// retry-after on a 429 marks one, in whichever form; one that cannot be
// read waits out the burst window, never the hour's reset.
func burstWait(resp *http.Response, now time.Time) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		return 0, false
	}
	if wait, ok := retryAfterHeader(resp.Header, now); ok {
		return wait, true
	}
	return burstWindow, true
}

func (b *Budget) pauseLocked(until time.Time) {
	if until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
}

// LastSeen reports the platform's own count, for status.
func (b *Budget) LastSeen() Seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen
}

// BudgetClass is how a platform request takes its place in the budget;
// its context carries it (WithBudgetClass).
type BudgetClass int

const (
	// ClassRequest: a request someone is waiting on; the default.
	ClassRequest BudgetClass = iota
	// ClassBackground: scheduled work (the periodic sync), which first
	// waits for the background share so the headroom stays free.
	ClassBackground
	// ClassConfigCheck: the token check of a config write that changes the
	// token, the URL or the limits (checkClass). It does not wait for the
	// live budget, which the write may be there to replace (a mount whose
	// limits were set too low could otherwise never raise them); it is one
	// request an operator asked for, and its answer
	// feeds the platform's count to the budget once the write is accepted
	// (HeldAnswer).
	ClassConfigCheck
)

type budgetClassKey struct{}

// WithBudgetClass makes the platform requests made with ctx take their place
// in the budget as class c.
func WithBudgetClass(ctx context.Context, c BudgetClass) context.Context {
	return context.WithValue(ctx, budgetClassKey{}, c)
}

func budgetClassOf(ctx context.Context) BudgetClass {
	c, _ := ctx.Value(budgetClassKey{}).(BudgetClass)
	return c
}

// budgetTransport makes every platform request wait for the budget, and
// feeds every answer's headers back to it.
type budgetTransport struct {
	budget *Budget
	base   http.RoundTripper
}

func (t *budgetTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	release, err := t.budget.untilKnown(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if err := t.budget.take(ctx); err != nil {
		return nil, err
	}
	resp, err := t.base.RoundTrip(r)
	if err == nil {
		if held, ok := ctx.Value(heldAnswerKey{}).(*HeldAnswer); ok {
			held.keep(resp)
		} else {
			t.budget.observe(resp)
		}
	}
	return resp, err
}

// HeldAnswer keeps the rate-limit headers of a config write's token check
// until the write is accepted: they are the count of the token and URL the
// write gives, which are not the live ones until then, and a refused write
// changes nothing, budget included.
type HeldAnswer struct {
	mu   sync.Mutex
	resp *http.Response
}

type heldAnswerKey struct{}

// WithHeldAnswer makes the platform client keep the answer to the request
// made with ctx in h, instead of feeding it to the budget.
func WithHeldAnswer(ctx context.Context, h *HeldAnswer) context.Context {
	return context.WithValue(ctx, heldAnswerKey{}, h)
}

// keep holds the status and headers of the last answer (a retried check
// has several).
func (h *HeldAnswer) keep(resp *http.Response) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.resp = &http.Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone()}
}

// ObserveBy feeds the held answer to b, once the write is accepted.
func (h *HeldAnswer) ObserveBy(b *Budget) {
	h.mu.Lock()
	resp := h.resp
	h.mu.Unlock()
	if resp != nil {
		b.observe(resp)
	}
}

// take waits for the request's place in the budget, by its class.
func (b *Budget) take(ctx context.Context) error {
	switch budgetClassOf(ctx) {
	case ClassConfigCheck:
		return nil
	case ClassBackground:
		if err := b.WaitBackground(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the background share of the mount's platform rate budget (scheduler_headroom_percent) has no place within the timeout: %w", ErrRateLimited)
		}
	}
	return b.wait(ctx)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport underneath.
func (t *budgetTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
