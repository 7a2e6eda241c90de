package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The create of a dynamic agent API key (agent-creds/<name>) takes
// makeChange's road like every platform change: the entry, with the key's
// name chosen in advance, is written before the create; the lease record
// is the commit. The name is unique to the call, so the undo finds this
// create's key by it after a lost answer or a crash, and nothing else can
// carry it.

// agentLeasePrefix holds one record per issued key that is still alive:
// agent-leases/<role>/<key uuid>. A List of a role's folder counts its live
// keys for max_leases; tidy spares exactly the keys recorded here. The
// record holds no secret: the platform never shows the secret again, and
// Vault keeps it only in the lease it answered.
const agentLeasePrefix = "agent-leases/"

// agentMountIDPath holds this mount's mark, chosen once: every key name the
// mount makes starts with vault-<mark>-, which is how tidy tells its keys
// from anyone else's on the same agent.
const agentMountIDPath = "agent-keys/mount-id"

// agentLease is one issued key, stored from its create to its revocation.
type agentLease struct {
	Role      string    `json:"role"`
	AgentUUID string    `json:"agent_uuid"`
	KeyUUID   string    `json:"key_uuid"`
	Name      string    `json:"name"`
	IssuedAt  time.Time `json:"issued_at"`
	// ExpiresBy is the issue plus the role's max_ttl at the issue: no
	// renewal takes the lease past it (secret_agent_creds.go). A record
	// long past it belongs to a lease Vault no longer holds (revoked with
	// -force, or given up as irrevocable), and tidy deletes its key.
	ExpiresBy time.Time `json:"expires_by,omitzero"`
	// LeaseEnds is when the lease ends unless it is renewed: the issue
	// plus the ttl the answer granted, moved by every renewal to the
	// renewal plus the ttl it granted (never past ExpiresBy). Vault may
	// cap either further (the mount's max lease TTL), which only ends the
	// lease sooner. Records written before this field have none.
	LeaseEnds time.Time `json:"lease_ends,omitzero"`

	// maxTTL is the max_ttl a lease carries from its issue; not stored.
	maxTTL time.Duration
}

// agentLeaseGrace is how long past its lease's end a record is left alone:
// Vault registers a lease a moment after the plugin answered, revokes an
// expired lease shortly after its end, and retries a failed revocation
// with backoff (minutes, not an hour).
const agentLeaseGrace = time.Hour

// outlived reports a record whose lease cannot exist any more: more than
// agentLeaseGrace past LeaseEnds, or past ExpiresBy, whichever comes first
// (a record without LeaseEnds, from an earlier version, goes by ExpiresBy
// alone).
//
// Why LeaseEnds is enough: a lease that exists is either renewed, and every
// renewal moves LeaseEnds (agentCredsRenew), or it expires, and at its
// expiry Vault calls Revoke, which deletes the key and the record. So a
// record still here more than the grace past its LeaseEnds has no lease:
// Vault never registered it (the plugin died after storing the record and
// before Vault had its answer, or Vault crashed before storing the lease),
// or Vault gave up revoking it, or it was revoked with -force. Nothing else
// will delete its key. A revocation that failed and that Vault still
// retries is not harmed by tidy deleting the key first: revokeAgentKey
// takes the platform's 404 as done and deletes the record, if any.
func (l *agentLease) outlived(now time.Time) bool {
	end := l.end()
	return !end.IsZero() && now.After(end.Add(agentLeaseGrace))
}

// end is the latest the lease can end: the earlier of LeaseEnds and
// ExpiresBy, either when the other is missing; zero if both are.
func (l *agentLease) end() time.Time {
	if !l.LeaseEnds.IsZero() && (l.ExpiresBy.IsZero() || l.LeaseEnds.Before(l.ExpiresBy)) {
		return l.LeaseEnds
	}
	return l.ExpiresBy
}

// leaseEndsAt is when a lease granted ttl at now ends, never past
// ExpiresBy.
func (l *agentLease) leaseEndsAt(now time.Time, ttl time.Duration) time.Time {
	end := now.Add(ttl)
	if !l.ExpiresBy.IsZero() && end.After(l.ExpiresBy) {
		end = l.ExpiresBy
	}
	return end
}

func agentLeasePath(role, keyUUID string) string {
	return agentLeasePrefix + role + "/" + strings.ToLower(keyUUID)
}

func putAgentLease(ctx context.Context, s logical.Storage, l *agentLease) error {
	return putJSON(ctx, s, agentLeasePath(l.Role, l.KeyUUID), "the lease record of agent API key "+l.KeyUUID, l)
}

func getAgentLease(ctx context.Context, s logical.Storage, role, keyUUID string) (*agentLease, error) {
	return getJSON[agentLease](ctx, s, agentLeasePath(role, keyUUID), "the lease record of agent API key "+keyUUID)
}

// countAgentLeases is the number of live keys of one role.
func countAgentLeases(ctx context.Context, s logical.Storage, role string) (int, error) {
	keys, err := s.List(ctx, agentLeasePrefix+role+"/")
	if err != nil {
		return 0, fmt.Errorf("listing the leases of agent role %q: %w", role, err)
	}
	return len(keys), nil
}

// allAgentLeases reads every lease record, of every role, deleted roles
// included.
func allAgentLeases(ctx context.Context, s logical.Storage) ([]*agentLease, error) {
	roles, err := s.List(ctx, agentLeasePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing agent leases: %w", err)
	}
	var out []*agentLease
	for _, folder := range roles {
		role := strings.TrimSuffix(folder, "/")
		uuids, err := s.List(ctx, agentLeasePrefix+role+"/")
		if err != nil {
			return nil, fmt.Errorf("listing the leases of agent role %q: %w", role, err)
		}
		for _, u := range uuids {
			l, err := getAgentLease(ctx, s, role, u)
			if err != nil {
				return nil, err
			}
			if l != nil {
				out = append(out, l)
			}
		}
	}
	return out, nil
}

// agentLeaseOfKey is the lease record that holds platform key keyUUID, under
// any role (deleted roles included), if one does: one List of the roles and
// one read per role.
func agentLeaseOfKey(ctx context.Context, s logical.Storage, keyUUID string) (*agentLease, error) {
	roles, err := s.List(ctx, agentLeasePrefix)
	if err != nil {
		return nil, fmt.Errorf("listing agent leases: %w", err)
	}
	for _, folder := range roles {
		l, err := getAgentLease(ctx, s, strings.TrimSuffix(folder, "/"), keyUUID)
		if err != nil || l != nil {
			return l, err
		}
	}
	return nil, nil
}

// agentMountID returns the mount's mark, choosing and storing it the first
// time. The mutex keeps two first issues on this node from choosing two
// marks; only the active node writes, so no other node races it.
func (b *gradientBackend) agentMountID(ctx context.Context, s logical.Storage) (string, error) {
	b.agentMarkMu.Lock()
	defer b.agentMarkMu.Unlock()
	if b.agentMark != "" {
		return b.agentMark, nil
	}
	entry, err := s.Get(ctx, agentMountIDPath)
	if err != nil {
		return "", fmt.Errorf("reading the mount's agent key mark: %w", err)
	}
	if entry != nil && agentMarkPattern.Match(entry.Value) {
		b.agentMark = string(entry.Value)
		return b.agentMark, nil
	}
	mark := randomHex(4)
	if err := s.Put(ctx, &logical.StorageEntry{Key: agentMountIDPath, Value: []byte(mark)}); err != nil {
		return "", fmt.Errorf("storing the mount's agent key mark: %w", err)
	}
	b.agentMark = mark
	return mark, nil
}

// newAgentMountID replaces the mount's mark with a new one and answers both.
// Keys under the previous mark are no longer swept by it: those this mount
// still leases are revoked by their uuid, an outlived record ends its key,
// and a failed create is rolled back by its exact name, all whatever the
// mark.
func (b *gradientBackend) newAgentMountID(ctx context.Context, s logical.Storage) (previous, mark string, err error) {
	b.agentMarkMu.Lock()
	defer b.agentMarkMu.Unlock()
	previous, err = storedAgentMountID(ctx, s)
	if err != nil {
		return "", "", err
	}
	for mark = randomHex(4); mark == previous; mark = randomHex(4) {
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: agentMountIDPath, Value: []byte(mark)}); err != nil {
		return "", "", fmt.Errorf("storing the mount's new agent key mark: %w", err)
	}
	b.agentMark = mark
	return previous, mark, nil
}

// forgetAgentMountID drops the mark this node read, after another node
// changed it.
func (b *gradientBackend) forgetAgentMountID() {
	b.agentMarkMu.Lock()
	defer b.agentMarkMu.Unlock()
	b.agentMark = ""
}

// storedAgentMountID is the mark if one was ever chosen, without choosing
// one: tidy on a mount that never issued a key has nothing to look for.
func storedAgentMountID(ctx context.Context, s logical.Storage) (string, error) {
	entry, err := s.Get(ctx, agentMountIDPath)
	if err != nil {
		return "", fmt.Errorf("reading the mount's agent key mark: %w", err)
	}
	if entry == nil || !agentMarkPattern.Match(entry.Value) {
		return "", nil
	}
	return string(entry.Value), nil
}

var agentMarkPattern = regexp.MustCompile(`^[0-9a-f]{8}$`)

// agentMarkLength is the length of a mark: randomHex(4), as agentMarkPattern
// says.
const agentMarkLength = 8

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never fails
	return hex.EncodeToString(buf)
}

// agentKeyName is the name of a new key of role: vault-<mark>-<role>-<8 hex>,
// so that an operator in the control panel sees which Vault mount and role
// made it, and tidy recognizes it. It keeps to the name rule (lowercase
// letters, digits, hyphens, periods; at most 64): a long role name is
// shortened; the random part alone makes the name unique.
func agentKeyName(mark, role string) string {
	prefix := agentKeyPrefix + mark + "-"
	suffix := "-" + randomHex(4)
	base := role[:min(len(role), maxNameLength-len(prefix)-len(suffix))]
	return prefix + strings.TrimRight(base, ".") + suffix
}

// agentKeyPrefix starts the name of every key agentKeyName makes, before
// the mount's mark.
const agentKeyPrefix = "vault-"

// isMountAgentKey reports whether name was made by agentKeyName with mark.
func isMountAgentKey(mark, name string) bool {
	rest, ok := strings.CutPrefix(name, agentKeyPrefix+mark+"-")
	return ok && agentKeySuffix.MatchString(rest)
}

// isAnyMountAgentKey reports whether name was made by agentKeyName with any
// mark: a key that some mount of this plugin (this one under an earlier
// mark, another path, a restored copy) made for an agent-creds/ lease.
func isAnyMountAgentKey(name string) bool {
	rest, ok := strings.CutPrefix(name, agentKeyPrefix)
	if !ok || len(rest) <= agentMarkLength || rest[agentMarkLength] != '-' {
		return false
	}
	mark := rest[:agentMarkLength]
	return agentMarkPattern.MatchString(mark) && isMountAgentKey(mark, name)
}

var agentKeySuffix = regexp.MustCompile(`^.+-[0-9a-f]{8}$`)

// agentKeyWAL is the entry of one create of an agent API key: the name is
// chosen before the call, so the undo finds the key by it whatever became
// of the answer.
type agentKeyWAL struct {
	walHeader
	Role      string `json:"role"`
	AgentUUID string `json:"agent_uuid"`
	Name      string `json:"name"`
}

func (w *agentKeyWAL) kind() string { return walKindAgentKey }

// lockScope is the role's lock: issues of the role hold it, so the undo
// never runs while a create of the role is between its call and its lease
// record.
func (w *agentKeyWAL) lockScope() ([]string, string) { return []string{roleLock(w.Role)}, "" }
func (w *agentKeyWAL) undone() string {
	return w.said("if the platform created the agent API key, it was deleted again")
}
func (w *agentKeyWAL) describe() []any {
	return []any{"role", w.Role, "agent_uuid", w.AgentUUID, "key_name", w.Name}
}

// undo deletes every key of the agent under the entry's name that no lease
// record holds: the create's key when its answer was lost, when the lease
// record could not be written, or when the node died in between, and a
// create that landed late. No other key can carry that name.
func (w *agentKeyWAL) undo(ctx context.Context, b *gradientBackend, s logical.Storage) error {
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("rolling back the create of agent API key %q: %w", w.Name, err)
	}
	keys, err := c.agentKeys.ListAgentKeys(ctx, w.AgentUUID)
	if errors.Is(err, platform.ErrNotFound) {
		// The agent is gone, and its keys with it.
		w.outcome = fmt.Sprintf("agent %s no longer exists, and its keys went with it", w.AgentUUID)
		return nil
	}
	if err != nil {
		return fmt.Errorf("rolling back the create of agent API key %q: %w", w.Name, err)
	}
	deleted := 0
	for _, k := range keys {
		if k.Name != w.Name {
			continue
		}
		if held, err := getAgentLease(ctx, s, w.Role, k.UUID); err != nil {
			return err
		} else if held != nil {
			continue
		}
		if err := c.agentKeys.DeleteAgentKey(ctx, w.AgentUUID, k.UUID); err != nil && !errors.Is(err, platform.ErrNotFound) {
			return fmt.Errorf("rolling back the create of agent API key %q: deleting orphan %s: %w", w.Name, k.UUID, err)
		}
		b.Logger().Warn("deleted an orphaned agent API key", "role", w.Role, "agent_uuid", w.AgentUUID, "key_uuid", k.UUID, "key_name", w.Name)
		deleted++
	}
	if deleted == 0 {
		w.outcome = "the agent has no key from this create that a lease does not hold"
	}
	return nil
}

// issueAgentKey creates one key of role r under a new name and records its
// lease. The caller holds the role's lock. A failure leaves no key behind:
// a refusal made none; any other failure is undone at once, and the entry
// stays for the periodic rollback, in case the create lands late.
func (b *gradientBackend) issueAgentKey(ctx context.Context, s logical.Storage, c *clients, r *agentRole) (platform.AgentKey, *agentLease, error) {
	mark, err := b.agentMountID(ctx, s)
	if err != nil {
		return platform.AgentKey{}, nil, err
	}
	now := b.now().UTC()
	w := &agentKeyWAL{
		walHeader: walHeader{Created: now},
		Role:      r.Name, AgentUUID: r.AgentUUID, Name: agentKeyName(mark, r.Name),
	}
	var key platform.AgentKey
	var lease *agentLease
	err = b.makeChange(ctx, s, pendingChange{
		entry: w,
		apply: func(ctx context.Context) error {
			k, err := c.agentKeys.CreateAgentKey(ctx, r.AgentUUID, w.Name)
			if err != nil {
				return fmt.Errorf("creating agent API key %q on agent %s: %w", w.Name, r.AgentUUID, err)
			}
			key = k
			lease = &agentLease{Role: r.Name, AgentUUID: r.AgentUUID, KeyUUID: strings.ToLower(k.UUID), Name: w.Name, IssuedAt: now, ExpiresBy: now.Add(r.MaxTTL)}
			// The lease's end counts from the create's answer, not
			// from before the call: Vault starts the lease later
			// still, within agentLeaseGrace.
			lease.LeaseEnds = lease.leaseEndsAt(b.now().UTC(), r.TTL)
			return nil
		},
		commit: func(ctx context.Context) error { return putAgentLease(ctx, s, lease) },
	})
	if err != nil {
		return platform.AgentKey{}, nil, err
	}
	return key, lease, nil
}

// revokeAgentKey deletes an issued key on the platform, then its lease
// record. A key already gone counts as deleted. On a failure the record
// stays (the key still counts and tidy spares it) and Vault retries the
// revocation.
func (b *gradientBackend) revokeAgentKey(ctx context.Context, s logical.Storage, l *agentLease) error {
	// A renewal of the same lease writes the record: it must not write it
	// back after this deleted it.
	defer b.lockUUID(l.KeyUUID)()
	c, err := b.clients(ctx, s)
	if err != nil {
		return fmt.Errorf("revoking agent API key %s of agent %s: %w", l.KeyUUID, l.AgentUUID, err)
	}
	err = c.agentKeys.DeleteAgentKey(ctx, l.AgentUUID, l.KeyUUID)
	switch {
	case errors.Is(err, platform.ErrNotFound):
		b.Logger().Info("agent API key was already gone at revocation", "role", l.Role, "agent_uuid", l.AgentUUID, "key_uuid", l.KeyUUID)
	case err != nil:
		b.Logger().Error("deleting a revoked agent API key failed; Vault retries the revocation", "role", l.Role, "agent_uuid", l.AgentUUID, "key_uuid", l.KeyUUID, "error", err)
		return fmt.Errorf("revoking agent API key %s of agent %s: %w", l.KeyUUID, l.AgentUUID, err)
	default:
		b.Logger().Info("agent API key revoked", "role", l.Role, "agent_uuid", l.AgentUUID, "key_uuid", l.KeyUUID)
	}
	if err := s.Delete(ctx, agentLeasePath(l.Role, l.KeyUUID)); err != nil {
		return fmt.Errorf("agent API key %s was deleted, but its lease record was not: %w", l.KeyUUID, err)
	}
	return nil
}
