package backend

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// agentKeysRoute is the emulator's route of one agent's API keys, for
// faults.
const agentKeysRoute = "/v2/gen-ai/agents/{agent_uuid}/api_keys"

// newAgentRoleEnv is newAgentEnv with a role "team-a-bot" on the agent.
func newAgentRoleEnv(t *testing.T, role map[string]any) (e *testEnv, agentUUID, agentURL string) {
	t.Helper()
	e, agentUUID, agentURL = newAgentEnv(t)
	data := map[string]any{"agent_uuid": agentUUID}
	for k, v := range role {
		data[k] = v
	}
	e.mustOK(logical.CreateOperation, "agent-roles/team-a-bot", data)
	return e, agentUUID, agentURL
}

// agentKeysOn are the agent's API keys on the platform, secrets aside.
func (e *testEnv) agentKeysOn(agentUUID string) []emulator.AgentAPIKeyState {
	var out []emulator.AgentAPIKeyState
	for _, k := range e.emu.AgentAPIKeys() {
		if k.AgentUUID == agentUUID {
			out = append(out, k)
		}
	}
	return out
}

// callAgent calls the agent's endpoint with secret, as an application
// would, and returns the status: 200 for a live key, 401 otherwise.
func (e *testEnv) callAgent(agentURL, secret string) int {
	e.t.Helper()
	url, ok := emulator.AgentEndpointURL(e.srv.URL, agentURL)
	if !ok {
		e.t.Fatalf("not an agent endpoint: %q", agentURL)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("calling the agent: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// agentLease sends a renew or revoke of an agent-creds lease through
// HandleRequest, as Vault's expiration manager does.
func (e *testEnv) agentLease(op logical.Operation, secret *logical.Secret) (*logical.Response, error) {
	s := *secret
	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: "agent-creds/team-a-bot", Secret: &s, Storage: e.storage, MountPoint: "gradient/",
	})
}

// revokeAgentLease fails the test unless the revocation succeeded.
func (e *testEnv) revokeAgentLease(secret *logical.Secret) {
	e.t.Helper()
	if resp, err := e.agentLease(logical.RevokeOperation, secret); err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("revoke: %v %v", resp, err)
	}
}

// assertSecretNotIn fails when text holds the secret or part of it.
func assertSecretNotIn(t *testing.T, what, text, secret string) {
	t.Helper()
	for i := 0; i+12 <= len(secret); i += 4 {
		if strings.Contains(text, secret[i:i+12]) {
			t.Fatalf("%s contains part of an agent API key's secret", what)
		}
	}
}

var agentKeyNamePattern = regexp.MustCompile(`^vault-[0-9a-f]{8}-team-a-bot-[0-9a-f]{8}$`)

func TestAgentCreds_IssueAnswersALiveKeyUnderALease(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, map[string]any{"ttl": "10m", "max_ttl": "1h"})
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	secret, _ := resp.Data["api_key"].(string)
	if secret == "" || resp.Data["agent_uuid"] != agent || resp.Data["agent_url"] != url {
		t.Fatalf("answer: %v", resp.Data["agent_uuid"])
	}
	if resp.Secret == nil || resp.Secret.TTL.Minutes() != 10 || resp.Secret.MaxTTL.Hours() != 1 || !resp.Secret.Renewable {
		t.Fatalf("lease: %+v", resp.Secret)
	}
	keys := e.agentKeysOn(agent)
	if len(keys) != 1 || keys[0].UUID != resp.Data["api_key_uuid"] || !agentKeyNamePattern.MatchString(keys[0].Name) {
		t.Fatalf("keys on the agent: %+v", keys)
	}
	if status := e.callAgent(url, secret); status != http.StatusOK {
		t.Fatalf("the agent answered %d to the issued key", status)
	}
	// One platform call per lease: the create.
	if n := e.emu.Counts()["POST "+agentKeysRoute]; n != 1 {
		t.Fatalf("creates = %d", n)
	}
	// Two reads, two keys, both live.
	second := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	if second.Data["api_key_uuid"] == resp.Data["api_key_uuid"] || e.callAgent(url, second.Data["api_key"].(string)) != http.StatusOK {
		t.Fatal("a second read did not make a second live key")
	}
	if live := e.mustOK(logical.ReadOperation, "agent-roles/team-a-bot", nil).Data["live_leases"]; live != 2 {
		t.Fatalf("live_leases = %v", live)
	}
	status := e.mustOK(logical.ReadOperation, "status", nil).Data
	if status["agent_roles"] != 1 || status["agent_leased_keys"] != 2 {
		t.Fatalf("status: roles %v, leased %v", status["agent_roles"], status["agent_leased_keys"])
	}
	assertSecretNotIn(t, "the plugin's log", e.logs.String(), secret)
	assertNoWAL(t, e)
}

func TestAgentCreds_UnknownRoleAndBadName(t *testing.T) {
	e, _, _ := newAgentEnv(t)
	e.mustBadRequest(logical.ReadOperation, "agent-creds/nobody", nil, `no agent role named "nobody"`)
	e.mustBadRequest(logical.ReadOperation, "agent-creds/Team_A", nil, "invalid key name")
	if keys := e.emu.AgentAPIKeys(); len(keys) != 0 {
		t.Fatalf("keys made: %+v", keys)
	}
}

func TestAgentCreds_RevokeDeletesTheKey(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, nil)
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	e.revokeAgentLease(resp.Secret)
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("keys left: %+v", keys)
	}
	if status := e.callAgent(url, resp.Data["api_key"].(string)); status != http.StatusUnauthorized {
		t.Fatalf("a revoked key got %d from the agent", status)
	}
	if live := e.mustOK(logical.ReadOperation, "agent-roles/team-a-bot", nil).Data["live_leases"]; live != 0 {
		t.Fatalf("live_leases = %v", live)
	}
	// Revoking again (Vault retries): the key is already gone, which is done.
	e.revokeAgentLease(resp.Secret)
}

func TestAgentCreds_RevokeOfAKeyAlreadyGoneSucceeds(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	uuid := resp.Data["api_key_uuid"].(string)
	if _, _, err := e.do.AgentPlatform.DeleteAgentAPIKey(context.Background(), agent, uuid); err != nil {
		t.Fatal(err)
	}
	e.revokeAgentLease(resp.Secret)
	if live, _ := countAgentLeases(context.Background(), e.storage, "team-a-bot"); live != 0 {
		t.Fatalf("the lease record stayed: %d", live)
	}
	if !strings.Contains(e.logs.String(), "already gone") {
		t.Fatal("the log does not say the key was already gone")
	}
}

func TestAgentCreds_RevokeFailureNamesTheKeyAndIsRetried(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, nil)
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	secret, uuid := resp.Data["api_key"].(string), resp.Data["api_key_uuid"].(string)
	e.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: agentKeysRoute, Status: 503, Count: 100})
	_, err := e.agentLease(logical.RevokeOperation, resp.Secret)
	if err == nil || !strings.Contains(err.Error(), uuid) {
		t.Fatalf("revoke with the platform failing: want an error naming %s, got %v", uuid, err)
	}
	assertSecretNotIn(t, "the error", err.Error(), secret)
	if !strings.Contains(e.logs.String(), uuid) {
		t.Fatal("the log does not name the key")
	}
	assertSecretNotIn(t, "the plugin's log", e.logs.String(), secret)
	// The key is still live and still counted, so tidy spares it.
	if live, _ := countAgentLeases(context.Background(), e.storage, "team-a-bot"); live != 1 || e.callAgent(url, secret) != http.StatusOK {
		t.Fatalf("after a failed revoke: %d live", live)
	}
	// Vault's expiration manager retries: once the platform answers, done.
	e.emu.ClearFaults()
	e.revokeAgentLease(resp.Secret)
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("keys left: %+v", keys)
	}
}

func TestAgentCreds_RoleDeleteLeavesLeasesRevocable(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, nil)
	resp := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	e.mustOK(logical.DeleteOperation, "agent-roles/team-a-bot", nil)
	// Renewal needs the role; the lease stays revocable.
	if r, _ := e.agentLease(logical.RenewOperation, resp.Secret); r == nil || !r.IsError() || !strings.Contains(r.Error().Error(), "was deleted") {
		t.Fatalf("renew after role delete: %#v", r)
	}
	if status := e.mustOK(logical.ReadOperation, "status", nil).Data; status["agent_roles"] != 0 || status["agent_leased_keys"] != 1 {
		t.Fatalf("status: %v %v", status["agent_roles"], status["agent_leased_keys"])
	}
	e.revokeAgentLease(resp.Secret)
	if keys := e.agentKeysOn(agent); len(keys) != 0 || e.callAgent(url, resp.Data["api_key"].(string)) != http.StatusUnauthorized {
		t.Fatalf("keys left after revoking a deleted role's lease: %+v", keys)
	}
}

func TestAgentCreds_MaxLeases(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, map[string]any{"max_leases": 2})
	first := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	e.mustBadRequest(logical.ReadOperation, "agent-creds/team-a-bot", nil, "max_leases", "2 live leases")
	if keys := e.agentKeysOn(agent); len(keys) != 2 {
		t.Fatalf("keys = %d, want 2", len(keys))
	}
	// A revocation frees a slot.
	e.revokeAgentLease(first.Secret)
	e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	if keys := e.agentKeysOn(agent); len(keys) != 2 {
		t.Fatalf("keys = %d, want 2", len(keys))
	}
}

// The platform applies the create and the answer is lost: the read fails,
// the key it made is deleted at once, and the entry stays for a late
// landing, which the periodic rollback deletes too.
func TestAgentCreds_LostCreateAnswerLeavesNoKey(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: agentKeysRoute, Mode: "drop"})
	e.mustServerError(logical.ReadOperation, "agent-creds/team-a-bot", nil, "deleted again")
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("orphan left: %+v", keys)
	}
	if n := e.emu.Counts()["POST "+agentKeysRoute]; n != 1 {
		t.Fatalf("creates = %d: a create must not be re-sent blindly", n)
	}
	if live, _ := countAgentLeases(context.Background(), e.storage, "team-a-bot"); live != 0 {
		t.Fatalf("a lease record for a failed read: %d", live)
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("orphan left after rollback: %+v", keys)
	}
}

// The create lands late, after the client gave up and the immediate undo
// found nothing: the periodic rollback deletes it by its name.
func TestAgentCreds_LateCreateIsDeletedByTheRollback(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, map[string]any{})
	e.mustOK(logical.UpdateOperation, "config", map[string]any{"request_timeout": "1s"})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: agentKeysRoute, Mode: "late", Delay: 1500 * time.Millisecond})
	if resp, err := e.request(logical.ReadOperation, "agent-creds/team-a-bot", nil); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("a read whose create timed out succeeded: %#v", resp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.agentKeysOn(agent)) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.agentKeysOn(agent)) != 1 {
		t.Fatal("the late create never landed")
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("the late key survived the rollback: %+v", keys)
	}
}

// The lease record cannot be written after the create: the key is deleted
// at once, and the read fails.
func TestAgentCreds_LeaseRecordFailureDeletesTheKey(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	e.storage.failPutsUnder(agentLeasePrefix)
	e.mustServerError(logical.ReadOperation, "agent-creds/team-a-bot", nil, "deleted again")
	e.storage.failPutsUnder("")
	if keys := e.agentKeysOn(agent); len(keys) != 0 {
		t.Fatalf("orphan left: %+v", keys)
	}
	assertNoWAL(t, e)
}

// The node dies between the create and the lease: the entry is all that is
// left, with a key under its name on the platform. The periodic rollback
// deletes the key.
func TestAgentCreds_CrashBeforeTheLeaseLeavesNoKey(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	// A first issue chooses the mount's mark, as the crashed one would have.
	done := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	mark, _ := storedAgentMountID(context.Background(), e.storage)
	name := agentKeyName(mark, "team-a-bot")
	ctx := context.Background()
	if _, err := framework.PutWAL(ctx, e.storage, walKindAgentKey, &agentKeyWAL{
		walHeader: walHeader{Created: time.Now().UTC()}, Role: "team-a-bot", AgentUUID: agent, Name: name,
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.do.AgentPlatform.CreateAgentAPIKey(ctx, agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: name}); err != nil {
		t.Fatal(err)
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
	keys := e.agentKeysOn(agent)
	if len(keys) != 1 || keys[0].UUID != done.Data["api_key_uuid"] {
		t.Fatalf("after rollback: %+v (want only the leased key)", keys)
	}
}

func TestAgentCreds_TidyDeletesOnlyThisMountsUnleasedKeys(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, nil)
	leased := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	mark, _ := storedAgentMountID(context.Background(), e.storage)
	ctx := context.Background()
	make := func(name string) string {
		info, _, err := e.do.AgentPlatform.CreateAgentAPIKey(ctx, agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return info.Uuid
	}
	orphan := make(agentKeyName(mark, "team-a-bot"))
	foreign := []string{
		make("ci-pipeline"),                        // made in the control panel
		make("vault-0badc0de-team-a-bot-12345678"), // another mount's
		make("vault-" + mark + "-team-a-bot"),      // the mark without the random part
	}
	// A create in flight: its entry remains, so tidy leaves it to the rollback.
	inFlightName := agentKeyName(mark, "team-a-bot")
	if _, err := framework.PutWAL(ctx, e.storage, walKindAgentKey, &agentKeyWAL{
		walHeader: walHeader{Created: time.Now().UTC()}, Role: "team-a-bot", AgentUUID: agent, Name: inFlightName,
	}); err != nil {
		t.Fatal(err)
	}
	inFlight := make(inFlightName)

	resp := e.mustOK(logical.UpdateOperation, "agent-creds-tidy", nil)
	if deleted := resp.Data["deleted"].([]string); len(deleted) != 1 || deleted[0] != orphan || resp.Data["in_flight"] != 1 || resp.Data["agents_checked"] != 1 {
		t.Fatalf("tidy: %v", resp.Data)
	}
	left := map[string]bool{}
	for _, k := range e.agentKeysOn(agent) {
		left[k.UUID] = true
	}
	for _, uuid := range append(foreign, inFlight, leased.Data["api_key_uuid"].(string)) {
		if !left[uuid] {
			t.Errorf("tidy deleted %s", uuid)
		}
	}
	if left[orphan] {
		t.Error("tidy spared the orphan")
	}
	if e.callAgent(url, leased.Data["api_key"].(string)) != http.StatusOK {
		t.Error("the leased key stopped working")
	}
}

// A mount that never issued a key has no mark and nothing to tidy.
func TestAgentCreds_TidyOfAMountThatNeverIssued(t *testing.T) {
	e, agent, _ := newAgentEnv(t)
	if _, _, err := e.do.AgentPlatform.CreateAgentAPIKey(context.Background(), agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: "vault-0badc0de-x-12345678"}); err != nil {
		t.Fatal(err)
	}
	if deleted := e.mustOK(logical.UpdateOperation, "agent-creds-tidy", nil).Data["deleted"].([]string); len(deleted) != 0 {
		t.Fatalf("deleted %v", deleted)
	}
}

func TestAgentKeyName_KeepsTheNameRule(t *testing.T) {
	for _, role := range []string{"r", "team-a-bot", strings.Repeat("a", 64), strings.Repeat("a", 39) + ".b"} {
		name := agentKeyName("0123abcd", role)
		if err := validateName(name); err != nil || !isMountAgentKey("0123abcd", name) || isMountAgentKey("0123abce", name) {
			t.Errorf("role %q: name %q: %v", role, name, err)
		}
	}
}

// The periodic sync tidies too, on the active node only.
func TestAgentCreds_PeriodicSyncTidies(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"sync_interval": "1h"})
	a := r.createAgent("support-bot", "", "")
	r.mustOK(logical.CreateOperation, "agent-roles/team-a-bot", map[string]any{"agent_uuid": a.Uuid})
	leased := r.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	mark, _ := storedAgentMountID(context.Background(), r.storage)
	info, _, err := r.do.AgentPlatform.CreateAgentAPIKey(context.Background(), a.Uuid, &godo.AgentAPIKeyCreateRequest{AgentUuid: a.Uuid, Name: agentKeyName(mark, "team-a-bot")})
	if err != nil {
		t.Fatal(err)
	}
	r.sys.standby.Store(true)
	r.advance(2 * time.Hour)
	r.syncTick()
	if len(r.agentKeysOn(a.Uuid)) != 2 {
		t.Fatal("a standby tidied")
	}
	r.sys.standby.Store(false)
	r.syncTick()
	keys := r.agentKeysOn(a.Uuid)
	if len(keys) != 1 || keys[0].UUID != leased.Data["api_key_uuid"] || keys[0].UUID == info.Uuid {
		t.Fatalf("after the periodic sync: %+v", keys)
	}
}

// A create the platform refuses made nothing: the caller's 400 with the
// platform's message, no key, no entry left. An agent deleted since the
// role was written is a 400 that says what to do.
func TestAgentCreds_RefusedCreateLeavesNothing(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: agentKeysRoute, Status: 422})
	e.mustBadRequest(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	assertNoWAL(t, e)
	if _, _, err := e.do.AgentPlatform.DeleteAgent(context.Background(), agent); err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.ReadOperation, "agent-creds/team-a-bot", nil, "no longer exists", "agent-roles/team-a-bot")
	assertNoWAL(t, e)
	if keys := e.emu.AgentAPIKeys(); len(keys) != 0 {
		t.Fatalf("keys made: %+v", keys)
	}
}

// Concurrent reads never pass max_leases: the count and the create are one
// step under the role's lock.
func TestAgentCreds_MaxLeasesHoldsUnderConcurrentReads(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, map[string]any{"max_leases": 3})
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.send(logical.ReadOperation, "agent-creds/team-a-bot", nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && resp != nil && !resp.IsError():
				ok++
			case err == nil && resp != nil && strings.Contains(resp.Error().Error(), "max_leases"):
				refused++
			}
		}()
	}
	wg.Wait()
	if ok != 3 || refused != 7 || len(e.agentKeysOn(agent)) != 3 {
		t.Fatalf("%d issued, %d refused, %d keys; want 3, 7, 3", ok, refused, len(e.agentKeysOn(agent)))
	}
}

// A lease Vault no longer holds (revoked with -force, or given up as
// irrevocable) leaves its record; once the record is past its lease's
// longest life, tidy deletes the key and the record. A current one stays.
func TestAgentCreds_TidyEndsRecordsPastTheirLeasesLife(t *testing.T) {
	e, agent, url := newAgentRoleEnv(t, map[string]any{"ttl": "1h", "max_ttl": "2h"})
	old := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	current := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	ctx := context.Background()
	l, err := getAgentLease(ctx, e.storage, "team-a-bot", old.Data["api_key_uuid"].(string))
	if err != nil || l == nil || !l.ExpiresBy.Equal(l.IssuedAt.Add(2*time.Hour)) {
		t.Fatalf("lease record: %+v %v", l, err)
	}
	l.IssuedAt, l.ExpiresBy = l.IssuedAt.Add(-4*time.Hour), l.ExpiresBy.Add(-4*time.Hour)
	if err := putAgentLease(ctx, e.storage, l); err != nil {
		t.Fatal(err)
	}
	resp := e.mustOK(logical.UpdateOperation, "agent-creds-tidy", nil)
	if deleted := resp.Data["deleted"].([]string); len(deleted) != 1 || deleted[0] != l.KeyUUID {
		t.Fatalf("tidy: %v", resp.Data)
	}
	keys := e.agentKeysOn(agent)
	if len(keys) != 1 || keys[0].UUID != current.Data["api_key_uuid"] || e.callAgent(url, current.Data["api_key"].(string)) != http.StatusOK {
		t.Fatalf("after tidy: %+v", keys)
	}
	if live, _ := countAgentLeases(ctx, e.storage, "team-a-bot"); live != 1 {
		t.Fatalf("records left: %d, want 1", live)
	}
}
