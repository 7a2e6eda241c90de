package backend

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

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
		r.emu.InjectFault(emulator.Fault{Path: "/anthropic/v1/models", Status: 503, Count: maxAttemptsPerPeriod * platform.MaxAttempts})
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

// Keys and static roles embed their rotation fields; storage keeps them at
// the top level of the entry, as every earlier version wrote them, so
// entries written before and after read the same.
func TestRotationFields_StoredAtTheTopLevel(t *testing.T) {
	stored := `{"name":"k","rotation_period":7200000000000,"next_vault_rotation":"2026-01-01T00:00:00Z","rotation_error":"e"}`
	var k keyEntry
	var r agentStaticEntry
	for _, v := range []any{&k, &r} {
		if err := json.Unmarshal([]byte(stored), v); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []rotationFields{k.rotationFields, r.rotationFields} {
		if f.RotationPeriod != 2*time.Hour || f.NextVaultRotation.IsZero() || f.RotationError != "e" {
			t.Errorf("decoded %+v", f)
		}
	}
	out, err := json.Marshal(&k)
	if err != nil {
		t.Fatal(err)
	}
	var flat map[string]any
	if err := json.Unmarshal(out, &flat); err != nil {
		t.Fatal(err)
	}
	if flat["rotation_period"] == nil || flat["rotation_error"] != "e" {
		t.Errorf("stored as %s: the rotation fields are not at the top level", out)
	}
}
