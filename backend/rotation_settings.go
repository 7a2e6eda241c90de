package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/automatedrotationutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"
)

// Rotation settings of keys/<name> use Vault's standard field names and the
// SDK's parsing (automatedrotationutil) and schedule arithmetic
// (rotation.DefaultScheduler), so they read and fail like the database
// engine's static roles.

const (
	// defaultMinRotationPeriod is the shortest rotation_period users may
	// set. Only the test tuning (tuning.go) lowers it: never in a release
	// build.
	defaultMinRotationPeriod = time.Minute
)

// Rotation statuses, as reads of keys/<name> show them.
const (
	rotationOK      = "ok"
	rotationDue     = "due"
	rotationOverdue = "overdue"
	rotationFailed  = "failed"
)

// rotationFieldSchemas are the fields keys/<name> accepts for rotation.
// rotation_policy is left out: it names an Enterprise rotation-manager policy
// that this plugin's own scheduler has no use for.
var (
	rotationPeriodField = &framework.FieldSchema{
		Type:        framework.TypeDurationSecond,
		Description: "Rotate the key this often, promoting the staged next_api_key; at least 1 minute. Counts from the last rotation or from when the setting was written, whichever is later. Mutually exclusive with rotation_schedule; 0 clears it.",
	}
	rotationScheduleField = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: `Rotate the key on this five-field cron schedule, in UTC, e.g. "0 3 * * 1". Mutually exclusive with rotation_period; "" clears it.`,
	}
	rotationWindowField = &framework.FieldSchema{
		Type:        framework.TypeDurationSecond,
		Description: "With rotation_schedule only: how long after each scheduled time the rotation may still happen (at least 1 hour); a rotation missed for longer waits for the next scheduled time. 0 means no limit.",
	}
	disableRotationField = &framework.FieldSchema{
		Type:        framework.TypeBool,
		Description: "Pause scheduled rotation without losing rotation_period or rotation_schedule.",
	}
	nextAPIKeyField = &framework.FieldSchema{
		Type:         framework.TypeString,
		Description:  `Stage the key's successor: checked and verified with the provider now, stored sealed, promoted at the next scheduled rotation or by keys/<name>/rotate. Never returned. "" unstages it.`,
		DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
	}
)

// rotationSettings is the part of a key entry that says when it rotates.
func (k *keyEntry) rotationParams() automatedrotationutil.AutomatedRotationParams {
	return automatedrotationutil.AutomatedRotationParams{
		RotationPeriod:           k.RotationPeriod,
		RotationSchedule:         k.RotationSchedule,
		RotationWindow:           k.RotationWindow,
		DisableAutomatedRotation: k.DisableAutomatedRotation,
	}
}

// rotationEnabled: a period or a schedule is set and not paused.
func (k *keyEntry) rotationEnabled() bool {
	p := k.rotationParams()
	return p.ShouldRegisterRotationJob() && !p.ShouldDeregisterRotationJob()
}

// rotationSchedule is the SDK's view of the key's settings, with the stored
// next rotation, for rotation.DefaultScheduler's arithmetic. nil when the
// stored schedule no longer parses (it was checked when it was written).
func (k *keyEntry) rotationSchedule() *rotation.RotationSchedule {
	rs := &rotation.RotationSchedule{
		RotationPeriod:    k.RotationPeriod,
		RotationWindow:    k.RotationWindow,
		RotationSchedule:  k.RotationSchedule,
		NextVaultRotation: k.NextVaultRotation,
		LastVaultRotation: k.LastVaultRotation,
	}
	if k.RotationSchedule != "" {
		sched, err := rotation.DefaultScheduler.Parse(k.RotationSchedule)
		if err != nil {
			return nil
		}
		rs.Schedule = sched
	}
	return rs
}

// nextRotationAfter is the first rotation time after base: base+period, or
// the schedule's next time after base. Zero when rotation is off.
func (k *keyEntry) nextRotationAfter(base time.Time) time.Time {
	if !k.rotationEnabled() {
		return time.Time{}
	}
	rs := k.rotationSchedule()
	if rs == nil {
		return time.Time{}
	}
	return rotation.DefaultScheduler.NextRotationTimeFromInput(rs, base).UTC()
}

// computeNextRotation counts from the last rotation or from when the
// settings were written, whichever is later, so a period set on an old key
// never makes it due at once. With neither known (an entry written before
// these fields existed) it counts from now: an upgrade must never make every
// key due at once (hashicorp/vault PR 29537).
func (k *keyEntry) computeNextRotation(now time.Time) time.Time {
	base := k.LastVaultRotation
	if k.RotationSetAt.After(base) {
		base = k.RotationSetAt
	}
	if base.IsZero() {
		base = now
	}
	return k.nextRotationAfter(base)
}

// rotationWrite is what one write of keys/<name> asks for about rotation,
// parsed and checked but not yet applied.
type rotationWrite struct {
	settingsGiven bool
	params        automatedrotationutil.AutomatedRotationParams
	nextKeyGiven  bool
	nextKey       string // "" unstages
}

// parseRotationWrite parses the rotation fields of a write against the
// current entry (nil on create), so a partial write keeps the other settings.
// Every error is a caller error carrying the SDK's message.
func parseRotationWrite(d *framework.FieldData, current *keyEntry, provider, name string, minPeriod time.Duration) (rotationWrite, error) {
	var w rotationWrite
	_, scheduleOk := d.GetOk("rotation_schedule")
	_, periodOk := d.GetOk("rotation_period")
	_, windowOk := d.GetOk("rotation_window")
	_, disableOk := d.GetOk("disable_automated_rotation")
	w.settingsGiven = scheduleOk || periodOk || windowOk || disableOk

	if current != nil {
		w.params = current.rotationParams()
	}
	if w.settingsGiven {
		if err := w.params.ParseAutomatedRotationFields(d); err != nil {
			return w, callerErrorf("%s", err.Error())
		}
		// Period and schedule replace each other: writing one clears the
		// other stored earlier (the SDK refuses both in one write).
		switch {
		case scheduleOk && w.params.RotationSchedule != "" && !periodOk:
			w.params.RotationPeriod = 0
		case periodOk && w.params.RotationPeriod != 0 && !scheduleOk:
			w.params.RotationSchedule = ""
			w.params.RotationWindow = 0
		}
		if w.params.RotationSchedule == "" && !windowOk {
			w.params.RotationWindow = 0
		}
		if w.params.RotationPeriod < 0 {
			return w, callerErrorf("rotation_period must not be negative")
		}
		if w.params.RotationPeriod != 0 && w.params.RotationPeriod < minPeriod {
			return w, callerErrorf("rotation_period must be at least %s (%d seconds), e.g. rotation_period=720h; 0 turns rotation off", minPeriod, int(minPeriod.Seconds()))
		}
		if w.params.RotationWindow != 0 {
			if err := rotation.DefaultScheduler.ValidateRotationWindow(int(w.params.RotationWindow.Seconds())); err != nil {
				return w, callerErrorf("%s", err.Error())
			}
		}
	}

	if raw, ok := d.GetOk("next_api_key"); ok {
		w.nextKeyGiven = true
		if strings.TrimSpace(raw.(string)) == "" {
			return w, nil // unstage
		}
		if current == nil {
			return w, callerErrorf("next_api_key stages a successor for an existing key: create the key with api_key first, then write next_api_key")
		}
		key, err := normalizeAPIKey(provider, raw.(string))
		if err != nil {
			return w, callerErrorf("next_api_key: %s", strings.TrimPrefix(err.Error(), "api_key "))
		}
		if err := validateNameAgainstKey(name, key); err != nil {
			return w, err
		}
		if key == current.APIKey {
			return w, callerErrorf("next_api_key is the key in use now; stage the key that should replace it")
		}
		w.nextKey = key
	}
	return w, nil
}

// apply writes the parsed settings and staged key into k. Settings that did
// not change leave the period's starting point alone, so writing the same
// settings again (Terraform, scripts) never postpones a rotation.
func (w rotationWrite) apply(k *keyEntry, now time.Time) {
	if w.settingsGiven {
		changed := w.params.RotationPeriod != k.RotationPeriod ||
			w.params.RotationSchedule != k.RotationSchedule ||
			w.params.RotationWindow != k.RotationWindow ||
			w.params.DisableAutomatedRotation != k.DisableAutomatedRotation
		if changed {
			k.RotationPeriod = w.params.RotationPeriod
			k.RotationSchedule = w.params.RotationSchedule
			k.RotationWindow = w.params.RotationWindow
			k.DisableAutomatedRotation = w.params.DisableAutomatedRotation
			k.RotationSetAt = now
			k.NextVaultRotation = k.computeNextRotation(now)
			k.resetAttempts()
		}
	}
	if w.nextKeyGiven {
		k.NextAPIKey = w.nextKey
		k.NextKeyStagedAt = time.Time{}
		if w.nextKey != "" {
			k.NextKeyStagedAt = now
		}
		// A new key is new input: it gets a fresh budget of attempts.
		k.resetAttempts()
	}
}

// resetAttempts forgets the failed attempts of the current period, so the
// next due tick tries at once. rotation_error stays until a rotation
// succeeds.
func (k *keyEntry) resetAttempts() {
	k.RotationAttempts = 0
	k.RetryAt = time.Time{}
	k.OverdueWarnedAt = time.Time{}
}

// recordRotation sets, on a copy of the entry about to be stored by
// rotateSecret, what a successful rotation changes besides the secret: its
// time, the hint of the key it replaces, no staged key, no failure, and the
// next rotation counted from now. The caller discards the copy on failure,
// and on an error (a full retirement list) does not rotate.
func (k *keyEntry) recordRotation(now time.Time) error {
	if err := k.retireCurrent(now); err != nil {
		return err
	}
	k.PreviousKeyHint = keyHint(k.APIKey)
	k.LastVaultRotation = now
	k.NextAPIKey = ""
	k.NextKeyStagedAt = time.Time{}
	k.RotationError = ""
	k.resetAttempts()
	k.NextVaultRotation = k.computeNextRotation(now)
	return nil
}

// rotationState is the time-dependent part of a key's rotation view.
func (k *keyEntry) rotationState(now time.Time) (status string, ttl int64) {
	enabled := k.rotationEnabled() && !k.NextVaultRotation.IsZero()
	if enabled {
		ttl = int64(k.NextVaultRotation.Sub(now).Seconds())
		if ttl < 0 {
			ttl = 0
		}
	}
	switch {
	case k.RotationError != "":
		return rotationFailed, ttl
	case enabled && !now.Before(k.NextVaultRotation) && (k.NextAPIKey != "" || k.mints()):
		return rotationDue, ttl
	case enabled && !now.Before(k.NextVaultRotation):
		return rotationOverdue, ttl
	}
	return rotationOK, ttl
}

// addRotationFields adds the stored rotation fields to a key response; the
// secret and the staged key never leave, only their hints.
func addRotationFields(data map[string]any, k *keyEntry) {
	data["rotation_period"] = int64(k.RotationPeriod.Seconds())
	data["rotation_schedule"] = k.RotationSchedule
	data["rotation_window"] = int64(k.RotationWindow.Seconds())
	data["disable_automated_rotation"] = k.DisableAutomatedRotation
	last := k.LastVaultRotation
	if last.IsZero() {
		last = k.CreatedAt
	}
	data["last_vault_rotation"] = last.UTC().Format(time.RFC3339)
	if k.rotationEnabled() && !k.NextVaultRotation.IsZero() {
		data["next_vault_rotation"] = k.NextVaultRotation.UTC().Format(time.RFC3339)
	}
	data["rotation_error"] = k.RotationError
	data["previous_key_hint"] = k.PreviousKeyHint
	data["next_key_hint"] = keyHint(k.NextAPIKey)
	if !k.NextKeyStagedAt.IsZero() {
		data["next_key_staged_at"] = k.NextKeyStagedAt.UTC().Format(time.RFC3339)
	}
}

// onCreate applies the rotation settings of a create to the new entry: Vault
// takes the key in now, which is where its first period starts.
func (s *rotationScheduler) onCreate(k *keyEntry, w rotationWrite) {
	now := s.now()
	k.LastVaultRotation = now
	w.apply(k, now)
}

// applyRotationWrite parses the rotation fields of an update into k (a copy
// the caller stores). A staged key is verified with the provider now, like
// any key, so a bad successor is refused while someone is watching rather
// than at 3 a.m.
func (b *gradientBackend) applyRotationWrite(ctx context.Context, s logical.Storage, d *framework.FieldData, k *keyEntry) error {
	w, err := parseRotationWrite(d, k, k.Provider, k.Name, b.tuning.minRotationPeriod)
	if err != nil {
		return err
	}
	if w.nextKeyGiven && w.nextKey != "" {
		if _, ok := d.GetOk("api_key"); ok {
			return callerErrorf("write api_key to rotate now, or next_api_key to stage the successor for the next rotation, not both")
		}
		up, err := b.clients(ctx, s)
		if err != nil {
			return err
		}
		if err := up.verifier.Verify(ctx, k.Provider, w.nextKey); err != nil {
			return fmt.Errorf("next_api_key: %w", err)
		}
	}
	w.apply(k, b.rotation.now())
	return nil
}

// withRotationState adds the fields that depend on the time of the read.
func (b *gradientBackend) withRotationState(resp *logical.Response, k *keyEntry) *logical.Response {
	status, ttl := k.rotationState(b.rotation.now())
	resp.Data["rotation_status"] = status
	resp.Data["ttl"] = ttl
	return resp
}
