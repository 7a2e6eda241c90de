package backend

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// rotEnv is a testEnv whose scheduler runs on a fake clock and ticks only
// when the test says so.
type rotEnv struct {
	*testEnv
	clock   *fakeClock
	sys     *switchableSystemView
	reads   *countingStorage // what the scheduler reads, for the idle-tick test
	stopped bool
}

// t0 is a Monday, 02:00 UTC.
var t0 = time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)

func newRotationEnv(t *testing.T, config map[string]any) *rotEnv {
	t.Helper()
	r := &rotEnv{testEnv: newTestEnv(t, config), clock: &fakeClock{now: t0}}
	r.start(r.b)
	t.Cleanup(func() { r.stop() })
	return r
}

// switchableSystemView lets a test turn a node into a performance standby
// and back.
type switchableSystemView struct {
	logical.StaticSystemView
	standby atomic.Bool
}

func (s *switchableSystemView) ReplicationState() consts.ReplicationState {
	if s.standby.Load() {
		return consts.ReplicationPerformanceStandby
	}
	return 0
}

// countingStorage counts reads.
type countingStorage struct {
	logical.Storage
	gets, lists atomic.Int64
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.gets.Add(1)
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	c.lists.Add(1)
	return c.Storage.List(ctx, prefix)
}

// start wires b to the fake clock and a switchable system view and runs its
// InitializeFunc, as Vault does after mounting.
func (r *rotEnv) start(b *gradientBackend) {
	r.t.Helper()
	r.sys = &switchableSystemView{StaticSystemView: logical.StaticSystemView{
		DefaultLeaseTTLVal: 24 * time.Hour, MaxLeaseTTLVal: 768 * time.Hour,
	}}
	logger := hclog.New(&hclog.LoggerOptions{Output: r.logs, Level: hclog.Trace})
	if err := b.Setup(context.Background(), &logical.BackendConfig{Logger: logger, System: r.sys, StorageView: r.storage}); err != nil {
		r.t.Fatal(err)
	}
	b.clock = r.clock.Now
	b.tuning.rotationTick = 0 // the test ticks
	r.reads = &countingStorage{Storage: r.storage}
	if err := b.Initialize(context.Background(), &logical.InitializationRequest{Storage: r.reads}); err != nil {
		r.t.Fatal(err)
	}
	b.syncer.folding.Wait() // the fold of old sync records runs in the background
	r.b = b
	r.stopped = false
}

func (r *rotEnv) stop() {
	if !r.stopped {
		r.b.Cleanup(context.Background())
		r.stopped = true
	}
}

// restart stops the backend and starts a new one on the same storage: a
// plugin reload, a Vault restart or a failover to another node.
func (r *rotEnv) restart() {
	r.t.Helper()
	r.stop()
	b, err := factory(context.Background(), &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), System: logical.TestSystemView(), StorageView: r.storage,
	}, testTuning())
	if err != nil {
		r.t.Fatal(err)
	}
	r.start(b)
}

func (r *rotEnv) tick()                   { r.b.rotation.runTick(context.Background()) }
func (r *rotEnv) advance(d time.Duration) { r.clock.Advance(d) }
func (r *rotEnv) advanceTo(t time.Time)   { r.clock.Advance(t.Sub(r.clock.Now())) }
func (r *rotEnv) tickAt(t time.Time)      { r.advanceTo(t); r.tick() }
func (r *rotEnv) read(name string) map[string]any {
	return r.mustOK(logical.ReadOperation, "keys/"+name, nil).Data
}

// createKey creates an Anthropic key with rotation settings and returns its
// platform uuid.
func (r *rotEnv) createKey(name, apiKey string, settings map[string]any) string {
	r.t.Helper()
	data := map[string]any{"provider": "anthropic", "api_key": apiKey}
	for k, v := range settings {
		data[k] = v
	}
	return r.mustOK(logical.CreateOperation, "keys/"+name, data).Data["uuid"].(string)
}

func (r *rotEnv) stage(name, apiKey string) {
	r.t.Helper()
	r.mustOK(logical.UpdateOperation, "keys/"+name, map[string]any{"next_api_key": apiKey})
}

// platformSecret is the secret the platform holds for the key named name.
func (r *rotEnv) platformSecret(name string) string {
	r.t.Helper()
	pk := r.platformKeyNamed(platform.Anthropic, name)
	if pk == nil {
		r.t.Fatalf("no platform key %s", name)
	}
	return pk.Secret
}

func (r *rotEnv) assertVersion(name string, want int) {
	r.t.Helper()
	if got := r.read(name)["version"]; got != want {
		r.t.Fatalf("%s version = %v, want %d", name, got, want)
	}
}

func (r *rotEnv) countLog(fragment string) int { return strings.Count(r.logs.String(), fragment) }

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func TestRotation_PeriodPromotesTheStagedKey(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2 := anthropicKey("per1"), anthropicKey("per2")
	uuid := r.createKey("periodic", k1, map[string]any{"rotation_period": "1h"})
	agent := r.createAgent("periodic-agent", platform.Anthropic, uuid)
	r.stage("periodic", k2)

	r.tickAt(t0.Add(59 * time.Minute))
	if r.platformSecret("periodic") != k1 {
		t.Fatal("rotated before the period ended")
	}
	if got := r.read("periodic"); got["ttl"] != int64(60) || got["rotation_status"] != rotationOK {
		t.Fatalf("a minute before: %v", got)
	}

	r.tickAt(t0.Add(time.Hour))
	if r.platformSecret("periodic") != k2 {
		t.Fatal("the staged key was not pushed")
	}
	if pk := r.platformKeyNamed(platform.Anthropic, "periodic"); pk.UUID != uuid {
		t.Fatalf("uuid changed: %s -> %s", uuid, pk.UUID)
	}
	if a, _ := r.agentKey(agent.Uuid); a != uuid {
		t.Fatalf("the agent now uses %s", a)
	}
	got := r.read("periodic")
	want := map[string]any{
		"version": 2, "last_vault_rotation": ts(t0.Add(time.Hour)), "next_vault_rotation": ts(t0.Add(2 * time.Hour)),
		"previous_key_hint": k1[len(k1)-4:], "key_hint": k2[len(k2)-4:], "next_key_hint": "", "rotation_status": rotationOK,
		"ttl": int64(3600), "rotation_error": "",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if creds := r.mustOK(logical.ReadOperation, "creds/periodic", nil); creds.Data["api_key"] != k2 {
		t.Fatal("creds still return the old key")
	}
}

func TestRotation_OverdueWarnsOncePerPeriodUntilAKeyIsStaged(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("late", anthropicKey("late1"), map[string]any{"rotation_period": "1h"})
	const warning = "scheduled rotation is overdue"

	r.tickAt(t0.Add(time.Hour))
	if got := r.read("late"); got["rotation_status"] != rotationOverdue || got["ttl"] != int64(0) {
		t.Fatalf("due with nothing staged: %v", got)
	}
	for i := 0; i < 5; i++ {
		r.advance(5 * time.Second)
		r.tick()
	}
	if n := r.countLog(warning); n != 1 {
		t.Fatalf("%d overdue warnings, want 1", n)
	}
	r.assertVersion("late", 1)

	k2 := anthropicKey("late2")
	r.stage("late", k2)
	if got := r.read("late"); got["rotation_status"] != rotationDue {
		t.Fatalf("staged while overdue: %v", got["rotation_status"])
	}
	r.advance(5 * time.Second)
	r.tick()
	if r.platformSecret("late") != k2 {
		t.Fatal("the key staged while overdue was not promoted at the next tick")
	}
	rotatedAt := r.clock.Now()

	// The next period, again with nothing staged: one more warning.
	r.tickAt(rotatedAt.Add(time.Hour))
	r.advance(5 * time.Second)
	r.tick()
	if n := r.countLog(warning); n != 2 {
		t.Fatalf("%d overdue warnings after the second period, want 2", n)
	}
	// Still overdue a period later: one warning per period, not per tick.
	for i := 0; i < 24; i++ {
		r.advance(5 * time.Minute)
		r.tick()
	}
	if n := r.countLog(warning); n != 4 {
		t.Fatalf("%d overdue warnings after two more hours overdue, want 4", n)
	}
}

func TestRotation_FailureRetriesWithBackoffAndRecovers(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2 := anthropicKey("fail1"), anthropicKey("fail2")
	r.createKey("flaky", k1, map[string]any{"rotation_period": "24h"})
	r.stage("flaky", k2)
	const put = "PUT /v2/gen-ai/anthropic/keys/{uuid}"

	// One platform 500: the rotation fails, the WAL's immediate rollback
	// pushes the stored secret back, the key stays usable.
	r.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 500, Count: platform.MaxAttempts})
	due := t0.Add(24 * time.Hour)
	r.tickAt(due)
	got := r.read("flaky")
	if got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "HTTP 500") || got["version"] != 1 {
		t.Fatalf("after a failure: %v", got)
	}
	if r.platformSecret("flaky") != k1 {
		t.Fatal("the platform does not hold the current key after a failed rotation")
	}
	if creds := r.mustOK(logical.ReadOperation, "creds/flaky", nil); creds.Data["api_key"] != k1 {
		t.Fatal("creds changed after a failed rotation")
	}
	// A 5xx is ambiguous: its entry stays for the periodic rollback.
	assertSettlesOnRollback(t, r.testEnv)

	// Not retried before the backoff; retried after it.
	puts := r.emu.Counts()[put]
	r.tickAt(due.Add(20 * time.Second))
	if r.emu.Counts()[put] != puts {
		t.Fatal("retried before the backoff")
	}
	r.tickAt(due.Add(firstRetryDelay))
	got = r.read("flaky")
	if r.platformSecret("flaky") != k2 || got["rotation_status"] != rotationOK || got["rotation_error"] != "" || got["version"] != 2 {
		t.Fatalf("after the retry: %v", got)
	}
}

func TestRotation_RetriesAreBoundedPerPeriod(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("down", anthropicKey("bound1"), map[string]any{"rotation_period": "24h"})
	r.stage("down", anthropicKey("bound2"))
	const verify = "GET /anthropic/v1/models"
	r.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 503, Count: 1000})

	due := t0.Add(24 * time.Hour)
	before := r.emu.Counts()[verify]
	r.advanceTo(due)
	for i := 0; i < 200; i++ { // 200 ticks 10 minutes apart: 33 hours
		r.tick()
		r.advance(10 * time.Minute)
	}
	// Each rotation attempt asks the provider up to platform.MaxAttempts times
	// (internal/platform/retry.go); the bound is on rotation attempts.
	requests := r.emu.Counts()[verify] - before
	attempts := requests / platform.MaxAttempts
	t.Logf("%d rotation attempts (%d verification requests) in 33 hours", attempts, requests)
	// Two periods start in those 33 hours: at most the budget in each.
	if attempts < maxAttemptsPerPeriod || attempts > 2*maxAttemptsPerPeriod {
		t.Fatalf("%d attempts in two periods, want %d to %d", attempts, maxAttemptsPerPeriod, 2*maxAttemptsPerPeriod)
	}
	if got := r.read("down"); got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "could not be verified") {
		t.Fatalf("after the budget: %v", got)
	}
}

// hashicorp/vault issues 7222 and 7502: static roles stuck at ttl 0 forever,
// because a failed rotation or a rewrite of the role dropped it from the
// queue.
func TestRotation_Bug7222_NeverStuckAtTTLZero(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("stuck", anthropicKey("ttl1"), map[string]any{"rotation_period": "1h"})
	r.stage("stuck", anthropicKey("ttl2"))

	// Rewrites between rotations keep the key queued.
	r.mustOK(logical.UpdateOperation, "keys/stuck", map[string]any{"description": "rewritten"})
	r.mustOK(logical.UpdateOperation, "keys/stuck", map[string]any{"rotation_period": "1h"})
	if n := r.b.rotation.queue.Len(); n != 1 {
		t.Fatalf("queue holds %d keys after rewrites, want 1", n)
	}

	r.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 502, Count: platform.MaxAttempts})
	r.tickAt(t0.Add(time.Hour))
	if got := r.read("stuck"); got["ttl"] != int64(0) || got["rotation_status"] != rotationFailed {
		t.Fatalf("after the failure: %v", got)
	}
	if n := r.b.rotation.queue.Len(); n != 1 {
		t.Fatal("a failed rotation dropped the key from the queue")
	}
	r.tickAt(t0.Add(time.Hour + firstRetryDelay))
	got := r.read("stuck")
	if got["ttl"] != int64(3600) || got["rotation_status"] != rotationOK || got["version"] != 2 {
		t.Fatalf("after the retry: %v", got)
	}
}

// hashicorp/vault PR 28989: a failing rotation kept its input in the WAL and
// retried it forever. Here a staged key the provider rejects is tried once in
// its period, leaves no WAL entry behind, and a newly staged key is tried at
// once.
func TestRotation_Bug28989_RejectedKeyIsNotRetriedForever(t *testing.T) {
	r := newRotationEnv(t, nil)
	bad, good := anthropicKey("wal2"), anthropicKey("wal3")
	r.createKey("rejected", anthropicKey("wal1"), map[string]any{"rotation_period": "24h"})
	r.stage("rejected", bad)
	r.emu.Revoke(bad) // revoked after it was staged
	const verify = "GET /anthropic/v1/models"

	due := t0.Add(24 * time.Hour)
	r.tickAt(due)
	got := r.read("rejected")
	if got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "rejected by the provider (HTTP 401)") {
		t.Fatalf("after the rejection: %v", got)
	}
	assertNoWAL(t, r.testEnv)

	verifies := r.emu.Counts()[verify]
	for i := 0; i < 50; i++ {
		r.advance(10 * time.Minute)
		r.tick()
		if i == 25 {
			r.restart()
		}
	}
	if n := r.emu.Counts()[verify] - verifies; n != 0 {
		t.Fatalf("the rejected key was tried %d more times in the same period", n)
	}

	r.stage("rejected", good)
	r.advance(time.Second)
	r.tick()
	if got := r.read("rejected"); got["version"] != 2 || got["rotation_status"] != rotationOK {
		t.Fatalf("the newly staged key was not promoted: %v", got)
	}
}

func TestRotation_RenameKeepsTheSchedule(t *testing.T) {
	r := newRotationEnv(t, nil)
	k2 := anthropicKey("ren2")
	r.createKey("old-name", anthropicKey("ren1"), map[string]any{"rotation_period": "1h"})
	r.stage("old-name", k2)
	r.mustOK(logical.UpdateOperation, "rename/old-name", map[string]any{"new_name": "new-name"})
	r.tickAt(t0.Add(time.Hour))
	if r.platformSecret("new-name") != k2 {
		t.Fatal("the renamed key did not rotate")
	}
}

// A tick with nothing due reads nothing and pops nothing.
func TestRotation_IdleTickIsConstantTime(t *testing.T) {
	r := newRotationEnv(t, nil)
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		k := &keyEntry{Name: fmt.Sprintf("bulk-%03d", i), Provider: platform.Anthropic,
			UUID: fmt.Sprintf("uuid-%03d", i), APIKey: anthropicKey("bulk"), Version: 1,
			rotationFields: rotationFields{RotationPeriod: 24 * time.Hour, LastVaultRotation: t0, NextVaultRotation: t0.Add(24 * time.Hour)}}
		if err := putKey(ctx, r.storage, k); err != nil {
			t.Fatal(err)
		}
	}
	r.restart()
	r.tick() // builds the queue
	if n := r.b.rotation.queue.Len(); n != 300 {
		t.Fatalf("queue holds %d", n)
	}
	gets, lists := r.reads.gets.Load(), r.reads.lists.Load()
	for i := 0; i < 1000; i++ {
		r.advance(5 * time.Second)
		r.tick()
	}
	if r.reads.gets.Load() != gets || r.reads.lists.Load() != lists {
		t.Fatalf("idle ticks read storage: %d gets, %d lists", r.reads.gets.Load()-gets, r.reads.lists.Load()-lists)
	}
}

// The background ticker runs on its own after Initialize and stops on
// Cleanup.
func TestRotation_BackgroundTicker(t *testing.T) {
	e := newTestEnv(t, nil)
	clock := &fakeClock{now: t0}
	e.b.clock = clock.Now
	e.b.tuning.rotationTick = 10 * time.Millisecond
	if err := e.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: e.storage}); err != nil {
		t.Fatal(err)
	}
	defer e.b.Cleanup(context.Background())
	k2 := anthropicKey("bg2")
	e.mustOK(logical.CreateOperation, "keys/background", map[string]any{"provider": "anthropic", "api_key": anthropicKey("bg1"), "rotation_period": "1h"})
	e.mustOK(logical.UpdateOperation, "keys/background", map[string]any{"next_api_key": k2})
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for e.platformKeyNamed(platform.Anthropic, "background").Secret != k2 {
		if time.Now().After(deadline) {
			t.Fatal("the ticker did not rotate the key")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.b.Cleanup(context.Background())
	if state, _, _ := e.b.rotation.status(); state != schedulerStopped {
		t.Fatalf("after Cleanup the scheduler is %s", state)
	}
}

func TestRotation_PausedKeyIsNotRotated(t *testing.T) {
	r := newRotationEnv(t, nil)
	k2 := anthropicKey("pause2")
	r.createKey("paused", anthropicKey("pause1"), map[string]any{"rotation_period": "1h"})
	r.stage("paused", k2)
	r.mustOK(logical.UpdateOperation, "keys/paused", map[string]any{"disable_automated_rotation": true})
	r.tickAt(t0.Add(3 * time.Hour))
	r.assertVersion("paused", 1)
	if got := r.read("paused"); got["rotation_status"] != rotationOK || got["rotation_period"] != int64(3600) {
		t.Fatalf("paused key: %v", got)
	}
	// Resuming counts the period from then: not due at once.
	r.mustOK(logical.UpdateOperation, "keys/paused", map[string]any{"disable_automated_rotation": false})
	r.advance(time.Second)
	r.tick()
	r.assertVersion("paused", 1)
	r.tickAt(t0.Add(4 * time.Hour))
	if r.platformSecret("paused") != k2 {
		t.Fatal("the resumed key did not rotate a period later")
	}
}

// A scheduled rotation whose store fails after the platform took the new
// key: the write-ahead log's undo pushes the stored key back at once, and
// the rotation is tried again later.
func TestRotation_StorageFailurePushesTheStoredKeyBack(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2 := anthropicKey("sto1"), anthropicKey("sto2")
	r.createKey("storage", k1, map[string]any{"rotation_period": "1h"})
	r.stage("storage", k2)

	r.storage.failUnder(keyStoragePrefix)
	r.tickAt(t0.Add(time.Hour))
	r.storage.failUnder("")
	if r.platformSecret("storage") != k1 {
		t.Fatal("the platform kept a key Vault did not store")
	}
	r.assertVersion("storage", 1)
	assertNoWAL(t, r.testEnv)

	r.tickAt(t0.Add(time.Hour + firstRetryDelay))
	if r.platformSecret("storage") != k2 {
		t.Fatal("not retried after the storage recovered")
	}
	r.assertVersion("storage", 2)
}

// On a schedule, a refusal waits for the next scheduled time.
func TestRotation_ScheduledFailureWaitsForTheNextScheduledTime(t *testing.T) {
	r := newRotationEnv(t, nil)
	bad := anthropicKey("cronfail2")
	r.createKey("cron-fail", anthropicKey("cronfail1"), map[string]any{"rotation_schedule": "0 3 * * *"})
	r.stage("cron-fail", bad)
	r.emu.Revoke(bad)
	r.tickAt(t0.Add(time.Hour))
	k, err := getKey(context.Background(), r.storage, "cron-fail")
	if err != nil || k.RotationError == "" || !k.RetryAt.Equal(t0.Add(25*time.Hour)) {
		t.Fatalf("retry at %v (error %q), want the next 03:00", k.RetryAt, k.RotationError)
	}
}
