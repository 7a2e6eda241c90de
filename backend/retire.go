package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/providers"
)

// Retiring replaced keys at their provider. A rotation of a key with
// retire_previous on (always, for minted keys) stores, in the same write as
// the new secret, a retirement of the replaced key, due after the key's
// grace_period: consumers that hold the old key through a lease keep working
// until then. The scheduler's tick (rotation.go) hands due retirements to
// retireDue. Each one either succeeds, fails for now (retried with backoff,
// shown as retire_status=retrying), or cannot be done safely (never acted
// on, shown as needs_attention): the plugin never touches a key it cannot
// single out, nor the key the platform uses now.
//
// What is kept of a replaced key is only what finds it at its provider: the
// id of the service account that minted it, or the partial_key_hint that
// Anthropic's Admin API shows for it, and a SHA-256 of it that tells whether
// another entry holds it too (all sealed, like the key entry).
//
// One secret can be held by several entries of a mount (a person wrote the
// same key to two names, or copied a minted key from creds/). Retiring it
// for one would cut the others' agents off, so before acting, a retirement
// looks at every entry's current, staged and waiting keys (secretUses).

// Retirement states, as reads of keys/<name> show them.
const (
	retireNone      = "none"
	retirePending   = "pending"
	retireRetrying  = "retrying"
	retireRetired   = "retired"
	retireAttention = "needs_attention"
)

// maxRetirementsPerTick bounds the keys one tick retires; the rest wait for
// the next tick. With the provider budget (internal/providers) it keeps a
// burst of rotations from flooding the providers' Admin APIs.
const maxRetirementsPerTick = 10

// maxPendingRetirements bounds the replaced keys one entry may have waiting:
// each one is about 300 bytes of the entry and, for a minted key, a live
// service account. A daily rotation with the longest grace_period
// (maxGracePeriod) keeps 30 waiting; the rest is room for retirements that
// fail for a while. A rotation that would queue one more is refused, never
// the list cut short: dropping a retirement would leave a key working at its
// provider with nothing recording it, and retiring one early (which, when
// retirements fail, fails too) would cut off consumers still inside their
// grace period.
const maxPendingRetirements = 100

// retirement is one replaced key waiting to be retired.
type retirement struct {
	Version int    `json:"version"`
	KeyHint string `json:"key_hint"`
	// A minted key: the account to delete.
	ServiceAccountID string `json:"service_account_id,omitempty"`
	ProjectID        string `json:"project_id,omitempty"`
	// An Anthropic key: how its Admin API shows it. It holds the key's
	// first characters, so it is never returned or logged.
	PartialKeyHint string `json:"partial_key_hint,omitempty"`
	// KeySHA256 (hex) finds other entries that hold the same key; absent
	// from retirements stored before it was kept.
	KeySHA256 string    `json:"key_sha256,omitempty"`
	DueAt     time.Time `json:"due_at"`
	Attempts  int       `json:"attempts,omitempty"`
	NextTry   time.Time `json:"next_try,omitzero"`
}

// when is when the retirement is next tried.
func (r retirement) when() time.Time {
	if r.NextTry.After(r.DueAt) {
		return r.NextTry
	}
	return r.DueAt
}

// retireCurrent is called by recordRotation, on the copy about to be stored
// with the new secret: it queues the retirement of the key being replaced,
// when there is a way to retire it. The current version's service account is
// always queued (deleting it is the only way its key stops working, and an
// account no entry references would leak). A full list refuses the
// rotation before anything changes.
func (k *keyEntry) retireCurrent(now time.Time) error {
	account, project := k.ServiceAccountID, k.ServiceAccountProjectID
	queues := account != "" || k.Provider == platform.Anthropic && k.RetirePrevious
	if queues && len(k.Retiring) >= maxPendingRetirements {
		return callerErrorf("key %q already has %d replaced keys waiting to be retired (at most %d), so it was not rotated and nothing changed: "+
			"retire_status and retire_error on keys/%s say what holds them up; once retirements succeed or their grace_period ends, rotate again",
			k.Name, len(k.Retiring), maxPendingRetirements, k.Name)
	}
	k.ServiceAccountID, k.ServiceAccountProjectID = "", ""
	r := retirement{Version: k.Version, KeyHint: keyHint(k.APIKey), KeySHA256: keySHA256(k.APIKey), DueAt: now.Add(k.gracePeriod())}
	switch {
	case account != "":
		if project == "" {
			project = k.OpenAIProjectID
		}
		r.ServiceAccountID, r.ProjectID = account, project
	case k.Provider == platform.Anthropic && k.RetirePrevious:
		r.PartialKeyHint = anthropicPartialHint(k.APIKey)
	default:
		return nil
	}
	k.Retiring = append(k.Retiring, r)
	k.RetireStatus, k.RetireError = retirePending, ""
	return nil
}

// keySHA256 is the hex SHA-256 of a key, "" for none.
func keySHA256(key string) string {
	if key == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// secretUse is one key an entry holds, as a retirement compares it: never
// the key itself.
type secretUse struct {
	entry            string
	role             string // how the entry holds it, for messages
	version          int    // of a waiting retirement, else 0
	sha256           string
	partialHint      string
	serviceAccountID string
}

// secretUses are the keys k holds: the one in use, the staged one, and
// those waiting for retirement (still working until retired).
func (k *keyEntry) secretUses() []secretUse {
	uses := []secretUse{{entry: k.Name, role: "as the key in use", sha256: keySHA256(k.APIKey),
		partialHint: anthropicPartialHint(k.APIKey), serviceAccountID: k.ServiceAccountID}}
	if k.NextAPIKey != "" {
		uses = append(uses, secretUse{entry: k.Name, role: "as its staged next_api_key", sha256: keySHA256(k.NextAPIKey),
			partialHint: anthropicPartialHint(k.NextAPIKey)})
	}
	for _, r := range k.Retiring {
		uses = append(uses, secretUse{entry: k.Name, role: fmt.Sprintf("as version %d, waiting for its own retirement", r.Version),
			version: r.Version, sha256: r.KeySHA256, partialHint: r.PartialKeyHint, serviceAccountID: r.ServiceAccountID})
	}
	return uses
}

// heldBy reports whether u is the key r retires, or one its provider cannot
// tell apart from it (the same partial_key_hint).
func (r retirement) heldBy(u secretUse) bool {
	return r.KeySHA256 != "" && u.sha256 == r.KeySHA256 ||
		r.ServiceAccountID != "" && u.serviceAccountID == r.ServiceAccountID ||
		r.PartialKeyHint != "" && u.partialHint == r.PartialKeyHint
}

// otherUses are the keys every entry of the mount but k holds, read from
// storage, with k's own other waiting keys (from k, which the caller is
// changing). One scan per retiring key: List and one Get per entry.
func otherUses(ctx context.Context, s logical.Storage, k *keyEntry) ([]secretUse, error) {
	var uses []secretUse
	err := forEachKey(ctx, s, func(other *keyEntry) error {
		if other.Name != k.Name {
			uses = append(uses, other.secretUses()...)
		}
		return nil
	})
	for _, u := range k.secretUses() {
		if u.version != 0 {
			uses = append(uses, u)
		}
	}
	return uses, err
}

// sharedWith is a needsAttention naming the first use in uses, other than
// r itself (version r.Version of the entry named own), that holds r's key;
// nil when none does. untouched says what was not done.
func (r retirement) sharedWith(own string, uses []secretUse, untouched string) error {
	for _, u := range uses {
		if u.entry == own && u.version == r.Version {
			continue // r itself
		}
		if r.heldBy(u) {
			return &needsAttention{fmt.Sprintf("key %q holds it too, %s, so %s: retire it by hand once no key of the mount holds it", u.entry, u.role, untouched)}
		}
	}
	return nil
}

// anthropicPartialHint is what Anthropic's Admin API shows of a key: the
// "sk-ant-api03-" prefix and the next three characters, "...", the last
// four. "" when the key is not of that shape.
func anthropicPartialHint(key string) string {
	rest, ok := strings.CutPrefix(key, "sk-ant-")
	if !ok {
		return ""
	}
	dash := strings.IndexByte(rest, '-')
	if dash < 0 {
		return ""
	}
	shown := len("sk-ant-") + dash + 1 + 3
	if len(key) < shown+4 {
		return ""
	}
	return key[:shown] + "..." + key[len(key)-4:]
}

// retirementPlan is the scheduler's view of when each key next has a
// retirement due, rebuilt from storage with the rotation queue. Like the
// queue it is only a hint: each key is re-read under its lock before acting.
type retirementPlan struct {
	mu       sync.Mutex
	due      map[string]time.Time
	earliest time.Time // zero: nothing planned
}

func newRetirementPlan() *retirementPlan {
	return &retirementPlan{due: map[string]time.Time{}}
}

// note records when k next has a retirement due; called under its lock.
func (p *retirementPlan) note(k *keyEntry) {
	var next time.Time
	for _, r := range k.Retiring {
		if w := r.when(); next.IsZero() || w.Before(next) {
			next = w
		}
	}
	if next.IsZero() {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.due, k.Name)
		return
	}
	p.noteAt(k.Name, next)
}

// noteAt plans another look at name at when (after a storage failure).
func (p *retirementPlan) noteAt(name string, when time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.due[name] = when
	if p.earliest.IsZero() || when.Before(p.earliest) {
		p.earliest = when
	}
}

func (p *retirementPlan) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.due = map[string]time.Time{}
	p.earliest = time.Time{}
}

// takeDue removes and returns up to limit names due at now, earliest first.
// A tick with nothing due compares one time and reads nothing.
func (p *retirementPlan) takeDue(now time.Time, limit int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.earliest.IsZero() || now.Before(p.earliest) {
		return nil
	}
	var names []string
	for name, when := range p.due {
		if !now.Before(when) {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(a, b string) int { return p.due[a].Compare(p.due[b]) })
	if len(names) > limit {
		names = names[:limit]
	}
	for _, n := range names {
		delete(p.due, n)
	}
	p.earliest = time.Time{}
	for _, when := range p.due {
		if p.earliest.IsZero() || when.Before(p.earliest) {
			p.earliest = when
		}
	}
	if len(p.due) > 0 && len(names) == limit {
		// More are due: the next tick takes them.
		p.earliest = now
	}
	return names
}

// pending counts the keys the plan holds.
func (p *retirementPlan) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.due)
}

// retireDue runs the retirements due at now; called by the scheduler's tick
// on the node that may write.
func (s *rotationScheduler) retireDue(ctx context.Context, storage logical.Storage, now time.Time) {
	for _, name := range s.b.retirements.takeDue(now, maxRetirementsPerTick) {
		if ctx.Err() != nil {
			return
		}
		s.b.retireKey(ctx, storage, name, now)
	}
}

// retireKey works through the due retirements of one key under its lock.
func (b *gradientBackend) retireKey(ctx context.Context, storage logical.Storage, name string, now time.Time) {
	defer b.lockNames(name)()
	log := b.Logger().With("name", name)
	k, err := getKey(ctx, storage, name)
	if err != nil {
		log.Error("reading a key for retirement failed; retrying next tick", "error", err)
		b.retirements.noteAt(name, now.Add(b.rotation.tickOrSecond()))
		return
	}
	if k == nil || len(k.Retiring) == 0 {
		return // deleted or renamed (its new name was noted when stored)
	}
	c, clientsErr := b.clients(ctx, storage)
	var uses []secretUse
	if clientsErr == nil && k.anyRetirementDue(now) {
		uses, clientsErr = otherUses(ctx, storage, k)
	}
	var kept []retirement
	changed := false
	for _, r := range k.Retiring {
		if now.Before(r.when()) {
			kept = append(kept, r)
			continue
		}
		changed = true
		outcome := clientsErr
		if outcome == nil {
			outcome = b.retireOne(ctx, c, k, r, uses)
		}
		var attention *needsAttention
		switch {
		case outcome == nil:
			k.RetireStatus, k.RetireError = retireRetired, ""
			log.Info("replaced key retired at its provider", "version", r.Version, "key_hint", r.KeyHint, "service_account_id", r.ServiceAccountID)
		case errors.As(outcome, &attention):
			k.RetireStatus = retireAttention
			k.RetireError = fmt.Sprintf("version %d (key ending %s): %s", r.Version, r.KeyHint, attention.msg)
			log.Error("a replaced key was not retired: it needs a person", "version", r.Version, "key_hint", r.KeyHint, "reason", attention.msg)
		default:
			msg := platform.Redact(outcome.Error(), k.APIKey, k.NextAPIKey)
			r.Attempts++
			r.NextTry = now.Add(retryDelay(r.Attempts))
			kept = append(kept, r)
			k.RetireStatus = retireRetrying
			k.RetireError = fmt.Sprintf("retiring version %d (key ending %s) failed at %s (attempt %d), next attempt at %s: %s",
				r.Version, r.KeyHint, now.Format(time.RFC3339), r.Attempts, r.NextTry.Format(time.RFC3339), msg)
			log.Warn("retiring a replaced key failed; retrying with backoff", "version", r.Version, "attempt", r.Attempts, "retry_at", r.NextTry, "error", msg)
		}
	}
	if !changed {
		b.retirements.note(k)
		return
	}
	k.Retiring = kept
	if err := putKey(ctx, storage, k); err != nil {
		// The provider calls are repeated next time: a deleted account
		// answers 404 and an inactive key is found inactive, both done.
		log.Error("storing retirement state failed; retrying next tick", "error", err)
		b.retirements.noteAt(name, now.Add(b.rotation.tickOrSecond()))
		return
	}
	b.retirements.note(k)
}

// anyRetirementDue reports whether one of k's retirements is due at now.
func (k *keyEntry) anyRetirementDue(now time.Time) bool {
	return slices.ContainsFunc(k.Retiring, func(r retirement) bool { return !now.Before(r.when()) })
}

// needsAttention is a retirement that cannot be done safely: never retried,
// reported.
type needsAttention struct{ msg string }

func (e *needsAttention) Error() string { return e.msg }

// retireOne retires one replaced key: nil when it is retired (or was
// already), needsAttention when it must not be touched, another error to
// retry. uses are the keys the mount's other entries (and k's other waiting
// versions) hold.
func (b *gradientBackend) retireOne(ctx context.Context, c *clients, k *keyEntry, r retirement, uses []secretUse) error {
	switch {
	case r.ServiceAccountID != "":
		if r.ServiceAccountID == k.ServiceAccountID {
			return &needsAttention{"its service account mints the key in use now; it was not deleted"}
		}
		if err := r.sharedWith(k.Name, uses, "its service account was not deleted"); err != nil {
			return err
		}
		err := c.admin.DeleteServiceAccount(ctx, r.ProjectID, r.ServiceAccountID)
		if errors.Is(err, providers.ErrNotFound) {
			return nil // deleted already
		}
		return err
	case r.PartialKeyHint != "":
		return b.retireAnthropic(ctx, c, k, r, uses)
	}
	return &needsAttention{"the key is not of the sk-ant-api03- shape the Admin API's partial_key_hint shows, so it cannot be found there: retire it by hand in the Anthropic console"}
}

// retireAnthropic sets the one Anthropic key whose partial_key_hint matches
// the replaced key inactive. A hint the key in use (or the staged one)
// shares, a key another entry holds (or one that looks the same to the
// Admin API), no match, or several matches: nothing is touched.
func (b *gradientBackend) retireAnthropic(ctx context.Context, c *clients, k *keyEntry, r retirement, uses []secretUse) error {
	for _, inUse := range []string{k.APIKey, k.NextAPIKey} {
		if inUse != "" && anthropicPartialHint(inUse) == r.PartialKeyHint {
			return &needsAttention{"it looks the same as the key in use (or the staged one) in the Admin API's partial_key_hint, so neither was touched: retire it by hand in the Anthropic console"}
		}
	}
	if err := r.sharedWith(k.Name, uses, "it was not set inactive"); err != nil {
		return err
	}
	keys, err := c.admin.ListAnthropicKeys(ctx)
	if err != nil {
		return err
	}
	var matches []providers.AnthropicKey
	for _, ak := range keys {
		if ak.PartialKeyHint == r.PartialKeyHint {
			matches = append(matches, ak)
		}
	}
	switch len(matches) {
	case 0:
		return &needsAttention{"no key in the Anthropic organization matches its partial_key_hint (deleted already, or in a workspace anthropic_admin_key cannot see); nothing was touched"}
	case 1:
	default:
		ids := make([]string, len(matches))
		for i, m := range matches {
			ids[i] = m.ID
		}
		return &needsAttention{fmt.Sprintf("%d keys in the Anthropic organization match its partial_key_hint (%s), so none was touched: set the right one inactive by hand", len(matches), strings.Join(ids, ", "))}
	}
	if matches[0].Status != "active" {
		return nil // inactive or archived already
	}
	return c.admin.SetAnthropicKeyStatus(ctx, matches[0].ID, "inactive")
}

// retireAccountsOnDelete deletes the service accounts of a minted key that
// is being deleted: the one in use and those waiting for retirement. It
// runs once the platform key is gone (before that, the account in use is
// what creds/ serves) and before the entry goes: once the entry is gone
// nothing records them, and they would leak. Deleting one twice is a 404,
// which counts.
func (b *gradientBackend) retireAccountsOnDelete(ctx context.Context, c *clients, k *keyEntry, log hclog.Logger) error {
	type account struct{ id, project string }
	var accounts []account
	if k.ServiceAccountID != "" {
		accounts = append(accounts, account{k.ServiceAccountID, k.ServiceAccountProjectID})
	}
	for _, r := range k.Retiring {
		if r.ServiceAccountID != "" {
			accounts = append(accounts, account{r.ServiceAccountID, r.ProjectID})
		}
	}
	for _, a := range accounts {
		if err := c.admin.DeleteServiceAccount(ctx, a.project, a.id); err != nil && !errors.Is(err, providers.ErrNotFound) {
			return fmt.Errorf("the platform key is deleted, but deleting service account %s of %q failed; Vault keeps the entry, which records its accounts: delete again to finish (Vault's periodic rollback retries too): %w", a.id, k.Name, err)
		}
		log.Info("deleted the service account of a deleted key", "service_account_id", a.id)
	}
	return nil
}

// retirementCounts are what status counts about retirements.
type retirementCounts struct{ pending, retrying, attention int }

func (rc *retirementCounts) add(k *keyEntry) {
	rc.pending += len(k.Retiring)
	switch k.RetireStatus {
	case retireRetrying:
		rc.retrying++
	case retireAttention:
		rc.attention++
	}
}
