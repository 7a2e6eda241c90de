package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Static roles rotate on the keys' scheduler (rotation.go), not on one of
// their own: their queue items are keyed agent-static/<name> beside the key
// names (a key name holds no slash, so the two never meet), rebuilt from
// both storage prefixes, dispatched by prefix when popped, paced by the same
// background share of the rate budget, and only where storage may be
// written. The times they act on live in storage, as a key's do.

// trackAgentStatic queues (or drops) a role after it was stored; called
// under the role's lock.
func (s *rotationScheduler) trackAgentStatic(r *agentStaticEntry) {
	if when := r.rotationView().nextLook(); !when.IsZero() {
		s.schedule(agentStaticLock(r.Name), when)
		return
	}
	s.unschedule(agentStaticLock(r.Name))
}

// rebuildAgentStatic queues every stored role whose rotation is on.
func (s *rotationScheduler) rebuildAgentStatic(ctx context.Context, storage logical.Storage) (int, error) {
	names, err := storage.List(ctx, agentStaticStoragePrefix)
	if err != nil {
		return 0, fmt.Errorf("listing static roles: %w", err)
	}
	queued := 0
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return queued, err
		}
		ok, err := s.loadAgentStatic(ctx, storage, name)
		if err != nil {
			return queued, err
		}
		if ok {
			queued++
		}
	}
	return queued, nil
}

// loadAgentStatic is loadKey for a role.
func (s *rotationScheduler) loadAgentStatic(ctx context.Context, storage logical.Storage, name string) (bool, error) {
	defer s.b.lockNames(agentStaticLock(name))()
	r, err := getAgentStatic(ctx, storage, name)
	if err != nil {
		return false, err
	}
	if r == nil || !r.rotationView().rotationEnabled() {
		s.unschedule(agentStaticLock(name))
		return false, nil
	}
	if r.NextVaultRotation.IsZero() {
		v := r.rotationView()
		r.NextVaultRotation = v.computeNextRotation(s.now())
		if err := putAgentStatic(ctx, storage, r); err != nil {
			return false, err
		}
	}
	s.trackAgentStatic(r)
	return true, nil
}

// dispatch processes one popped queue item: a static role's or a key's.
func (s *rotationScheduler) dispatch(ctx context.Context, storage logical.Storage, item string, now time.Time) {
	if name, ok := strings.CutPrefix(item, agentStaticStoragePrefix); ok {
		s.processAgentStatic(ctx, storage, name, now)
		return
	}
	s.process(ctx, storage, item, now)
}

// processAgentStatic looks at one due role under its lock, as process does
// for a key: re-read, skip what is no longer due, honour a missed window,
// then regenerate; a failure is recorded and retried with the keys' backoff
// and per-period budget of attempts.
func (s *rotationScheduler) processAgentStatic(ctx context.Context, storage logical.Storage, name string, now time.Time) {
	defer s.b.lockNames(agentStaticLock(name))()
	log := s.b.Logger().With("role", name)

	r, err := getAgentStatic(ctx, storage, name)
	if err != nil {
		log.Error("reading a static role for scheduled rotation failed; retrying next tick", "error", err)
		s.schedule(agentStaticLock(name), now.Add(s.tickOrSecond()))
		return
	}
	v := r.rotationViewOrNil()
	if v == nil || !v.rotationEnabled() {
		return // deleted, or rotation turned off
	}
	if r.NextVaultRotation.IsZero() || now.Before(v.nextLook()) {
		if r.NextVaultRotation.IsZero() {
			r.NextVaultRotation = v.computeNextRotation(now)
			s.storeAgentStatic(ctx, storage, r, log)
		}
		s.trackAgentStatic(r) // not due (yet): a stale queue entry
		return
	}

	rs := v.rotationSchedule()
	if rs != nil && r.RotationSchedule != "" && !rotation.DefaultScheduler.IsInsideRotationWindow(rs, now) {
		current := v.nextRotationAfter(now.Add(-r.RotationWindow))
		log.Warn("rotation window missed", "due", r.NextVaultRotation, "window", r.RotationWindow, "next", current)
		v.NextVaultRotation = current
		v.resetAttempts()
		r.takeRotation(v)
		s.storeAgentStatic(ctx, storage, r, log)
		if current.After(now) {
			s.trackAgentStatic(r)
			return
		}
	}

	rotated := *r
	rotated.recordStaticRotation(now)
	stored, err := s.b.regenerateAgentStatic(ctx, storage, &rotated)
	if err == nil {
		log.Info("static role rotated on schedule", "api_key_uuid", stored.KeyUUID, "version", stored.Version, "next", stored.NextVaultRotation)
		s.trackAgentStatic(stored)
		return
	}

	// Record the failure on what storage holds now, with the keys' backoff
	// and budget of attempts. It is read again because the failed
	// rotation's undo may have stored a repaired secret: writing the copy
	// read before would put a dead secret back.
	current, getErr := getAgentStatic(ctx, storage, name)
	switch {
	case getErr != nil:
		log.Error("reading a static role after a failed rotation failed; retrying next tick", "error", getErr)
		s.schedule(agentStaticLock(name), now.Add(s.tickOrSecond()))
		return
	case current == nil:
		return
	case current.Version != r.Version || !strings.EqualFold(current.KeyUUID, r.KeyUUID):
		s.trackAgentStatic(current)
		return
	}
	// rotated.Secret is the regenerated secret when only the store failed.
	msg := recordStaticRotationFailure(current, err, now, r.Secret, rotated.Secret)
	log.Warn("scheduled rotation of a static role failed", "attempt", current.RotationAttempts, "retry_at", current.RetryAt, "error", msg)
	s.storeAgentStatic(ctx, storage, current, log)
	s.trackAgentStatic(current)
}

// recordStaticRotationFailure sets on r what a failed scheduled rotation
// leaves: one more attempt, when to retry (the keys' backoff and budget of
// attempts), and rotation_error. The error text comes from upstream and is
// stored and shown: it is redacted of r's secret, of the given secrets (one
// just regenerated) and of anything shaped like a key first. It returns the
// redacted text, for the log.
func recordStaticRotationFailure(r *agentStaticEntry, err error, now time.Time, secrets ...string) string {
	msg := platform.Redact(err.Error(), append([]string{r.Secret}, secrets...)...)
	v := r.rotationView()
	v.RotationAttempts++
	v.RotationError = fmt.Sprintf("scheduled rotation attempt %d failed at %s: %s", v.RotationAttempts, now.Format(time.RFC3339), msg)
	if isCallerError(err) || v.RotationAttempts >= maxAttemptsPerPeriod {
		v.RetryAt = v.nextPeriodBoundary(now)
		v.RotationAttempts = 0
		v.RotationError += "; next attempt at the next scheduled time"
	} else {
		v.RetryAt = now.Add(retryDelay(v.RotationAttempts))
		if boundary := v.nextPeriodBoundary(now); v.RetryAt.After(boundary) {
			v.RetryAt = boundary
		}
	}
	r.takeRotation(v)
	return msg
}

// rotationViewOrNil is rotationView for a role that may be gone.
func (r *agentStaticEntry) rotationViewOrNil() *keyEntry {
	if r == nil {
		return nil
	}
	return r.rotationView()
}

// storeAgentStatic writes scheduler bookkeeping; a failure is logged and
// the next tick tries again.
func (s *rotationScheduler) storeAgentStatic(ctx context.Context, storage logical.Storage, r *agentStaticEntry, log hclog.Logger) {
	if err := putAgentStatic(ctx, storage, r); err != nil {
		log.Error("storing rotation state failed", "error", err)
	}
}
