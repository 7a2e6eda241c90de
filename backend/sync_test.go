package backend

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// newSyncEnv is a rotation env (fake clock, switchable replication state)
// whose periodic sync the test ticks by hand on the fake clock.
func newSyncEnv(t *testing.T, config map[string]any) *rotEnv {
	t.Helper()
	r := newRotationEnv(t, config)
	// No background ticker: the test ticks. Initialize set the sync's
	// start on the fake clock.
	r.b.cleanSync(context.Background())
	return r
}

// platformCalls counts the requests that reached the platform's API.
func (e *testEnv) platformCalls() int {
	n := 0
	for route, c := range e.emu.Counts() {
		if strings.Contains(route, " /v2/gen-ai/") {
			n += c
		}
	}
	return n
}

func (r *rotEnv) syncTick() { r.b.syncer.runTick(context.Background()) }

// The periodic sync runs every sync_interval on the active node only: a
// node whose replication state says standby never calls the platform for
// it, however overdue the sync is; sync_interval=0 turns it off.
func TestSync_PeriodicOnlyOnTheActiveNode(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"sync_interval": "1h"})
	r.createKey("watched", anthropicKey("w1"), nil)
	base := r.platformCalls()

	r.advance(59 * time.Minute)
	r.syncTick()
	if got := r.platformCalls(); got != base {
		t.Fatalf("%d platform calls before the interval passed", got-base)
	}

	r.sys.standby.Store(true)
	for range 3 {
		r.advance(2 * time.Hour)
		r.syncTick()
	}
	if got := r.platformCalls(); got != base {
		t.Fatalf("a standby made %d platform calls", got-base)
	}
	if _, err := r.request(logical.UpdateOperation, "sync", nil); err != logical.ErrReadOnly {
		t.Fatalf("sync on a standby: %v, want it forwarded to the active node", err)
	}
	if got := r.platformCalls(); got != base {
		t.Fatalf("a standby made %d platform calls", got-base)
	}

	r.sys.standby.Store(false)
	r.syncTick()
	if got := r.platformCalls() - base; got != 2 {
		t.Fatalf("the active node made %d platform calls, want one listing page per provider", got)
	}
	st := r.mustOK(logical.ReadOperation, "status", nil).Data
	if st["sync_last_run"] != ts(r.clock.Now()) || st["sync_interval_seconds"] != int64(3600) {
		t.Fatalf("status: sync_last_run %v interval %v", st["sync_last_run"], st["sync_interval_seconds"])
	}
	if status, synced := r.syncStatus("watched"); status != syncInSync || synced != ts(r.clock.Now()) {
		t.Fatalf("watched: %v %v", status, synced)
	}

	// Not again until the interval passed since the last run.
	base = r.platformCalls()
	r.advance(30 * time.Minute)
	r.syncTick()
	if got := r.platformCalls(); got != base {
		t.Fatalf("synced again after 30 minutes")
	}
	r.advance(30 * time.Minute)
	r.syncTick()
	if got := r.platformCalls() - base; got != 2 {
		t.Fatalf("%d calls an interval later, want 2", got)
	}

	// Off.
	r.mustOK(logical.UpdateOperation, "config", map[string]any{"sync_interval": 0})
	if got := r.mustOK(logical.ReadOperation, "config", nil).Data["sync_interval"]; got != int64(0) {
		t.Fatalf("config sync_interval = %v", got)
	}
	base = r.platformCalls()
	r.advance(48 * time.Hour)
	r.syncTick()
	if got := r.platformCalls(); got != base {
		t.Fatal("synced with sync_interval=0")
	}
}

// A new node does not sync at once when the last completed sync (in
// storage) is recent: a failover keeps the pace.
func TestSync_PeriodicKeepsThePaceAcrossRestarts(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"sync_interval": "1h"})
	r.advance(time.Hour)
	r.syncTick()
	r.advance(10 * time.Minute)
	r.restart()
	r.b.cleanSync(context.Background())
	base := r.platformCalls()
	r.syncTick()
	if got := r.platformCalls(); got != base {
		t.Fatal("the new node synced although the last sync was 10 minutes ago")
	}
	r.advance(50 * time.Minute)
	r.syncTick()
	if got := r.platformCalls() - base; got != 2 {
		t.Fatalf("%d calls when due, want 2", got)
	}
}

// Config: sync_interval defaults to 10 minutes and refuses a negative value.
func TestSync_IntervalConfig(t *testing.T) {
	e := newTestEnv(t, nil)
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["sync_interval"]; got != int64(600) {
		t.Fatalf("default sync_interval = %v", got)
	}
	e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"sync_interval": -5}, "sync_interval")
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"sync_interval": "30m"})
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["sync_interval"]; got != int64(1800) {
		t.Fatalf("sync_interval = %v", got)
	}
}

// A sync of 10,000 platform keys stays within the rate budget: 50 listing
// pages of 200 for Anthropic and one for OpenAI, paced by the mount's budget
// (no 429 from a platform that enforces the same limits), and nothing more.
func TestSync_TenThousandKeysWithinTheBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 10,000 platform keys")
	}
	const perMinute, perHour = 3000, 5000
	e := newTestEnv(t, map[string]any{"rate_limit_per_minute": perMinute, "rate_limit_per_hour": perHour})
	e.createManaged("the-managed-one", anthropicKey("bulk-vault"))

	// Someone else's token fills the platform: its requests count against
	// its own windows, not the mount's.
	const seedToken = "seed-token"
	e.emu.AddToken(seedToken)
	e.emu.SetRateLimits(1<<30, 1<<30)
	seed, err := godo.New(&http.Client{Transport: bearer{seedToken}}, godo.SetBaseURL(e.srv.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	const outside = 9999
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 1)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				_, _, err := seed.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{
					Name: fmt.Sprintf("bulk-%05d", i), ApiKey: anthropicKey(fmt.Sprintf("b%05d", i)),
				})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range outside {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("seeding: %v", err)
	default:
	}
	e.emu.SetRateLimits(perMinute, perHour)

	countsBefore, statusesBefore := e.emu.Counts(), e.emu.Statuses()
	start := time.Now()
	got := e.sync()
	elapsed := time.Since(start)
	countsAfter, statusesAfter := e.emu.Counts(), e.emu.Statuses()

	wantCounts(t, got, map[string]int{"in_sync": 1, "unmanaged": outside, "missing": 0})
	diff := func(route string) int { return countsAfter[route] - countsBefore[route] }
	if n := diff("GET /v2/gen-ai/anthropic/keys"); n != 50 {
		t.Errorf("%d Anthropic listing pages, want 50 (10,000 keys, 200 a page)", n)
	}
	if n := diff("GET /v2/gen-ai/openai/keys"); n != 1 {
		t.Errorf("%d OpenAI listing pages, want 1", n)
	}
	total := 0
	for route := range countsAfter {
		if strings.Contains(route, " /v2/gen-ai/") {
			total += diff(route)
		}
	}
	if total != 51 {
		t.Errorf("the sync made %d platform requests, want 51", total)
	}
	if n := statusesAfter[http.StatusTooManyRequests] - statusesBefore[http.StatusTooManyRequests]; n != 0 {
		t.Errorf("the platform answered 429 %d times", n)
	}
	// Paced: the budget spreads 51 requests at 95% of 3,000 a minute.
	if min := time.Duration(float64(total-1) / (platform.BudgetShare * perMinute / 60) * float64(time.Second)); elapsed < min*9/10 {
		t.Errorf("the sync took %v; the budget allows it no faster than %v", elapsed, min)
	}
	keys := e.mustOK(logical.ListOperation, "platform-keys/", nil).Data["keys"].([]string)
	if len(keys) != outside {
		t.Fatalf("platform-keys/ lists %d keys, want %d", len(keys), outside)
	}
	t.Logf("sync of %d keys: %d requests in %v", outside+1, total, elapsed)
}

// Issue 16: the periodic sync ignored scheduler_headroom_percent; only
// rotations waited for the background share. Every platform request of a
// periodic sync now takes a place of the background limiter. The test gives
// that limiter exactly one place, never refilled (rate 0, burst 1): the
// periodic sync, which needs a listing per provider, gets one request out
// and fails on the next; a sync on request (someone waiting on it) is not
// scheduled work and does not wait for the share.
func TestSync_PeriodicWaitsForTheBackgroundShare(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"sync_interval": "1h"})
	r.createKey("paced", anthropicKey("paced1"), nil)
	// A headroom of 100% leaves the background share its one place and
	// never refills it (rate 0, burst 1); the limits stay the config's.
	cfg := r.b.cached.config
	r.b.budget.Configure(cfg.RateLimitPerMinute, cfg.RateLimitPerHour, 100)
	base := r.platformCalls()

	r.advance(time.Hour)
	r.syncTick()
	if got := r.platformCalls() - base; got != 1 {
		t.Fatalf("the periodic sync made %d platform requests with one place of the background share", got)
	}
	st, err := getSyncState(context.Background(), r.storage)
	if err != nil || !strings.Contains(st.LastError, "scheduler_headroom_percent") {
		t.Fatalf("sync state = %+v, %v; want the background share named", st, err)
	}

	r.mustOK(logical.UpdateOperation, "sync", nil)
}
