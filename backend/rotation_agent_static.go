package backend

import (
	"context"
	"fmt"
	"strings"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
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

// repairAgentStaticRegenerates repairs at once every regenerate of a static
// role whose write-ahead log entry remains: the node that made it crashed
// between the platform's regenerate and the stored secret, so the secret
// storage holds may be dead. Vault's periodic rollback would repair it only
// once the entry is walRollbackMinAge old, and with scheduled rotation off
// nothing else would sooner; the rebuild, on the first tick where this node
// may write (after Initialize, or a takeover), calls this. The repair is the
// entry's own undo under the role's lock (nothing when storage already
// holds a later version). A young entry stays, with the repaired version,
// for the periodic rollback, in case the lost regenerate still lands; one
// older than that rollback's minimum age is settled.
func (s *rotationScheduler) repairAgentStaticRegenerates(ctx context.Context, storage logical.Storage) (int, error) {
	ids, err := framework.ListWAL(ctx, storage)
	if err != nil {
		return 0, fmt.Errorf("listing the write-ahead log: %w", err)
	}
	repaired := 0
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return repaired, err
		}
		entry, err := framework.GetWAL(ctx, storage, id)
		if err != nil {
			return repaired, fmt.Errorf("reading the write-ahead log: %w", err)
		}
		if entry == nil || entry.Kind != walKindAgentStaticRegenerate {
			continue
		}
		w, err := decodeWAL(entry.Kind, entry.Data)
		if err != nil {
			continue // the periodic rollback drops it
		}
		ok, err := s.repairAgentStaticRegenerate(ctx, storage, id, w.(*agentStaticRegenerateWAL).Name)
		if err != nil {
			return repaired, err
		}
		if ok {
			repaired++
		}
	}
	return repaired, nil
}

// repairAgentStaticRegenerate runs one entry's undo under the role's lock,
// as the entry reads once the lock is held: a request of this node may have
// settled the change meanwhile (the entry is gone), or repaired it already
// (Repaired: the stored secret was live then, and only a late landing
// could kill it, which is the periodic rollback's to catch). A failed
// repair is logged and left to the periodic rollback.
func (s *rotationScheduler) repairAgentStaticRegenerate(ctx context.Context, storage logical.Storage, id, role string) (bool, error) {
	defer s.b.lockNames(agentStaticLock(role))()
	entry, err := framework.GetWAL(ctx, storage, id)
	if err != nil {
		return false, fmt.Errorf("reading the write-ahead log: %w", err)
	}
	if entry == nil || entry.Kind != walKindAgentStaticRegenerate {
		return false, nil
	}
	decoded, err := decodeWAL(entry.Kind, entry.Data)
	if err != nil {
		return false, nil
	}
	w := decoded.(*agentStaticRegenerateWAL)
	if w.Repaired || w.Name != role {
		return false, nil
	}
	w.recordWith(func(ctx context.Context) error { return s.b.rewriteWAL(ctx, storage, id, w) })
	if err := w.undo(ctx, s.b, storage); err != nil {
		s.b.Logger().Warn("repairing an interrupted regenerate of a static role failed; Vault's periodic rollback retries it",
			append([]any{"wal_id", id, "error", err}, w.describe()...)...)
		return false, nil
	}
	// An entry as old as the periodic rollback's minimum age is older than
	// any request runs: its lost regenerate has landed or never will, and
	// the entry is settled, as the rollback would settle it.
	if w.Repaired && s.now().Sub(w.Created) >= s.b.tuning.walMinAge {
		s.b.deleteWAL(ctx, storage, id)
	}
	return w.Repaired, nil
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
