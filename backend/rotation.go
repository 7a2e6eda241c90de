package backend

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/queue"
	"github.com/hashicorp/vault/sdk/rotation"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Vault Community Edition has no rotation manager, so the plugin runs its own
// scheduler, the way the database engine's static roles and the openldap
// engine do: a priority queue of key names ordered by when each needs looking
// at, filled from storage in the background once the mount is initialized,
// and a ticker that pops what is due. The queue is only a hint: every pop
// re-reads the entry under its name lock, and the times that matter
// (next_vault_rotation, retry_at) live in storage, so a restart, a reload or
// a failover rebuilds the same plan.

const (
	// defaultTickInterval is how often the scheduler looks at the queue.
	defaultTickInterval = 5 * time.Second
	// maxAttemptsPerPeriod bounds the failed attempts of one due rotation;
	// after that the key waits for its next period (or a new staged key).
	maxAttemptsPerPeriod = 5
	// firstRetryDelay doubles after each failed attempt, up to maxRetryDelay.
	firstRetryDelay = 30 * time.Second
	maxRetryDelay   = time.Hour
)

// rotationScheduler runs scheduled rotations for one mount.
type rotationScheduler struct {
	// b's clock and tuning (rotationTick, minRotationPeriod) pace it.
	b *gradientBackend

	mu       sync.Mutex
	storage  logical.Storage
	queue    *queue.PriorityQueue
	earliest int64 // lowest priority in the queue, or lower: O(1) idle ticks
	built    bool
	lastRun  time.Time
	state    string
	loop     tickerLoop

	// tickMu runs one tick at a time.
	tickMu sync.Mutex
}

const (
	schedulerNotStarted = "not started"
	schedulerRunning    = "running"
	schedulerStandby    = "standby"
	schedulerStopped    = "stopped"
)

func newRotationScheduler(b *gradientBackend) *rotationScheduler {
	return &rotationScheduler{
		b:        b,
		queue:    queue.New(),
		earliest: math.MaxInt64,
		state:    schedulerNotStarted,
	}
}

// now is the backend's clock in UTC, to the second, as stored times are.
func (s *rotationScheduler) now() time.Time {
	return s.b.now().UTC().Truncate(time.Second)
}

// tick is how often the scheduler looks at the queue; 0: no background
// ticker (unit tests tick by hand).
func (s *rotationScheduler) tick() time.Duration { return s.b.tuning.rotationTick }

// initializeRotation is the backend's InitializeFunc: it starts the ticker, whose
// first tick rebuilds the queue from storage. Nothing here blocks the mount.
func (b *gradientBackend) initializeRotation(_ context.Context, req *logical.InitializationRequest) error {
	s := b.rotation
	s.mu.Lock()
	defer s.mu.Unlock()
	s.storage = req.Storage
	s.built = false
	s.loop.start(s.tick(), true, s.runTick)
	return nil
}

// cleanRotation is the backend's Clean: it stops the ticker and waits for a
// tick in progress to finish.
func (b *gradientBackend) cleanRotation(context.Context) {
	s := b.rotation
	s.mu.Lock()
	stopAndWait := s.loop.detach()
	s.mu.Unlock()
	stopAndWait()
	// Only now: a tick that was running would have set its own state.
	s.mu.Lock()
	s.state = schedulerStopped
	s.mu.Unlock()
}

// runTick is one look at the queue. It acts only where storage may be
// written (the active node of the primary cluster, or a local mount): a
// standby or a secondary leaves rotation to the active node.
func (s *rotationScheduler) runTick(ctx context.Context) {
	s.tickMu.Lock()
	defer s.tickMu.Unlock()

	s.mu.Lock()
	storage, built := s.storage, s.built
	s.mu.Unlock()
	if storage == nil {
		return
	}
	if !s.b.WriteSafeReplicationState() {
		s.setState(schedulerStandby, time.Time{})
		// Whatever this node queued is stale once it may write again.
		s.mu.Lock()
		s.built = false
		s.mu.Unlock()
		return
	}
	now := s.now()
	s.setState(schedulerRunning, now)
	if !built {
		if err := s.rebuild(ctx, storage); err != nil {
			s.b.Logger().Error("rebuilding the rotation queue from storage failed; retrying next tick", "error", err)
			return
		}
	}

	for ctx.Err() == nil {
		item, ok := s.popDue(now)
		if !ok {
			break
		}
		// Many keys due at once rotate at the scheduler's share of the
		// budget, leaving the headroom to requests.
		if err := s.b.budget.WaitBackground(ctx); err != nil {
			s.schedule(item.Key, now)
			return
		}
		s.dispatch(ctx, storage, item.Key, now) // a key's or a static role's
	}
	s.retireDue(ctx, storage, now)
}

func (s *rotationScheduler) setState(state string, lastRun time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = state
	if !lastRun.IsZero() {
		s.lastRun = lastRun
	}
}

// popDue pops the first item if it is due at now. A tick with nothing due
// compares one number and touches nothing else.
func (s *rotationScheduler) popDue(now time.Time) (*queue.Item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Unix() < s.earliest {
		return nil, false
	}
	item, err := s.queue.Pop()
	if err != nil {
		s.earliest = math.MaxInt64
		return nil, false
	}
	if item.Priority > now.Unix() {
		s.earliest = item.Priority
		_ = s.queue.Push(item) // just popped: cannot be a duplicate
		return nil, false
	}
	return item, true
}

// schedule puts name in the queue to be looked at at when, replacing any
// earlier entry. Callers hold the name lock, so the last writer's view wins.
func (s *rotationScheduler) schedule(name string, when time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.queue.PopByKey(name)
	p := when.Unix()
	if err := s.queue.Push(&queue.Item{Key: name, Priority: p}); err != nil {
		s.b.Logger().Error("could not queue a key for rotation", "name", name, "error", err)
		return
	}
	if p < s.earliest {
		s.earliest = p
	}
}

func (s *rotationScheduler) unschedule(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = s.queue.PopByKey(name)
}

// track queues (or drops) a key after a handler stored it; called under the
// key's name lock.
func (s *rotationScheduler) track(k *keyEntry) {
	s.b.retirements.note(k)
	if when := k.nextLook(); !when.IsZero() {
		s.schedule(k.Name, when)
		return
	}
	s.unschedule(k.Name)
}

// nextLook is when the scheduler must next look at the key: its next
// rotation, or a pending retry; zero when rotation is off.
func (k *keyEntry) nextLook() time.Time {
	if !k.rotationEnabled() || k.NextVaultRotation.IsZero() {
		return time.Time{}
	}
	if k.RetryAt.After(k.NextVaultRotation) {
		return k.RetryAt
	}
	return k.NextVaultRotation
}

// rebuildWorkers is how many keys the rebuild reads at once. Each read
// is a round trip from the plugin to Vault's storage: a few in flight hide
// the latency (BENCHMARKS.md, "Rotation at scale", has the measurements).
const rebuildWorkers = 8

// rebuild fills the queue from storage. Each key is read under its lock, so
// a handler writing it meanwhile is never overwritten with a stale time.
func (s *rotationScheduler) rebuild(ctx context.Context, storage logical.Storage) error {
	names, err := storage.List(ctx, keyStoragePrefix)
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	s.b.retirements.reset()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan string)
	var queued atomic.Int64
	var wg sync.WaitGroup
	for range min(rebuildWorkers, len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range work {
				ok, err := s.loadKey(ctx, storage, name)
				if err != nil {
					cancel(err)
					return
				}
				if ok {
					queued.Add(1)
				}
			}
		}()
	}
feed:
	for _, name := range names {
		select {
		case work <- name:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	roles, err := s.rebuildAgentStatic(ctx, storage)
	if err != nil {
		return err
	}
	if repaired, err := s.repairAgentStaticRegenerates(ctx, storage); err != nil {
		return err
	} else if repaired > 0 {
		s.b.Logger().Warn("repaired interrupted regenerates of static roles at once", "roles", repaired)
	}
	s.mu.Lock()
	s.built = true
	s.mu.Unlock()
	s.b.Logger().Info("rotation queue built from storage", "keys", len(names), "scheduled", queued.Load(), "static_roles_scheduled", roles)
	return nil
}

// loadKey queues one stored key. An entry with rotation on but no stored
// next rotation (written before that field existed) gets one counted from
// now and stored, never "due since the epoch".
func (s *rotationScheduler) loadKey(ctx context.Context, storage logical.Storage, name string) (bool, error) {
	defer s.b.lockNames(name)()
	k, err := getKey(ctx, storage, name)
	if err != nil {
		return false, err
	}
	if k != nil {
		s.b.retirements.note(k)
	}
	if k == nil || !k.rotationEnabled() {
		s.unschedule(name)
		return false, nil
	}
	if k.NextVaultRotation.IsZero() {
		k.NextVaultRotation = k.computeNextRotation(s.now())
		if err := putKey(ctx, storage, k); err != nil {
			return false, err
		}
	}
	s.track(k)
	return true, nil
}

// process looks at one due key under its name lock and either rotates it,
// marks it overdue, records a failure, or moves it to its next time. It
// always leaves the key queued while rotation is on.
func (s *rotationScheduler) process(ctx context.Context, storage logical.Storage, name string, now time.Time) {
	defer s.b.lockNames(name)()
	log := s.b.Logger().With("name", name)

	k, err := getKey(ctx, storage, name)
	if err != nil {
		log.Error("reading a key for scheduled rotation failed; retrying next tick", "error", err)
		s.schedule(name, now.Add(s.tickOrSecond()))
		return
	}
	if k == nil || !k.rotationEnabled() {
		return // deleted, renamed away, or rotation turned off
	}
	if k.NextVaultRotation.IsZero() {
		k.NextVaultRotation = k.computeNextRotation(now)
		s.store(ctx, storage, k, log)
		s.track(k)
		return
	}
	if now.Before(k.nextLook()) {
		s.track(k) // not due (yet): a stale queue entry
		return
	}

	// A schedule with a window that passed: the rotation waits for the
	// next scheduled time, as the window says (e.g. Vault was down). If now
	// is inside the window of a later scheduled time, that one is due now.
	rs := k.rotationSchedule()
	if rs != nil && k.RotationSchedule != "" && !rotation.DefaultScheduler.IsInsideRotationWindow(rs, now) {
		current := k.nextRotationAfter(now.Add(-k.RotationWindow))
		log.Warn("rotation window missed", "due", k.NextVaultRotation, "window", k.RotationWindow, "next", current)
		k.NextVaultRotation = current
		k.resetAttempts()
		s.store(ctx, storage, k, log)
		if current.After(now) {
			s.track(k)
			return
		}
	}

	if k.NextAPIKey == "" && !k.mints() {
		// Overdue: nothing to promote. Warn once per due period (again a
		// period after the last warning while it stays overdue), look
		// again every tick until a key is staged or the schedule changes.
		if k.OverdueWarnedAt.Before(k.NextVaultRotation) || !now.Before(k.nextRotationAfter(k.OverdueWarnedAt)) {
			log.Warn("scheduled rotation is overdue: no successor key is staged; write next_api_key to keys/<name>",
				"due", k.NextVaultRotation)
			k.OverdueWarnedAt = now
			s.store(ctx, storage, k, log)
		}
		s.schedule(name, now.Add(s.tickOrSecond()))
		return
	}

	s.promote(ctx, storage, k, now, log)
}

// promote rotates to the staged key through rotateSecret (verify, WAL, push
// to the same uuid, one put), or, for a minted key with nothing staged, to a
// freshly minted one through mintNext (change_rotate.go). On failure the stored entry
// keeps the current key, and only the failure bookkeeping is written.
func (s *rotationScheduler) promote(ctx context.Context, storage logical.Storage, k *keyEntry, now time.Time, log hclog.Logger) {
	rotated := *k
	err := rotated.recordRotation(now)
	if err == nil {
		err = s.b.rotateOrMint(ctx, storage, &rotated, k.NextAPIKey)
	}
	if err == nil {
		log.Info("key rotated on schedule", "uuid", rotated.UUID, "version", rotated.Version, "next", rotated.NextVaultRotation)
		s.track(&rotated)
		return
	}

	// rotateSecret failed before or at its one put: storage holds k.
	msg := platform.Redact(err.Error(), k.APIKey, k.NextAPIKey)
	k.RotationAttempts++
	k.RotationError = fmt.Sprintf("scheduled rotation attempt %d failed at %s: %s", k.RotationAttempts, now.Format(time.RFC3339), msg)
	permanent := isCallerError(err)
	if permanent || k.RotationAttempts >= maxAttemptsPerPeriod {
		// Retrying the same input cannot help (a rejected key, a key
		// deleted on the platform) or the period's budget is spent: wait
		// for the next period, or for a new staged key, which resets it.
		k.RetryAt = k.nextPeriodBoundary(now)
		k.RotationAttempts = 0
		k.RotationError += "; next attempt at the next scheduled time or when another next_api_key is staged"
	} else {
		k.RetryAt = now.Add(retryDelay(k.RotationAttempts))
		if boundary := k.nextPeriodBoundary(now); k.RetryAt.After(boundary) {
			k.RetryAt = boundary
		}
	}
	log.Warn("scheduled rotation failed", "attempt", k.RotationAttempts, "retry_at", k.RetryAt, "error", msg)
	s.store(ctx, storage, k, log)
	s.track(k)
}

// nextPeriodBoundary is the first scheduled time after now, counted from the
// due time: where a new budget of attempts starts.
func (k *keyEntry) nextPeriodBoundary(now time.Time) time.Time {
	if k.RotationPeriod > 0 {
		n := now.Sub(k.NextVaultRotation)/k.RotationPeriod + 1
		return k.NextVaultRotation.Add(n * k.RotationPeriod)
	}
	if next := k.nextRotationAfter(now); !next.IsZero() {
		return next
	}
	return now.Add(maxRetryDelay)
}

func retryDelay(attempt int) time.Duration {
	d := firstRetryDelay
	for i := 1; i < attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

func (s *rotationScheduler) tickOrSecond() time.Duration {
	if tick := s.tick(); tick >= time.Second {
		return tick
	}
	return time.Second
}

// store writes scheduler bookkeeping (never the secret's rotation, which
// rotateSecret stores). A failure is logged; the next tick tries again.
func (s *rotationScheduler) store(ctx context.Context, storage logical.Storage, k *keyEntry, log hclog.Logger) {
	if err := putKey(ctx, storage, k); err != nil {
		log.Error("storing rotation state failed", "error", err)
	}
}

// status is what the status path reports about the scheduler itself.
func (s *rotationScheduler) status() (state string, lastRun time.Time, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state, s.lastRun, s.queue.Len()
}
