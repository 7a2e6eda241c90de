package backend

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// hintedKey is an Anthropic test key whose partial_key_hint shows head (3
// characters) and tail (4): anthropicKey's all look alike there.
func hintedKey(head, tag, tail string) string {
	return "sk-ant-api03-" + head + strings.Repeat("H", 10) + tag + "-" + tail
}

// anthropicStatus is the Admin API status of secret at the emulated
// Anthropic, "" when it does not know the key.
func (r *rotEnv) anthropicStatus(secret string) string {
	for _, k := range r.emu.ProviderState().AnthropicKeys {
		if k.Secret == secret {
			return k.Status
		}
	}
	return ""
}

// hidingAdmin is the real Admin API client with some Anthropic keys left out
// of its listings: a key deleted in the console, or in a workspace the admin
// key cannot see. The emulator cannot delete keys, so this is the seam.
type hidingAdmin struct {
	providers.Admin
	hide map[string]bool // partial_key_hint
}

func (h hidingAdmin) ListAnthropicKeys(ctx context.Context) ([]providers.AnthropicKey, error) {
	all, err := h.Admin.ListAnthropicKeys(ctx)
	var shown []providers.AnthropicKey
	for _, k := range all {
		if !h.hide[k.PartialKeyHint] {
			shown = append(shown, k)
		}
	}
	return shown, err
}

// Anthropic retirement finds the replaced key by partial_key_hint, paging
// through the organization's keys, and acts only on exactly one match.
func TestRetire_AnthropicMatchesExactlyOneKey(t *testing.T) {
	cases := map[string]struct {
		// setup runs after the rotation from old to new, before the tick.
		setup      func(r *rotEnv, old string)
		wantStatus string
		wantOld    string // the old key's Admin API status afterwards
		fragments  []string
	}{
		"one match": {
			setup:      func(*rotEnv, string) {},
			wantStatus: retireRetired, wantOld: "inactive",
		},
		"zero matches": {
			setup: func(r *rotEnv, old string) {
				r.b.dropClients()
				build := r.b.buildClients
				r.b.buildClients = func(cfg *gradientConfig) (*clients, error) {
					c, err := build(cfg)
					if err == nil {
						c.admin = hidingAdmin{c.admin, map[string]bool{anthropicPartialHint(old): true}}
					}
					return c, err
				}
			},
			wantStatus: retireAttention, wantOld: "active",
			fragments: []string{"no key in the Anthropic organization matches"},
		},
		"two matches": {
			setup: func(r *rotEnv, old string) {
				// Same first characters and last four: the same hint.
				twin := old[:len("sk-ant-api03-")+3] + strings.Repeat("T", 20) + old[len(old)-4:]
				r.emu.AddAnthropicKey(twin, "twin")
				r.trackSecret(twin)
			},
			wantStatus: retireAttention, wantOld: "active",
			fragments: []string{"2 keys in the Anthropic organization match", "none was touched"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := newZeroTouchEnv(t)
			// More keys than one page holds, so that listing pages.
			for i := range providers.AdminPageSize + 5 {
				r.emu.AddAnthropicKey(hintedKey(fmt.Sprintf("F%02d", i%100), fmt.Sprintf("filler%d", i), fmt.Sprintf("f%03d", i)), "")
			}
			old, next := hintedKey("Old", "ret-old", "oldK"), hintedKey("New", "ret-new", "newK")
			r.trackSecret(old)
			r.trackSecret(next)
			r.createKey("retiring", old, map[string]any{"retire_previous": true, "grace_period": 0})
			r.mustOK(logical.UpdateOperation, "keys/retiring", map[string]any{"api_key": next})
			if got := r.read("retiring"); got["retire_status"] != retirePending || got["retirements_pending"] != 1 {
				t.Fatalf("after rotation: %v", got)
			}
			tc.setup(r, old)
			r.tick()

			got := r.read("retiring")
			if got["retire_status"] != tc.wantStatus || got["retirements_pending"] != 0 {
				t.Fatalf("read: %v", got)
			}
			for _, f := range tc.fragments {
				if !strings.Contains(got["retire_error"].(string), f) {
					t.Errorf("retire_error %q lacks %q", got["retire_error"], f)
				}
			}
			r.assertSecretFree("retire_error", got["retire_error"].(string))
			if s := r.anthropicStatus(old); s != tc.wantOld {
				t.Fatalf("old key is %q, want %q", s, tc.wantOld)
			}
			if s := r.anthropicStatus(next); s != "active" {
				t.Fatalf("the key in use is %q", s)
			}
			for _, k := range r.emu.ProviderState().AnthropicKeys {
				if k.Secret != old && k.Status != "active" {
					t.Fatalf("another key was touched: %s", k.Name)
				}
			}
			attention := 0
			if tc.wantStatus == retireAttention {
				attention = 1
			}
			if st := r.mustOK(logical.ReadOperation, "status", nil).Data; st["retirements_attention"] != attention || st["retirements_pending"] != 0 {
				t.Fatalf("status: %v", st)
			}
		})
	}
}

// A replaced key that looks like the key in use to the Admin API is never
// touched, and neither is the key in use.
func TestRetire_NeverTouchesTheKeyInUse(t *testing.T) {
	r := newZeroTouchEnv(t)
	// Same first characters after the prefix and same last four.
	old, next := hintedKey("Sam", "same-a", "tail"), hintedKey("Sam", "same-b", "tail")
	r.trackSecret(old)
	r.trackSecret(next)
	r.createKey("alike", old, map[string]any{"retire_previous": true, "grace_period": 0})
	r.mustOK(logical.UpdateOperation, "keys/alike", map[string]any{"api_key": next})
	r.tick()
	got := r.read("alike")
	if got["retire_status"] != retireAttention || !strings.Contains(got["retire_error"].(string), "looks the same as the key in use") {
		t.Fatalf("read: %v", got)
	}
	if r.anthropicStatus(old) != "active" || r.anthropicStatus(next) != "active" {
		t.Fatal("a key was touched")
	}
}

// Retirement failures retry with backoff, survive a restart (the pending
// retirement is in storage) and show in status until they succeed.
func TestRetire_FailuresRetryWithBackoffAcrossRestarts(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createMinted("flaky", map[string]any{"grace_period": "5m"})
	r.mustOK(logical.UpdateOperation, "keys/flaky/rotate", nil)
	due := t0.Add(5 * time.Minute)

	r.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/openai/v1/organization/projects/", Status: 503, Count: platform.MaxAttempts})
	r.tickAt(due)
	got := r.read("flaky")
	if got["retire_status"] != retireRetrying || got["retirements_pending"] != 1 || !strings.Contains(got["retire_error"].(string), "HTTP 503") {
		t.Fatalf("after a failed retirement: %v", got)
	}
	if st := r.mustOK(logical.ReadOperation, "status", nil).Data; st["retirements_retrying"] != 1 || st["retirements_pending"] != 1 {
		t.Fatalf("status: %v", st)
	}
	if live, _ := r.accounts("flaky"); len(live) != 2 {
		t.Fatalf("accounts: %+v", live)
	}

	r.restart()
	r.tickAt(due.Add(firstRetryDelay - time.Second))
	if live, _ := r.accounts("flaky"); len(live) != 2 {
		t.Fatal("retried before the backoff ended")
	}
	r.tickAt(due.Add(firstRetryDelay))
	live, deleted := r.accounts("flaky")
	if len(live) != 1 || len(deleted) != 1 || deleted[0].Name != "vault-flaky-v1" {
		t.Fatalf("after the retry: live %+v deleted %+v", live, deleted)
	}
	if got := r.read("flaky"); got["retire_status"] != retireRetired || got["retirements_pending"] != 0 || got["retire_error"] != "" {
		t.Fatalf("after the retry: %v", got)
	}
}

// An idle tick reads nothing for retirements either, and a burst of due
// retirements is spread over ticks.
func TestRetire_PlanIsPacedPerTick(t *testing.T) {
	p := newRetirementPlan()
	now := t0
	if names := p.takeDue(now, 2); names != nil {
		t.Fatalf("empty plan: %v", names)
	}
	for i, name := range []string{"a", "b", "c"} {
		p.note(&keyEntry{Name: name, Retiring: []retirement{{DueAt: now.Add(time.Duration(i) * time.Second)}}})
	}
	p.note(&keyEntry{Name: "later", Retiring: []retirement{{DueAt: now.Add(time.Hour)}}})
	now = now.Add(time.Minute)
	if names := p.takeDue(now, 2); strings.Join(names, ",") != "a,b" {
		t.Fatalf("first tick: %v", names)
	}
	if names := p.takeDue(now, 2); strings.Join(names, ",") != "c" {
		t.Fatalf("second tick: %v", names)
	}
	if names := p.takeDue(now, 2); names != nil || p.pending() != 1 {
		t.Fatalf("third tick: %v, %d planned", names, p.pending())
	}
}

func TestRetire_PartialKeyHint(t *testing.T) {
	for key, want := range map[string]string{
		"sk-ant-api03-R2D2xxxxxxxxxxxxxxxxxigAA": "sk-ant-api03-R2D...igAA",
		"sk-ant-api03-ab":                        "",
		"sk-proj-abcdefghijklmnop":               "",
	} {
		if got := anthropicPartialHint(key); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
}

// A revoked Anthropic admin key: the retirement is retried, the key in use
// is untouched, and status counts it; a good admin key finishes it.
func TestRetire_RejectedAdminKeyIsRetried(t *testing.T) {
	r := newZeroTouchEnv(t)
	old, next := hintedKey("Rvk", "rvk-old", "rvkA"), hintedKey("Nxt", "rvk-new", "rvkB")
	r.trackSecret(old)
	r.trackSecret(next)
	r.createKey("revoked", old, map[string]any{"retire_previous": true, "grace_period": 0})
	r.mustOK(logical.UpdateOperation, "keys/revoked", map[string]any{"api_key": next})
	r.emu.Revoke(testAnthropicAdminKey)
	r.tick()
	got := r.read("revoked")
	if got["retire_status"] != retireRetrying || !strings.Contains(got["retire_error"].(string), "rejected anthropic_admin_key (HTTP 401)") {
		t.Fatalf("read: %v", got)
	}
	if st := r.mustOK(logical.ReadOperation, "status", nil).Data; st["retirements_retrying"] != 1 {
		t.Fatalf("status: %v", st)
	}
	other := "sk-ant-admin01-" + strings.Repeat("Z", 20)
	r.trackSecret(other)
	r.emu.AddAdminKey(emulator.ProviderAnthropic, other)
	r.mustOK(logical.UpdateOperation, "config", map[string]any{"anthropic_admin_key": other})
	r.tickAt(r.clock.Now().Add(firstRetryDelay))
	if got := r.read("revoked"); got["retire_status"] != retireRetired || r.anthropicStatus(old) != "inactive" || r.anthropicStatus(next) != "active" {
		t.Fatalf("after a good admin key: %v", got)
	}
}

// A replaced key that another entry of the mount still holds (as the key in
// use, as its staged successor, or as a key waiting out its own grace
// period) is never retired: that entry's agents would get 401s. The
// retirement needs a person, and its message names the other entry, never
// the key.
func TestRetire_SparesAKeyAnotherEntryHolds(t *testing.T) {
	cases := map[string]struct {
		// other makes the entry "other" hold shared.
		other    func(r *rotEnv, shared string)
		fragment string
	}{
		"as the key in use": {
			other: func(r *rotEnv, shared string) {
				r.createKey("other", shared, nil)
			},
			fragment: "as the key in use",
		},
		"as its staged next_api_key": {
			other: func(r *rotEnv, shared string) {
				r.createKey("other", hintedKey("Oth", "shr-oth", "othK"), nil)
				r.stage("other", shared)
			},
			fragment: "as its staged next_api_key",
		},
		"as a key in its grace period": {
			other: func(r *rotEnv, shared string) {
				r.createKey("other", shared, map[string]any{"retire_previous": true, "grace_period": "1h"})
				r.mustOK(logical.UpdateOperation, "keys/other", map[string]any{"api_key": hintedKey("Rep", "shr-rep", "repK")})
			},
			fragment: "as version 1, waiting for its own retirement",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := newZeroTouchEnv(t)
			shared, next := hintedKey("Shr", "shared", "shrK"), hintedKey("Nxt", "shr-next", "nxtK")
			r.trackSecret(shared)
			r.trackSecret(next)
			r.createKey("rotating", shared, map[string]any{"retire_previous": true, "grace_period": 0})
			tc.other(r, shared)
			r.mustOK(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": next})
			r.tick()

			if s := r.anthropicStatus(shared); s != "active" {
				t.Fatalf("the shared key is %q at Anthropic", s)
			}
			got := r.read("rotating")
			msg, _ := got["retire_error"].(string)
			if got["retire_status"] != retireAttention || got["retirements_pending"] != 0 ||
				!strings.Contains(msg, `key "other" holds it too`) || !strings.Contains(msg, tc.fragment) {
				t.Fatalf("read: %v", got)
			}
			r.assertSecretFree("retire_error", msg)
		})
	}
}

// Once the other entry's own grace period ends, its retirement finds no
// other holder and retires the shared key: the last one out retires it.
func TestRetire_TheLastHolderRetiresASharedKey(t *testing.T) {
	r := newZeroTouchEnv(t)
	shared := hintedKey("Lst", "last", "lstK")
	r.trackSecret(shared)
	r.createKey("first", shared, map[string]any{"retire_previous": true, "grace_period": 0})
	r.createKey("second", shared, map[string]any{"retire_previous": true, "grace_period": "1h"})
	r.mustOK(logical.UpdateOperation, "keys/second", map[string]any{"api_key": hintedKey("Sec", "last-2", "secK")})
	r.mustOK(logical.UpdateOperation, "keys/first", map[string]any{"api_key": hintedKey("Fst", "last-1", "fstK")})
	r.tick()
	if r.read("first")["retire_status"] != retireAttention || r.anthropicStatus(shared) != "active" {
		t.Fatal("retired while another entry's grace period runs")
	}
	r.tickAt(r.clock.Now().Add(time.Hour))
	if got := r.read("second"); got["retire_status"] != retireRetired || r.anthropicStatus(shared) != "inactive" {
		t.Fatalf("second: %v, shared key %s", got, r.anthropicStatus(shared))
	}
}

// A minted key's secret copied into another entry: deleting its service
// account would switch that entry's key off too, so it is not deleted.
func TestRetire_SparesAServiceAccountWhoseKeyAnotherEntryHolds(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createMinted("minted", map[string]any{"grace_period": 0})
	first := r.openAISecret("minted")
	r.mustOK(logical.CreateOperation, "keys/copy", map[string]any{"provider": "openai", "api_key": first})
	r.mustOK(logical.UpdateOperation, "keys/minted/rotate", nil)
	r.tick()
	if live, _ := r.accounts("minted"); len(live) != 2 {
		t.Fatalf("accounts: %+v", live)
	}
	got := r.read("minted")
	msg, _ := got["retire_error"].(string)
	if got["retire_status"] != retireAttention || !strings.Contains(msg, `key "copy" holds it too`) || !strings.Contains(msg, "was not deleted") {
		t.Fatalf("read: %v", got)
	}
	r.assertSecretFree("retire_error", msg)
}

// downAdmin is the Admin API client with Anthropic's listing failing (or,
// once up, finding no key): retirements that fail for as long as the test
// wants, without the mount's provider budget in the way.
type downAdmin struct {
	providers.Admin
	up *bool
}

func (d downAdmin) ListAnthropicKeys(context.Context) ([]providers.AnthropicKey, error) {
	if *d.up {
		return nil, nil
	}
	return nil, fmt.Errorf("the Anthropic Admin API is down (test)")
}

// wrapAdmin makes every client the backend builds from now on use wrap's
// Admin API client.
func (r *rotEnv) wrapAdmin(wrap func(providers.Admin) providers.Admin) {
	r.b.dropClients()
	build := r.b.buildClients
	r.b.buildClients = func(cfg *gradientConfig) (*clients, error) {
		c, err := build(cfg)
		if err == nil {
			c.admin = wrap(c.admin)
		}
		return c, err
	}
}

// Each rotation queues one retirement; when they keep failing, the list
// stops at maxPendingRetirements: a rotation that would pass it is refused,
// by hand with a 400 and on schedule with rotation_error, and nothing
// changes. Once retirements are done, rotations go on.
func TestRetire_PendingListIsBounded(t *testing.T) {
	r := newZeroTouchEnv(t)
	up := false
	r.wrapAdmin(func(a providers.Admin) providers.Admin { return downAdmin{a, &up} })
	// Keys that look different to the Admin API.
	key := func(i int) string {
		return hintedKey(fmt.Sprintf("%03d", i), fmt.Sprint("bnd", i), fmt.Sprintf("b%03d", i))
	}
	r.createKey("bounded", key(0), map[string]any{"retire_previous": true, "grace_period": 0})
	for i := 1; i <= maxPendingRetirements; i++ {
		r.mustOK(logical.UpdateOperation, "keys/bounded", map[string]any{"api_key": key(i)})
		r.tickAt(r.clock.Now().Add(2 * time.Hour)) // every failed retirement is tried again
		if got := r.read("bounded"); got["retirements_pending"] != i || got["retire_status"] != retireRetrying {
			t.Fatalf("rotation %d: %v", i, got)
		}
	}
	last := key(maxPendingRetirements)

	before := r.read("bounded")
	r.mustBadRequest(logical.UpdateOperation, "keys/bounded", map[string]any{"api_key": key(999)},
		fmt.Sprintf("already has %d replaced keys waiting to be retired (at most %d)", maxPendingRetirements, maxPendingRetirements), "nothing changed", "retire_error")
	r.mustBadRequest(logical.UpdateOperation, "keys/bounded/rotate", map[string]any{"api_key": key(999)}, "waiting to be retired")
	if after := r.read("bounded"); !reflect.DeepEqual(before, after) || r.platformSecret("bounded") != last {
		t.Fatalf("a refused rotation changed the key:\nbefore %v\nafter  %v", before, after)
	}

	// On schedule: refused until the next period, like any refused input.
	r.mustOK(logical.UpdateOperation, "keys/bounded", map[string]any{"rotation_period": "1h", "next_api_key": key(998)})
	r.tickAt(r.clock.Now().Add(time.Hour))
	got := r.read("bounded")
	if got["version"] != maxPendingRetirements+1 || got["retirements_pending"] != maxPendingRetirements ||
		!strings.Contains(got["rotation_error"].(string), "waiting to be retired") || r.platformSecret("bounded") != last {
		t.Fatalf("scheduled rotation over the bound: %v", got)
	}

	// The retirements end (here: the Admin API finds no such key, so they
	// need a person) and the list empties; the staged key goes in at the
	// next scheduled time.
	up = true
	r.tickAt(r.clock.Now().Add(2 * time.Hour))
	if got := r.read("bounded"); got["retirements_pending"] != 0 {
		t.Fatalf("after the retirements ended: %v", got)
	}
	r.tickAt(r.clock.Now().Add(time.Hour))
	if got := r.read("bounded"); got["version"] != maxPendingRetirements+2 || r.platformSecret("bounded") != key(998) {
		t.Fatalf("the next scheduled rotation: %v", got)
	}
}

// grace_period is at most maxGracePeriod: above it, a 400 naming the field
// and the bound, and nothing is stored, created or minted.
func TestRetire_GracePeriodIsBounded(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createKey("graceful", anthropicKey("grc1"), map[string]any{"retire_previous": true})
	before := r.read("graceful")
	over := map[string]any{
		"a second over": int(maxGracePeriod/time.Second) + 1,
		"100 years":     "876000h",
	}
	for name, grace := range over {
		t.Run(name, func(t *testing.T) {
			r.mustBadRequest(logical.UpdateOperation, "keys/graceful", map[string]any{"grace_period": grace, "description": "changed"},
				"grace_period must be between 0 and 720h (30 days, 2592000 seconds)")
			r.mustBadRequest(logical.CreateOperation, "keys/graceless", map[string]any{"provider": "anthropic", "api_key": anthropicKey("grc2"), "retire_previous": true, "grace_period": grace},
				"grace_period must be between 0 and 720h")
			r.mustBadRequest(logical.CreateOperation, "keys/graceless-minted", map[string]any{
				"provider": "openai", "source": "openai-service-account", "openai_project_id": emulator.DefaultOpenAIProjectID, "grace_period": grace,
			}, "grace_period must be between 0 and 720h")
		})
	}
	if after := r.read("graceful"); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused write changed the key:\nbefore %v\nafter  %v", before, after)
	}
	if keys := r.listKeys(); len(keys) != 1 || len(r.platformKeys(platform.Anthropic)) != 1 || len(r.emu.ProviderState().OpenAIServiceAccounts) != 0 {
		t.Fatalf("a refused create left something: keys %v", keys)
	}
	got := r.mustOK(logical.UpdateOperation, "keys/graceful", map[string]any{"grace_period": "720h"}).Data
	if got["grace_period"] != int64(maxGracePeriod/time.Second) {
		t.Fatalf("the bound itself is refused: %v", got)
	}
}

// An entry stored with a longer grace_period before the bound keeps it:
// other writes and rotations work, and its replaced key waits that long.
func TestRetire_StoredLongGracePeriodKeepsWorking(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createKey("old-promise", anthropicKey("lng1"), map[string]any{"retire_previous": true})
	k, err := getKey(context.Background(), r.storage, "old-promise")
	if err != nil || k == nil {
		t.Fatal(k, err)
	}
	century := 100 * 365 * 24 * time.Hour
	k.GracePeriod = &century
	if err := putKey(context.Background(), r.storage, k); err != nil {
		t.Fatal(err)
	}
	r.mustOK(logical.UpdateOperation, "keys/old-promise", map[string]any{"description": "still here"})
	r.mustOK(logical.UpdateOperation, "keys/old-promise/rotate", map[string]any{"api_key": anthropicKey("lng2")})
	got := r.read("old-promise")
	if got["grace_period"] != int64(century/time.Second) || got["version"] != 2 || got["retirements_pending"] != 1 || got["description"] != "still here" {
		t.Fatalf("read: %v", got)
	}
	r.tickAt(r.clock.Now().Add(maxGracePeriod + time.Hour))
	if r.anthropicStatus(anthropicKey("lng1")) != "active" || r.read("old-promise")["retirements_pending"] != 1 {
		t.Fatal("the stored grace period was cut short")
	}
}

// What the cross-entry check costs: one List and one Get per entry for each
// key with retirements due, however many of its retirements are due.
func TestRetire_OneScanPerRetiringKey(t *testing.T) {
	r := newZeroTouchEnv(t)
	const others = 40
	for i := range others {
		k := &keyEntry{Name: fmt.Sprintf("bulk-%02d", i), Provider: platform.Anthropic, UUID: fmt.Sprintf("uuid-%02d", i),
			APIKey: hintedKey(fmt.Sprintf("K%02d", i), "bulk", fmt.Sprintf("k%03d", i)), Version: 1}
		if err := putKey(context.Background(), r.storage, k); err != nil {
			t.Fatal(err)
		}
	}
	r.createKey("scanned", hintedKey("S00", "scan0", "s000"), map[string]any{"retire_previous": true, "grace_period": "1m"})
	for i := 1; i <= 3; i++ {
		r.mustOK(logical.UpdateOperation, "keys/scanned", map[string]any{"api_key": hintedKey(fmt.Sprintf("S%02d", i), fmt.Sprint("scan", i), fmt.Sprintf("s%03d", i))})
	}
	r.tick() // the first tick builds the scheduler's plan from storage
	gets, lists := r.reads.gets.Load(), r.reads.lists.Load()
	r.tickAt(r.clock.Now().Add(time.Minute))
	if got := r.read("scanned"); got["retire_status"] != retireRetired || got["retirements_pending"] != 0 {
		t.Fatalf("read: %v", got)
	}
	// Its own entry, then the scan: every entry, its own included.
	if g, l := r.reads.gets.Load()-gets, r.reads.lists.Load()-lists; g != 1+others+1 || l != 1 {
		t.Fatalf("a tick retiring 3 versions of one key read %d entries and listed %d times", g, l)
	}
}

// An entry renamed while the retirement reads the mount is still a holder:
// the scan's listing has its old name, which is gone by the time it is
// read, and its new name is not in the listing. The retirement must not
// take that for "no other holder".
func TestRetire_SparesAKeyWhoseHolderIsRenamedDuringTheScan(t *testing.T) {
	r := newZeroTouchEnv(t)
	shared, next := hintedKey("Ren", "renamed", "renK"), hintedKey("Rnx", "ren-next", "rnxK")
	r.trackSecret(shared)
	r.trackSecret(next)
	r.createKey("rotating", shared, map[string]any{"retire_previous": true, "grace_period": "1h"})
	r.createKey("other", shared, nil)
	r.mustOK(logical.UpdateOperation, "keys/rotating", map[string]any{"api_key": next})
	r.tick() // builds the queue; nothing is due yet

	var renamed error
	var hook func(prefix string)
	hook = func(prefix string) {
		if prefix != keyStoragePrefix {
			r.storage.onNextList(hook)
			return
		}
		_, renamed = r.send(logical.UpdateOperation, "rename/other", map[string]any{"new_name": "moved"})
	}
	r.storage.onNextList(hook)
	r.tickAt(r.clock.Now().Add(time.Hour))
	if renamed != nil {
		t.Fatalf("setup: rename: %v", renamed)
	}
	if k, err := getKey(context.Background(), r.storage, "moved"); err != nil || k == nil {
		t.Fatalf("setup: the rename did not happen during the scan: %v", err)
	}
	if s := r.anthropicStatus(shared); s != "active" {
		t.Fatalf("the key the renamed entry holds is %q at Anthropic", s)
	}
	// The retry reads the mount again and finds the entry under its new
	// name.
	r.tickAt(r.clock.Now().Add(time.Hour))
	got := r.read("rotating")
	if msg, _ := got["retire_error"].(string); got["retire_status"] != retireAttention || !strings.Contains(msg, `key "moved" holds it too`) || r.anthropicStatus(shared) != "active" {
		t.Fatalf("after the retry: %v", got)
	}
}
