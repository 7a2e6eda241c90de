package backend

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
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
	pk := r.platformKeyNamed(providerAnthropic, name)
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

func TestRotation_SettingsAreValidatedWithTheSDKsRules(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("settings", anthropicKey("set1"), nil)
	cases := map[string]struct {
		data     map[string]any
		fragment string
	}{
		"period and schedule":   {map[string]any{"rotation_period": "1h", "rotation_schedule": "0 3 * * *"}, "mutually exclusive fields rotation_schedule and rotation_period"},
		"period below minimum":  {map[string]any{"rotation_period": "30s"}, "rotation_period must be at least 1m0s"},
		"bad cron":              {map[string]any{"rotation_schedule": "every day"}, "failed to parse provided rotation_schedule"},
		"six-field cron":        {map[string]any{"rotation_schedule": "0 0 3 * * *"}, "failed to parse provided rotation_schedule"},
		"window without sched":  {map[string]any{"rotation_window": "2h"}, "cannot use rotation_window without rotation_schedule"},
		"window with period":    {map[string]any{"rotation_period": "2h", "rotation_window": "2h"}, "rotation_window does not apply to period"},
		"window too short":      {map[string]any{"rotation_schedule": "0 3 * * *", "rotation_window": "10m"}, "rotation_window must be 3600 seconds or more"},
		"staged and rotate":     {map[string]any{"api_key": anthropicKey("set2"), "next_api_key": anthropicKey("set3")}, "not both"},
		"staged wrong provider": {map[string]any{"next_api_key": openAIKey("set4")}, "next_api_key: does not look like an Anthropic key"},
		"staged is current":     {map[string]any{"next_api_key": anthropicKey("set1")}, "next_api_key is the key in use now"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			before := r.read("settings")
			r.mustBadRequest(logical.UpdateOperation, "keys/settings", tc.data, tc.fragment)
			if after := r.read("settings"); after["next_vault_rotation"] != before["next_vault_rotation"] || after["version"] != before["version"] {
				t.Fatalf("a refused write changed the key: %v -> %v", before, after)
			}
		})
	}

	// A staged key is verified with the provider when it is staged.
	rejected := anthropicKey("set5")
	r.emu.Revoke(rejected)
	r.mustBadRequest(logical.UpdateOperation, "keys/settings", map[string]any{"next_api_key": rejected},
		"next_api_key: the anthropic API key was rejected by the provider (HTTP 401)")
	// Staging needs an existing key.
	r.mustBadRequest(logical.CreateOperation, "keys/settings-2", map[string]any{
		"provider": "anthropic", "api_key": anthropicKey("set6"), "next_api_key": anthropicKey("set7"),
	}, "create the key with api_key first")
	// The minimum comes from a backend setting, never from a field.
	r.b.tuning.minRotationPeriod = time.Second
	r.mustOK(logical.UpdateOperation, "keys/settings", map[string]any{"rotation_period": "30s"})
}

func TestRotation_SettingsReadBackAndTurnOff(t *testing.T) {
	r := newRotationEnv(t, nil)
	key := anthropicKey("read1")
	r.createKey("reader", key, nil)

	got := r.read("reader")
	if got["ttl"] != int64(0) || got["rotation_status"] != rotationOK || got["next_vault_rotation"] != nil || got["last_vault_rotation"] != ts(t0) {
		t.Fatalf("a key without rotation reads %v", got)
	}

	// A period set on an old key counts from when it was written.
	r.advance(30 * 24 * time.Hour)
	setAt := r.clock.Now()
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"rotation_period": "24h"}).Data
	if got["next_vault_rotation"] != ts(setAt.Add(24*time.Hour)) || got["ttl"] != int64(86400) || got["rotation_period"] != int64(86400) {
		t.Fatalf("after setting a period: %v", got)
	}

	// Writing the same settings again does not postpone the rotation.
	r.advance(time.Hour)
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"rotation_period": "24h", "description": "again"}).Data
	if got["next_vault_rotation"] != ts(setAt.Add(24*time.Hour)) {
		t.Fatalf("rewriting the same period moved the rotation: %v", got["next_vault_rotation"])
	}

	// A schedule replaces the period.
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"rotation_schedule": "0 3 * * *", "rotation_window": "2h"}).Data
	if got["rotation_period"] != int64(0) || got["rotation_schedule"] != "0 3 * * *" || got["rotation_window"] != int64(7200) {
		t.Fatalf("after setting a schedule: %v", got)
	}
	if want := time.Date(2026, 4, 2, 3, 0, 0, 0, time.UTC); got["next_vault_rotation"] != ts(want) {
		t.Fatalf("next = %v, want %s", got["next_vault_rotation"], ts(want))
	}

	// Pausing keeps the settings and shows no next rotation.
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"disable_automated_rotation": true}).Data
	if got["rotation_schedule"] != "0 3 * * *" || got["next_vault_rotation"] != nil || got["ttl"] != int64(0) {
		t.Fatalf("paused: %v", got)
	}
	if n := r.b.rotation.queue.Len(); n != 0 {
		t.Fatalf("a paused key is queued (%d)", n)
	}
	r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"disable_automated_rotation": false})
	if n := r.b.rotation.queue.Len(); n != 1 {
		t.Fatalf("a resumed key is not queued (%d)", n)
	}

	// Clearing the schedule (and there is no period) turns rotation off.
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"rotation_schedule": ""}).Data
	if got["rotation_schedule"] != "" || got["rotation_window"] != int64(0) || got["next_vault_rotation"] != nil {
		t.Fatalf("cleared: %v", got)
	}

	// Staging shows a hint and a time, never the key.
	next := anthropicKey("read2")
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"next_api_key": next + "\n"}).Data
	if got["next_key_hint"] != next[len(next)-4:] || got["next_key_staged_at"] != ts(r.clock.Now()) {
		t.Fatalf("staged: %v", got)
	}
	for k, v := range got {
		if s, ok := v.(string); ok && strings.Contains(s, next) {
			t.Fatalf("%s returns the staged key", k)
		}
	}
	k, _ := getKey(context.Background(), r.storage, "reader")
	if k.NextAPIKey != next {
		t.Fatalf("staged key stored as %q", keyHint(k.NextAPIKey))
	}
	// "" unstages.
	got = r.mustOK(logical.UpdateOperation, "keys/reader", map[string]any{"next_api_key": ""}).Data
	if got["next_key_hint"] != "" || got["next_key_staged_at"] != nil {
		t.Fatalf("unstaged: %v", got)
	}

	// Settings on create.
	got = r.mustOK(logical.CreateOperation, "keys/created-with", map[string]any{
		"provider": "anthropic", "api_key": anthropicKey("read3"), "rotation_period": "1h",
	}).Data
	if got["next_vault_rotation"] != ts(r.clock.Now().Add(time.Hour)) {
		t.Fatalf("created with a period: %v", got)
	}
}

func TestRotation_PeriodPromotesTheStagedKey(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2 := anthropicKey("per1"), anthropicKey("per2")
	uuid := r.createKey("periodic", k1, map[string]any{"rotation_period": "1h"})
	agent := r.createAgent("periodic-agent", providerAnthropic, uuid)
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
	if pk := r.platformKeyNamed(providerAnthropic, "periodic"); pk.UUID != uuid {
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

func TestRotation_CronSchedule(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2, k3 := anthropicKey("cron1"), anthropicKey("cron2"), anthropicKey("cron3")
	r.createKey("nightly", k1, map[string]any{"rotation_schedule": "0 3 * * *"})
	if got := r.read("nightly"); got["next_vault_rotation"] != ts(t0.Add(time.Hour)) || got["ttl"] != int64(3600) {
		t.Fatalf("next = %v ttl = %v", got["next_vault_rotation"], got["ttl"])
	}
	r.stage("nightly", k2)
	r.tickAt(t0.Add(59*time.Minute + 59*time.Second))
	if r.platformSecret("nightly") != k1 {
		t.Fatal("rotated before 03:00")
	}
	r.tickAt(t0.Add(time.Hour))
	if r.platformSecret("nightly") != k2 {
		t.Fatal("not rotated at 03:00")
	}
	if got := r.read("nightly"); got["next_vault_rotation"] != ts(t0.Add(25*time.Hour)) {
		t.Fatalf("next after the rotation = %v", got["next_vault_rotation"])
	}
	// A manual rotation in between: the schedule still says tomorrow 03:00.
	r.mustOK(logical.UpdateOperation, "keys/nightly/rotate", map[string]any{"api_key": k3})
	if got := r.read("nightly"); got["next_vault_rotation"] != ts(t0.Add(25*time.Hour)) || got["version"] != 3 {
		t.Fatalf("after a manual rotation: %v", got)
	}
}

func TestRotation_Window(t *testing.T) {
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 3, day, hour, minute, 0, 0, time.UTC) }
	settings := map[string]any{"rotation_schedule": "0 3 * * *", "rotation_window": "2h"}

	t.Run("inside", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		k2 := anthropicKey("win2")
		r.createKey("inside", anthropicKey("win1"), settings)
		r.stage("inside", k2)
		r.tickAt(at(2, 4, 30)) // 90 minutes into the window
		if r.platformSecret("inside") != k2 {
			t.Fatal("not rotated inside the window")
		}
	})

	t.Run("outside", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		k2 := anthropicKey("win4")
		r.createKey("outside", anthropicKey("win3"), settings)
		r.tickAt(at(2, 3, 0)) // due, nothing staged
		r.tickAt(at(2, 5, 0)) // the window closes
		if got := r.read("outside"); got["next_vault_rotation"] != ts(at(3, 3, 0)) || got["rotation_status"] != rotationOK {
			t.Fatalf("after the window: %v", got)
		}
		r.advance(30 * time.Minute)
		r.stage("outside", k2)
		r.tick()
		r.assertVersion("outside", 1)
		r.tickAt(at(3, 3, 0))
		if r.platformSecret("outside") != k2 {
			t.Fatal("not rotated in the next window")
		}
	})

	t.Run("missed while down", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		r.createKey("missed", anthropicKey("win5"), settings)
		r.stage("missed", anthropicKey("win6"))
		r.stop()
		r.advanceTo(at(2, 6, 0)) // down from 02:00 to 06:00: the 03:00-05:00 window passed
		r.restart()
		r.tick()
		r.assertVersion("missed", 1)
		if got := r.read("missed"); got["next_vault_rotation"] != ts(at(3, 3, 0)) {
			t.Fatalf("next after a missed window = %v", got["next_vault_rotation"])
		}
		if r.countLog("rotation window missed") != 1 {
			t.Fatal("a missed window is not logged")
		}
	})

	t.Run("missed one window, back inside the next", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		k2 := anthropicKey("win10")
		r.createKey("next-window", anthropicKey("win9"), settings)
		r.stage("next-window", k2)
		r.stop()
		r.advanceTo(at(3, 3, 30)) // down through the 2nd's window, back inside the 3rd's
		r.restart()
		r.tick()
		if r.platformSecret("next-window") != k2 {
			t.Fatal("not rotated inside the window of the next scheduled time")
		}
		if got := r.read("next-window"); got["next_vault_rotation"] != ts(at(4, 3, 0)) {
			t.Fatalf("next = %v", got["next_vault_rotation"])
		}
	})

	t.Run("a spent budget retries in the next window", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		k2 := anthropicKey("win12")
		r.createKey("retry-window", anthropicKey("win11"), settings)
		r.stage("retry-window", k2)
		r.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 503, Count: maxAttemptsPerPeriod * maxAttempts})
		for at := at(2, 3, 0); at.Before(time.Date(2026, 3, 2, 5, 0, 0, 0, time.UTC)); at = at.Add(5 * time.Minute) {
			r.tickAt(at)
		}
		if got := r.read("retry-window"); got["rotation_status"] != rotationFailed || got["version"] != 1 {
			t.Fatalf("after the first window: %v", got)
		}
		r.tickAt(at(3, 3, 0)) // the next scheduled time: a fresh budget, inside its window
		if r.platformSecret("retry-window") != k2 {
			t.Fatal("the next window did not try again")
		}
	})

	t.Run("no window: missed while down rotates on start", func(t *testing.T) {
		r := newRotationEnv(t, nil)
		k2 := anthropicKey("win8")
		r.createKey("nowindow", anthropicKey("win7"), map[string]any{"rotation_schedule": "0 3 * * *"})
		r.stage("nowindow", k2)
		r.stop()
		r.advanceTo(at(2, 6, 0))
		r.restart()
		r.tick()
		if r.platformSecret("nowindow") != k2 {
			t.Fatal("a rotation due while Vault was down was skipped")
		}
	})
}

func TestRotation_FailureRetriesWithBackoffAndRecovers(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2 := anthropicKey("fail1"), anthropicKey("fail2")
	r.createKey("flaky", k1, map[string]any{"rotation_period": "24h"})
	r.stage("flaky", k2)
	const put = "PUT /v2/gen-ai/anthropic/keys/{uuid}"

	// One platform 500: the rotation fails, the WAL's immediate rollback
	// pushes the stored secret back, the key stays usable.
	r.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 500, Count: maxAttempts})
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
	// Each rotation attempt asks the provider up to maxAttempts times
	// (retry.go); the bound is on rotation attempts.
	requests := r.emu.Counts()[verify] - before
	attempts := requests / maxAttempts
	t.Logf("%d rotation attempts (%d verification requests) in 33 hours", attempts, requests)
	// Two periods start in those 33 hours: at most the budget in each.
	if attempts < maxAttemptsPerPeriod || attempts > 2*maxAttemptsPerPeriod {
		t.Fatalf("%d attempts in two periods, want %d to %d", attempts, maxAttemptsPerPeriod, 2*maxAttemptsPerPeriod)
	}
	if got := r.read("down"); got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "could not be verified") {
		t.Fatalf("after the budget: %v", got)
	}
}

func TestRotation_RestartWithDueAndNotDueKeys(t *testing.T) {
	r := newRotationEnv(t, nil)
	dueNext, laterNext := anthropicKey("rst2"), anthropicKey("rst4")
	r.createKey("due-key", anthropicKey("rst1"), map[string]any{"rotation_period": "1h"})
	r.createKey("later-key", anthropicKey("rst3"), map[string]any{"rotation_period": "24h"})
	r.createKey("off-key", anthropicKey("rst5"), nil)
	r.stage("due-key", dueNext)
	r.stage("later-key", laterNext)

	r.stop()
	r.advance(2 * time.Hour)
	r.restart()
	r.tick()
	if r.platformSecret("due-key") != dueNext {
		t.Fatal("a key that came due while Vault was down was not rotated")
	}
	r.assertVersion("due-key", 2)
	r.assertVersion("later-key", 1)
	r.assertVersion("off-key", 1)

	// Another restart rotates nothing twice.
	r.restart()
	r.tick()
	r.assertVersion("due-key", 2)
	r.assertVersion("later-key", 1)

	r.tickAt(t0.Add(24 * time.Hour))
	if r.platformSecret("later-key") != laterNext {
		t.Fatal("the not-due key did not rotate when it came due")
	}
}

// hashicorp/vault PR 29537: database static roles rotated on every reload
// after an upgrade, because the stored next rotation was missing and read as
// "due since the epoch".
func TestRotation_Bug29537_ReloadNeverRotatesWhatIsNotDue(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("steady", anthropicKey("up1"), map[string]any{"rotation_period": "24h"})
	r.stage("steady", anthropicKey("up2"))
	next := r.read("steady")["next_vault_rotation"]

	// An entry as an older version would have stored it: settings, but no
	// next, last or settings time.
	legacy := &keyEntry{Name: "legacy", Provider: providerAnthropic, UUID: r.createKey("legacy", anthropicKey("up3"), nil), APIKey: anthropicKey("up3"),
		Version: 1, RotationPeriod: time.Hour, NextAPIKey: anthropicKey("up4")}
	if err := putKey(context.Background(), r.storage, legacy); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 3; i++ {
		r.advance(time.Minute)
		r.restart()
		r.tick()
	}
	r.assertVersion("steady", 1)
	r.assertVersion("legacy", 1)
	if got := r.read("steady")["next_vault_rotation"]; got != next {
		t.Fatalf("reloads moved the next rotation: %v -> %v", next, got)
	}
	// The legacy entry got a next rotation counted from the first reload.
	if got := r.read("legacy")["next_vault_rotation"]; got != ts(t0.Add(time.Minute+time.Hour)) {
		t.Fatalf("legacy next = %v", got)
	}
}

// hashicorp/vault issue 21935: rotation stopped after a failover, because the
// new active node never filled its queue.
func TestRotation_Bug21935_RotationResumesAfterFailover(t *testing.T) {
	r := newRotationEnv(t, nil)
	k2 := anthropicKey("fo2")
	r.createKey("failover", anthropicKey("fo1"), map[string]any{"rotation_period": "1h"})
	r.stage("failover", k2)

	// This node becomes a standby: it must not act, even when the key is due.
	r.sys.standby.Store(true)
	r.tickAt(t0.Add(2 * time.Hour))
	r.assertVersion("failover", 1)
	if state, _, _ := r.b.rotation.status(); state != schedulerStandby {
		t.Fatalf("scheduler state = %v", state)
	}
	// status forwards to the active node, where the scheduler runs.
	if _, err := r.request(logical.ReadOperation, "status", nil); err != logical.ErrReadOnly {
		t.Fatalf("status on a standby: %v, want it forwarded", err)
	}

	// The same node becomes active again: it rebuilds and rotates.
	r.sys.standby.Store(false)
	r.tick()
	if r.platformSecret("failover") != k2 {
		t.Fatal("the node that became active again did not rotate")
	}

	// Another node takes over (a new backend on the same storage): the
	// next rotation happens there.
	k3 := anthropicKey("fo3")
	r.stage("failover", k3)
	r.restart()
	r.tickAt(r.clock.Now().Add(time.Hour))
	if r.platformSecret("failover") != k3 {
		t.Fatal("the new active node did not rotate")
	}
	r.assertVersion("failover", 3)
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

	r.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 502, Count: maxAttempts})
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

func TestRotate_Manual(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2, k3 := anthropicKey("man1"), anthropicKey("man2"), anthropicKey("man3")
	uuid := r.createKey("manual", k1, map[string]any{"rotation_period": "24h"})

	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", nil, "no staged successor", "next_api_key=@new-key.txt", "gradient/keys/manual")
	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": k1}, "the key in use now")
	rejected := anthropicKey("man4")
	r.emu.Revoke(rejected)
	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": rejected}, "rejected by the provider")
	r.assertVersion("manual", 1)
	if r.platformSecret("manual") != k1 {
		t.Fatal("a refused rotation changed the platform")
	}

	r.advance(time.Hour)
	got := r.mustOK(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": k2}).Data
	if got["version"] != 2 || got["uuid"] != uuid || got["last_vault_rotation"] != ts(t0.Add(time.Hour)) ||
		got["next_vault_rotation"] != ts(t0.Add(25*time.Hour)) || got["previous_key_hint"] != k1[len(k1)-4:] {
		t.Fatalf("rotated with api_key: %v", got)
	}

	r.stage("manual", k3)
	got = r.mustOK(logical.UpdateOperation, "keys/manual/rotate", nil).Data
	if got["version"] != 3 || got["next_key_hint"] != "" || r.platformSecret("manual") != k3 {
		t.Fatalf("promoted the staged key: %v", got)
	}

	if _, err := r.request(logical.UpdateOperation, "keys/nothing-here/rotate", nil); err == nil || !strings.Contains(err.Error(), "no key named") {
		t.Fatalf("rotate of a missing key: %v", err)
	}

	// Writing api_key on keys/<name> is a rotation too.
	k4 := anthropicKey("man5")
	r.stage("manual", k4)
	got = r.mustOK(logical.UpdateOperation, "keys/manual", map[string]any{"api_key": anthropicKey("man6")}).Data
	if got["version"] != 4 || got["next_key_hint"] != "" || got["previous_key_hint"] != k3[len(k3)-4:] {
		t.Fatalf("rotated through keys/<name>: %v", got)
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
		k := &keyEntry{Name: fmt.Sprintf("bulk-%03d", i), Provider: providerAnthropic,
			UUID: fmt.Sprintf("uuid-%03d", i), APIKey: anthropicKey("bulk"), Version: 1, RotationPeriod: 24 * time.Hour, LastVaultRotation: t0,
			NextVaultRotation: t0.Add(24 * time.Hour)}
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
	for e.platformKeyNamed(providerAnthropic, "background").Secret != k2 {
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

func TestStatus_Counts(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("st-ok", anthropicKey("st1"), map[string]any{"rotation_period": "12h"})
	r.createKey("st-later", anthropicKey("st2"), map[string]any{"rotation_period": "48h"})
	r.createKey("st-overdue", anthropicKey("st3"), map[string]any{"rotation_period": "1h"})
	r.createKey("st-failed", anthropicKey("st4"), map[string]any{"rotation_period": "1h"})
	r.mustOK(logical.CreateOperation, "keys/st-openai", map[string]any{"provider": "openai", "api_key": openAIKey("st5")})
	bad := anthropicKey("st6")
	r.stage("st-failed", bad)
	r.emu.Revoke(bad)

	got := r.mustOK(logical.ReadOperation, "status", nil).Data
	if got["rotating_next_24h"] != 3 || got["overdue"] != 0 || got["keys_total"] != 5 || got["scheduler_last_run"] != nil {
		t.Fatalf("before: %v", got)
	}
	if by := got["keys_by_provider"].(map[string]any); by["anthropic"] != 4 || by["openai"] != 1 {
		t.Fatalf("keys_by_provider = %v", by)
	}
	// The platform's own count, as its last answer's headers said.
	rl, _ := got["rate_limit"].(map[string]any)
	if rl == nil || got["rate_limit_note"] != nil {
		t.Fatalf("rate_limit = %v, note %v", got["rate_limit"], got["rate_limit_note"])
	}
	if limit, remaining := rl["limit"].(int), rl["remaining"].(int); limit <= 0 || remaining <= 0 || remaining >= limit {
		t.Fatalf("rate_limit = %v: want the platform's count after the requests made", rl)
	}

	r.tickAt(t0.Add(time.Hour))
	got = r.mustOK(logical.ReadOperation, "status", nil).Data
	want := map[string]any{"rotating_next_24h": 1, "overdue": 1, "failed": 1, "due": 0, "rotation_enabled": 4,
		"scheduler_last_run": ts(t0.Add(time.Hour)), "scheduler_state": schedulerRunning}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}

func TestCreds_LeaseRenewRevoke(t *testing.T) {
	r := newRotationEnv(t, map[string]any{"creds_ttl": "30m"})
	k1, k2 := anthropicKey("lease1"), anthropicKey("lease2")
	r.createKey("leased", k1, nil)

	// Every read is leased, with or without rotation settings.
	creds := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if creds.Secret == nil || !creds.Secret.Renewable || creds.Secret.TTL != 30*time.Minute {
		t.Fatalf("lease = %+v", creds.Secret)
	}
	if creds.Data["ttl"] != int64(0) || creds.Data["last_vault_rotation"] != ts(t0) {
		t.Fatalf("data = %v", creds.Data)
	}

	// With a rotation sooner than creds_ttl, the lease ends at the rotation.
	r.mustOK(logical.UpdateOperation, "keys/leased", map[string]any{"rotation_period": "10m"})
	creds = r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if creds.Secret.TTL != 10*time.Minute || creds.Data["rotation_period"] != int64(600) || creds.Data["ttl"] != int64(600) {
		t.Fatalf("lease %v, data %v", creds.Secret.TTL, creds.Data)
	}
	if _, ok := creds.Data["rotation_schedule"]; ok {
		t.Fatal("a period key reports a schedule")
	}

	// Renewal before the rotation: granted, never past it.
	r.advance(4 * time.Minute)
	resp := r.lease(logical.RenewOperation, creds.Secret)
	if resp.IsError() || resp.Secret.TTL != 6*time.Minute {
		t.Fatalf("renew before rotation: %#v", resp)
	}

	// Revoke changes nothing anywhere.
	before := r.state()
	stored, _ := getKey(context.Background(), r.storage, "leased")
	if resp := r.lease(logical.RevokeOperation, creds.Secret); resp != nil && resp.IsError() {
		t.Fatalf("revoke: %v", resp.Error())
	}
	after, _ := getKey(context.Background(), r.storage, "leased")
	if !reflect.DeepEqual(after, stored) || r.state().AnthropicKeys[0].Secret != before.AnthropicKeys[0].Secret {
		t.Fatal("revoking a lease changed the key")
	}

	// After a rotation, renewal fails and says to read again.
	r.stage("leased", k2)
	r.tickAt(t0.Add(10 * time.Minute))
	resp = r.lease(logical.RenewOperation, creds.Secret)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew after rotation: %#v", resp)
	}
	if creds = r.mustOK(logical.ReadOperation, "creds/leased", nil); creds.Data["api_key"] != k2 || creds.Data["version"] != 2 {
		t.Fatalf("read again: %v", creds.Data["version"])
	}

	// A due key without a staged successor gets short leases.
	r.advanceTo(t0.Add(25 * time.Minute))
	if creds = r.mustOK(logical.ReadOperation, "creds/leased", nil); creds.Secret.TTL != dueLeaseTTL {
		t.Fatalf("lease of an overdue key = %v", creds.Secret.TTL)
	}

	// The lease's internal data survives Vault's JSON round trip.
	creds.Secret.InternalData["version"] = float64(2)
	if resp := r.lease(logical.RenewOperation, creds.Secret); resp.IsError() {
		t.Fatalf("renew with a JSON version: %v", resp.Error())
	}
}

// lease sends a renew or revoke through HandleRequest, as Vault's expiration
// manager does.
func (r *rotEnv) lease(op logical.Operation, secret *logical.Secret) *logical.Response {
	r.t.Helper()
	s := *secret
	resp, err := r.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: "creds/leased", Secret: &s, Storage: r.storage, MountPoint: "gradient/",
	})
	if err != nil {
		r.t.Fatalf("%s: %v", op, err)
	}
	return resp
}

func TestConfig_CredsTTL(t *testing.T) {
	e := newTestEnv(t, nil)
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["creds_ttl"]; got != int64(3600) {
		t.Fatalf("default creds_ttl = %v", got)
	}
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"creds_ttl": "15m"})
	if got := e.mustOK(logical.ReadOperation, "config", nil).Data["creds_ttl"]; got != int64(900) {
		t.Fatalf("creds_ttl = %v", got)
	}
	e.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"creds_ttl": "0"}, "creds_ttl must be positive")
}

// BenchmarkRotationIdleTick measures a tick with nothing due, with 10,000
// keys queued: it should not depend on the number of keys.
func BenchmarkRotationIdleTick(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			be := newBackend(testTuning())
			clock := &fakeClock{now: t0}
			be.clock = clock.Now
			be.rotation.storage = &logical.InmemStorage{}
			be.rotation.built = true
			if err := be.Setup(context.Background(), &logical.BackendConfig{Logger: hclog.NewNullLogger(), System: logical.TestSystemView()}); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				be.rotation.schedule(fmt.Sprintf("key-%05d", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				be.rotation.runTick(ctx)
			}
		})
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

func TestCreds_RenewOfADeletedKeyFails(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("leased", anthropicKey("gone1"), nil)
	creds := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	if resp := r.lease(logical.RenewOperation, creds.Secret); !resp.IsError() || !strings.Contains(resp.Error().Error(), "no longer exists") {
		t.Fatalf("renew of a deleted key: %#v", resp)
	}
	if resp := r.lease(logical.RevokeOperation, creds.Secret); resp != nil && resp.IsError() {
		t.Fatalf("revoke of a deleted key: %v", resp.Error())
	}
}

// Deleting a key and making it again under the same name (the usual answer
// to a leak) starts again at version 1: a lease of the deleted key must not
// renew against the new one. Leases carry the platform key's uuid; a lease
// issued before they did is refused when the key was created after it.
func TestCreds_RenewAfterDeleteAndRecreateFails(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("leased", anthropicKey("leaked"), nil)
	old := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	r.createKey("leased", anthropicKey("fresh"), nil)
	fresh := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	if old.Data["version"] != 1 || fresh.Data["version"] != 1 || old.Data["uuid"] == fresh.Data["uuid"] {
		t.Fatalf("setup: old %v, fresh %v", old.Data, fresh.Data)
	}

	resp := r.lease(logical.RenewOperation, old.Secret)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "no longer the platform key this lease was issued for") ||
		!strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of the deleted key's lease: %#v", resp)
	}
	if resp := r.lease(logical.RenewOperation, fresh.Secret); resp.IsError() {
		t.Fatalf("renew of the new key's lease: %v", resp.Error())
	}

	// Leases issued before leases carried the uuid: judged by the time the
	// current key was created on the platform.
	k, err := getKey(context.Background(), r.storage, "leased")
	if err != nil || k == nil {
		t.Fatalf("stored key: %v", err)
	}
	legacy := func(issued time.Time) *logical.Secret {
		s := *fresh.Secret
		s.InternalData = maps.Clone(s.InternalData)
		delete(s.InternalData, "uuid")
		s.IssueTime = issued
		return &s
	}
	if resp := r.lease(logical.RenewOperation, legacy(k.CreatedAt.Add(-time.Minute))); !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of an old lease issued before the key was made: %#v", resp)
	}
	if resp := r.lease(logical.RenewOperation, legacy(k.CreatedAt.Add(time.Minute))); resp.IsError() {
		t.Fatalf("renew of an old lease issued after the key was made: %v", resp.Error())
	}
}

// A lease issued before leases carried the uuid, of a key then deleted
// (leaked) and replaced under its name by adopting a platform key made
// earlier, e.g. in the control panel: the adopted key is at version 1 and
// was created on the platform before the lease was issued, so only the time
// Vault took it in tells it from the deleted one.
func TestCreds_OldLeaseDoesNotRenewAfterDeleteAndAdopt(t *testing.T) {
	r := newRotationEnv(t, nil)
	stranger := r.createOutside("made-in-console", anthropicKey("console"))
	r.createKey("leased", anthropicKey("leaked"), nil)
	leaked := r.mustOK(logical.ReadOperation, "creds/leased", nil)
	k, err := getKey(context.Background(), r.storage, "leased")
	if err != nil || k == nil {
		t.Fatalf("stored key: %v", err)
	}
	old := *leaked.Secret
	old.InternalData = maps.Clone(old.InternalData)
	delete(old.InternalData, "uuid")
	old.IssueTime = k.CreatedAt
	if k.LastVaultRotation.After(old.IssueTime) {
		old.IssueTime = k.LastVaultRotation
	}
	old.IssueTime = old.IssueTime.Add(time.Second)
	if resp := r.lease(logical.RenewOperation, &old); resp.IsError() {
		t.Fatalf("renew of the old lease before the delete: %v", resp.Error())
	}

	r.mustOK(logical.DeleteOperation, "keys/leased", nil)
	r.advanceTo(old.IssueTime.Add(time.Minute))
	r.mustOK(logical.CreateOperation, "keys/leased", map[string]any{"provider": "anthropic", "uuid": stranger, "api_key": anthropicKey("fresh")})
	resp := r.lease(logical.RenewOperation, &old)
	if !resp.IsError() || !strings.Contains(resp.Error().Error(), "read gradient/creds/leased again") {
		t.Fatalf("renew of the deleted key's old lease after the adoption: %#v", resp)
	}
}
