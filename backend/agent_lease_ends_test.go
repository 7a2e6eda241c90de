package backend

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The lease record's LeaseEnds: set at the issue, moved by every renewal,
// and what tidy goes by, so that a key whose lease Vault never registered
// (the plugin SIGKILLed after storing the record and before Vault had its
// answer, or Vault crashed before storing the lease) is deleted about ttl +
// agentLeaseGrace after its issue instead of max_ttl + agentLeaseGrace.

// leaseEndsEnv is a sync env (fake clock, periodic sync ticked by the test)
// with role team-a-bot of ttl 1h and the given max_ttl.
func leaseEndsEnv(t *testing.T, maxTTL string) (r *rotEnv, agent string) {
	t.Helper()
	r = newSyncEnv(t, map[string]any{"sync_interval": "10m"})
	a := r.createAgent("support-bot", "", "")
	r.mustOK(logical.CreateOperation, "agent-roles/team-a-bot", map[string]any{"agent_uuid": a.Uuid, "ttl": "1h", "max_ttl": maxTTL})
	return r, a.Uuid
}

// renewAt renews secret as Vault would with elapsed of the fake clock since
// the issue: CalculateTTL counts from the lease's IssueTime by the real
// clock, so the IssueTime handed is the real now less elapsed.
func (r *rotEnv) renewAt(secret *logical.Secret, elapsed time.Duration) *logical.Response {
	r.t.Helper()
	s := *secret
	s.IssueTime = time.Now().Add(-elapsed)
	resp, err := r.agentLease(logical.RenewOperation, &s)
	if err != nil {
		r.t.Fatalf("renew at %s: %v", elapsed, err)
	}
	return resp
}

func (r *rotEnv) leaseRecord(keyUUID any) *agentLease {
	r.t.Helper()
	l, err := getAgentLease(context.Background(), r.storage, "team-a-bot", keyUUID.(string))
	if err != nil {
		r.t.Fatal(err)
	}
	return l
}

func (r *rotEnv) tidyDeleted() []string {
	r.t.Helper()
	return r.mustOK(logical.UpdateOperation, "agent-creds-tidy", nil).Data["deleted"].([]string)
}

// (a) A record whose lease Vault never registered (issued, never renewed,
// never revoked) is ended by the periodic sync's tidy once it is more than
// agentLeaseGrace past ttl from the issue: at about 2 hours, not 25. A lease
// renewed meanwhile keeps its key. Vault's revocation of the tidied key, if
// the lease did exist after all, still succeeds (a 404 is done).
func TestAgentCreds_TidyEndsARecordWhoseLeaseWasNeverRegistered(t *testing.T) {
	r, agent := leaseEndsEnv(t, "24h")
	orphan := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	renewed := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	issued := r.clock.Now()
	if l := r.leaseRecord(orphan.Data["api_key_uuid"]); !l.LeaseEnds.Equal(issued.Add(time.Hour)) || !l.ExpiresBy.Equal(issued.Add(24*time.Hour)) {
		t.Fatalf("record at the issue: lease_ends %s expires_by %s, want the issue plus 1h and 24h", l.LeaseEnds, l.ExpiresBy)
	}
	// Every half hour the holder renews one lease; tidy runs by hand just
	// short of ttl + grace and finds nothing to delete.
	for elapsed := 30 * time.Minute; elapsed <= 2*time.Hour-time.Minute; elapsed += 30 * time.Minute {
		r.advanceTo(issued.Add(elapsed))
		if resp := r.renewAt(renewed.Secret, elapsed); resp.IsError() {
			t.Fatalf("renew: %v", resp.Error())
		}
	}
	r.advanceTo(issued.Add(2*time.Hour - time.Minute))
	if deleted := r.tidyDeleted(); len(deleted) != 0 {
		t.Fatalf("tidy before ttl + grace deleted %v", deleted)
	}
	// Past ttl + grace, the periodic sync (due every 10 minutes) ends it.
	r.advanceTo(issued.Add(2*time.Hour + time.Minute))
	r.syncTick()
	keys := r.agentKeysOn(agent)
	if len(keys) != 1 || keys[0].UUID != renewed.Data["api_key_uuid"] {
		t.Fatalf("after the sync at 2h01m: %+v, want only the renewed lease's key", keys)
	}
	if r.leaseRecord(orphan.Data["api_key_uuid"]) != nil {
		t.Fatal("the orphan's record stayed")
	}
	// Had the lease existed and its revocation been retried by Vault, the
	// revocation finds the key gone and succeeds.
	r.revokeAgentLease(orphan.Secret)
	if len(r.agentKeysOn(agent)) != 1 {
		t.Fatal("the revocation touched another key")
	}
}

// (b) A lease renewed every half hour is never tidied, up to its max_ttl;
// once renewal is refused there, its key lives until Vault's revocation,
// or, if none comes, tidy ends it agentLeaseGrace past max_ttl.
func TestAgentCreds_TidySparesALeaseRenewedUpToMaxTTL(t *testing.T) {
	r, agent := leaseEndsEnv(t, "24h")
	resp := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	uuid := resp.Data["api_key_uuid"].(string)
	issued := r.clock.Now()
	for elapsed := 30 * time.Minute; elapsed < 24*time.Hour; elapsed += 30 * time.Minute {
		r.advanceTo(issued.Add(elapsed))
		if rr := r.renewAt(resp.Secret, elapsed); rr.IsError() {
			t.Fatalf("renew at %s: %v", elapsed, rr.Error())
		}
		// Tidy runs just before the next renewal would come, and after
		// the grace of the lease's previous end.
		r.advance(29 * time.Minute)
		r.syncTick()
		if !hasKey(r.agentKeysOn(agent), uuid) {
			t.Fatalf("tidy deleted a lease renewed at %s", elapsed)
		}
	}
	l := r.leaseRecord(uuid)
	if !l.LeaseEnds.Equal(l.ExpiresBy) {
		t.Fatalf("lease_ends %s after the last renewal, want expires_by %s", l.LeaseEnds, l.ExpiresBy)
	}
	r.advanceTo(issued.Add(24 * time.Hour))
	if rr := r.renewAt(resp.Secret, 24*time.Hour+time.Second); !rr.IsError() {
		t.Fatalf("renewed past max_ttl: %#v", rr)
	}
	r.advanceTo(l.ExpiresBy.Add(agentLeaseGrace - time.Minute))
	if deleted := r.tidyDeleted(); len(deleted) != 0 {
		t.Fatalf("tidy within the grace of max_ttl deleted %v", deleted)
	}
	r.advanceTo(l.ExpiresBy.Add(agentLeaseGrace + time.Minute))
	if deleted := r.tidyDeleted(); !slices.Equal(deleted, []string{uuid}) {
		t.Fatalf("tidy past max_ttl + grace: %v", deleted)
	}
}

// (c) A record of the previous version has no lease_ends: tidy goes by
// expires_by + grace alone, as it did, whatever the ttl.
func TestAgentCreds_TidyOfARecordWithoutLeaseEndsGoesByExpiresBy(t *testing.T) {
	r, agent := leaseEndsEnv(t, "6h")
	resp := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	uuid := resp.Data["api_key_uuid"].(string)
	l := r.leaseRecord(uuid)
	l.LeaseEnds = time.Time{}
	if err := putAgentLease(context.Background(), r.storage, l); err != nil {
		t.Fatal(err)
	}
	if stored, _ := r.storage.Get(context.Background(), agentLeasePath("team-a-bot", uuid)); stored == nil || strings.Contains(string(stored.Value), "lease_ends") {
		t.Fatalf("a record without LeaseEnds: %v", stored)
	}
	r.advanceTo(l.ExpiresBy.Add(agentLeaseGrace - time.Minute)) // 6h59m: well past ttl + grace
	if deleted := r.tidyDeleted(); len(deleted) != 0 || !hasKey(r.agentKeysOn(agent), uuid) {
		t.Fatalf("tidy ended a previous version's record before expires_by + grace: %v", deleted)
	}
	r.advanceTo(l.ExpiresBy.Add(agentLeaseGrace + time.Minute))
	if deleted := r.tidyDeleted(); !slices.Equal(deleted, []string{uuid}) || hasKey(r.agentKeysOn(agent), uuid) {
		t.Fatalf("tidy past expires_by + grace: %v", deleted)
	}
}

// (d) Each renewal moves lease_ends to the renewal plus the ttl granted,
// capped at expires_by, and never earlier than it was; a renewal of a lease
// whose record is gone is refused, and writes none.
func TestAgentCreds_RenewalMovesLeaseEnds(t *testing.T) {
	r, _ := leaseEndsEnv(t, "2h")
	resp := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	uuid := resp.Data["api_key_uuid"]
	issued := r.clock.Now()

	r.advanceTo(issued.Add(30 * time.Minute))
	r.renewAt(resp.Secret, 30*time.Minute)
	if got, want := r.leaseRecord(uuid).LeaseEnds, issued.Add(90*time.Minute); !got.Equal(want) {
		t.Fatalf("after a renewal at 30m: lease_ends %s, want %s", got, want)
	}

	// A renewal asking a shorter increment does not pull it back.
	r.advanceTo(issued.Add(40 * time.Minute))
	s := *resp.Secret
	s.Increment = time.Minute
	r.renewAt(&s, 40*time.Minute)
	if got, want := r.leaseRecord(uuid).LeaseEnds, issued.Add(90*time.Minute); !got.Equal(want) {
		t.Fatalf("after a 1m renewal at 40m: lease_ends %s, want %s kept", got, want)
	}

	// Vault's issue time comes after the plugin's (it registers the lease
	// once the plugin answered): by its clock the lease has 20m left at
	// 110m of the plugin's, and lease_ends stops at expires_by.
	r.advanceTo(issued.Add(110 * time.Minute))
	if rr := r.renewAt(resp.Secret, 100*time.Minute); rr.IsError() || rr.Secret.TTL < 19*time.Minute {
		t.Fatalf("renew: %#v", rr)
	}
	if l := r.leaseRecord(uuid); !l.LeaseEnds.Equal(l.ExpiresBy) || !l.ExpiresBy.Equal(issued.Add(2*time.Hour)) {
		t.Fatalf("lease_ends %s, want expires_by %s (issue + 2h)", l.LeaseEnds, l.ExpiresBy)
	}

	// The lease was revoked (the record deleted with its key): a late
	// renewal is refused and brings no record back.
	r.revokeAgentLease(resp.Secret)
	r.advanceTo(issued.Add(111 * time.Minute))
	if rr := r.renewAt(resp.Secret, 111*time.Minute); !rr.IsError() {
		t.Fatalf("renewed a lease whose record is gone: %#v", rr)
	}
	if r.leaseRecord(uuid) != nil {
		t.Fatal("a renewal wrote back a revoked lease's record")
	}
}

// A renewal whose record write fails fails: Vault keeps the lease's
// previous end, which the record still holds, so tidy's view stays true.
func TestAgentCreds_RenewalFailsWhenItsRecordWriteFails(t *testing.T) {
	r, _ := leaseEndsEnv(t, "24h")
	resp := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	uuid := resp.Data["api_key_uuid"]
	before := r.leaseRecord(uuid).LeaseEnds
	r.advance(30 * time.Minute)
	r.storage.failPutsUnder(agentLeasePrefix)
	s := *resp.Secret
	s.IssueTime = time.Now().Add(-30 * time.Minute)
	if rr, err := r.agentLease(logical.RenewOperation, &s); err == nil && (rr == nil || !rr.IsError()) {
		t.Fatalf("a renewal whose record write failed succeeded: %#v", rr)
	}
	r.storage.failPutsUnder("")
	if got := r.leaseRecord(uuid).LeaseEnds; !got.Equal(before) {
		t.Fatalf("lease_ends %s after a failed renewal, want %s", got, before)
	}
	r.renewAt(resp.Secret, 30*time.Minute)
	if got := r.leaseRecord(uuid).LeaseEnds; !got.Equal(before.Add(30 * time.Minute)) {
		t.Fatalf("lease_ends %s after the retried renewal, want %s", got, before.Add(30*time.Minute))
	}
}
