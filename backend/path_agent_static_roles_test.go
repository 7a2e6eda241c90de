package backend

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

const (
	regeneratePath = "/v2/gen-ai/agents/{agent_uuid}/api_keys/{api_key_uuid}/regenerate"
	agentKeysPath  = "/v2/gen-ai/agents/{agent_uuid}/api_keys"
	unknownUUID    = "0b0b0b0b-1111-4222-8333-444455556666"
)

// staticAgent makes an agent on the platform, as someone in the control
// panel would, and returns its uuid.
func (e *testEnv) staticAgent(name string) string {
	e.t.Helper()
	return e.createAgent(name, "anthropic", "").Uuid
}

// agentEndpointStatus is what the agent's endpoint answers to secret: 200
// for a live secret of one of its keys, 401 otherwise.
func (e *testEnv) agentEndpointStatus(agentURL, secret string) int {
	e.t.Helper()
	url, ok := emulator.AgentEndpointURL(e.srv.URL, agentURL)
	if !ok {
		e.t.Fatalf("%q is not an agent endpoint url", agentURL)
	}
	req, err := http.NewRequest(http.MethodPost, url+"/api/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// staticCreds reads agent-static-creds/<name>.
func (e *testEnv) staticCreds(name string) *logical.Response {
	e.t.Helper()
	resp := e.mustOK(logical.ReadOperation, "agent-static-creds/"+name, nil)
	if resp.Secret == nil {
		e.t.Fatalf("agent-static-creds/%s answered without a lease", name)
	}
	return resp
}

// assertStaticSecretLive checks that the stored secret of role name works
// at its agent's endpoint.
func (e *testEnv) assertStaticSecretLive(name string) string {
	e.t.Helper()
	r, err := getAgentStatic(context.Background(), e.storage, name)
	if err != nil || r == nil {
		e.t.Fatalf("static role %q: %v, %v", name, r, err)
	}
	if got := e.agentEndpointStatus(r.AgentURL, r.Secret); got != http.StatusOK {
		e.t.Fatalf("the stored secret of %q answers %d at its agent, want 200", name, got)
	}
	return r.Secret
}

func (e *testEnv) regenerates() int {
	n := 0
	for route, c := range e.emu.Counts() {
		if strings.HasSuffix(route, "/regenerate") {
			n += c
		}
	}
	return n
}

func (e *testEnv) agentKeysOnPlatform() []emulator.AgentAPIKeyState { return e.emu.AgentAPIKeys() }

func (e *testEnv) assertNothingStatic() {
	e.t.Helper()
	if keys := e.agentKeysOnPlatform(); len(keys) != 0 {
		e.t.Errorf("agent API keys left on the platform: %+v", keys)
	}
	if names, _ := e.storage.List(context.Background(), agentStaticStoragePrefix); len(names) != 0 {
		e.t.Errorf("static roles stored: %v", names)
	}
}

// A role that names no valid agent, or a bad name, is a 400 that stores
// nothing and leaves no key on the platform.
func TestAgentStatic_WriteValidation(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("valid")
	for name, tc := range map[string]struct {
		path string
		data map[string]any
		want string
	}{
		"bad name":          {"agent-static-roles/Bad_Name", map[string]any{"agent_uuid": agent}, "invalid key name"},
		"slash in name":     {"agent-static-roles/a/b", map[string]any{"agent_uuid": agent}, "invalid key name"},
		"no agent":          {"agent-static-roles/no-agent", map[string]any{}, "agent_uuid is required"},
		"malformed agent":   {"agent-static-roles/bad-agent", map[string]any{"agent_uuid": "not-a-uuid"}, "agent_uuid is not an agent uuid"},
		"unknown agent":     {"agent-static-roles/unknown", map[string]any{"agent_uuid": unknownUUID}, "there is no agent"},
		"malformed key":     {"agent-static-roles/bad-key", map[string]any{"agent_uuid": agent, "api_key_uuid": "xyz"}, "api_key_uuid is not"},
		"unknown key":       {"agent-static-roles/unknown-key", map[string]any{"agent_uuid": agent, "api_key_uuid": unknownUUID}, "has no API key"},
		"short period":      {"agent-static-roles/short", map[string]any{"agent_uuid": agent, "rotation_period": "10s"}, "rotation_period must be at least"},
		"period and cron":   {"agent-static-roles/both", map[string]any{"agent_uuid": agent, "rotation_period": "1h", "rotation_schedule": "0 3 * * *"}, "rotation"},
		"unknown field":     {"agent-static-roles/typo", map[string]any{"agent_uuid": agent, "rotation_perod": "1h"}, "unknown field"},
		"next_api_key here": {"agent-static-roles/staged", map[string]any{"agent_uuid": agent, "next_api_key": "x"}, "unknown field"},
	} {
		t.Run(name, func(t *testing.T) {
			e.mustBadRequest(logical.CreateOperation, tc.path, tc.data, tc.want)
			e.assertNothingStatic()
			assertNoWAL(t, e)
		})
	}
}

// Create: the key exists on the platform under a recognisable name and its
// secret works; the role's read shows no secret; the creds carry every
// field, under a lease that ends by the next rotation.
func TestAgentStatic_CreateReadCreds(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("support")
	role := e.mustOK(logical.CreateOperation, "agent-static-roles/team-a-support", map[string]any{
		"agent_uuid": strings.ToUpper(agent), "rotation_period": "1h",
	}).Data
	keys := e.agentKeysOnPlatform()
	if len(keys) != 1 || !strings.HasPrefix(keys[0].Name, "vault-static-team-a-support.") || keys[0].AgentUUID != agent {
		t.Fatalf("platform keys = %+v, want one vault-static-team-a-support.<hex> on the agent", keys)
	}
	if role["api_key_uuid"] != keys[0].UUID || role["agent_uuid"] != agent || role["agent_name"] != "support" || role["version"] != 1 {
		t.Errorf("role = %v", role)
	}
	if url, _ := role["agent_url"].(string); !strings.HasSuffix(url, ".agents.do-ai.run") {
		t.Errorf("agent_url = %q", url)
	}

	read := e.mustOK(logical.ReadOperation, "agent-static-roles/team-a-support", nil).Data
	if read["rotation_period"] != int64(3600) || read["rotation_status"] != rotationOK || read["next_vault_rotation"] == nil {
		t.Errorf("read = %v", read)
	}
	creds := e.staticCreds("team-a-support")
	secret, _ := creds.Data["api_key"].(string)
	for _, v := range read {
		if s, ok := v.(string); ok && secret != "" && strings.Contains(s, secret) {
			t.Fatalf("the role's read shows the secret")
		}
	}
	if got := e.agentEndpointStatus(creds.Data["agent_url"].(string), secret); got != http.StatusOK {
		t.Fatalf("the creds' secret answers %d, want 200", got)
	}
	for _, f := range []string{"api_key_uuid", "agent_uuid", "agent_url", "last_vault_rotation", "next_vault_rotation", "ttl"} {
		if creds.Data[f] == nil {
			t.Errorf("creds lack %s: %v", f, creds.Data)
		}
	}
	if ttl := creds.Secret.TTL; ttl <= 0 || ttl > time.Hour {
		t.Errorf("lease ttl = %s, want within the rotation period", ttl)
	}
	if list := e.mustOK(logical.ListOperation, "agent-static-roles/", nil).Data["keys"].([]string); len(list) != 1 || list[0] != "team-a-support" {
		t.Errorf("list = %v", list)
	}
	if n := e.mustOK(logical.ReadOperation, "status", nil).Data["agent_static_keys"]; n != 1 {
		t.Errorf("status agent_static_keys = %v, want 1", n)
	}
	// A later write changes the settings only; the agent cannot change.
	e.mustOK(logical.UpdateOperation, "agent-static-roles/team-a-support", map[string]any{"rotation_period": "2h"})
	e.mustBadRequest(logical.UpdateOperation, "agent-static-roles/team-a-support", map[string]any{"agent_uuid": unknownUUID}, "agent_uuid cannot change")
	if n := len(e.agentKeysOnPlatform()); n != 1 {
		t.Errorf("an update made keys: %d", n)
	}
	assertNoWAL(t, e)
}

// A static role and a key of the same name live side by side.
func TestAgentStatic_SameNameAsAKey(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/shared", map[string]any{"provider": "anthropic", "api_key": anthropicKey("shared")})
	e.mustOK(logical.CreateOperation, "agent-static-roles/shared", map[string]any{"agent_uuid": e.staticAgent("a")})
	e.mustOK(logical.ReadOperation, "keys/shared", nil)
	e.mustOK(logical.ReadOperation, "agent-static-roles/shared", nil)
	e.mustOK(logical.UpdateOperation, "agent-static-roles/shared/rotate", nil)
	if v := e.mustOK(logical.ReadOperation, "keys/shared", nil).Data["version"]; v != 1 {
		t.Errorf("rotating the role rotated the key: version %v", v)
	}
}

// The scheduler regenerates a due role once: the old secret stops working,
// the new one works, the version goes up, the old lease's renewal is
// refused with a message saying to read again; a restart (failover) does
// not rotate it again.
func TestAgentStatic_ScheduledRotation(t *testing.T) {
	r := newRotationEnv(t, nil)
	agent := r.staticAgent("sched")
	r.mustOK(logical.CreateOperation, "agent-static-roles/sched", map[string]any{"agent_uuid": agent, "rotation_period": "1h"})
	before := r.staticCreds("sched")
	oldSecret := before.Data["api_key"].(string)
	uuid := before.Data["api_key_uuid"]

	r.tickAt(t0.Add(59 * time.Minute))
	if n := r.regenerates(); n != 0 {
		t.Fatalf("regenerated before due: %d", n)
	}
	r.tickAt(t0.Add(time.Hour))
	if n := r.regenerates(); n != 1 {
		t.Fatalf("regenerates = %d, want 1", n)
	}
	after := r.staticCreds("sched")
	newSecret := after.Data["api_key"].(string)
	url := after.Data["agent_url"].(string)
	if after.Data["version"] != 2 || after.Data["api_key_uuid"] != uuid || newSecret == oldSecret {
		t.Fatalf("after rotation: %v (uuid before %v)", after.Data["version"], uuid)
	}
	if got := r.agentEndpointStatus(url, oldSecret); got != http.StatusUnauthorized {
		t.Errorf("old secret answers %d, want 401", got)
	}
	if got := r.agentEndpointStatus(url, newSecret); got != http.StatusOK {
		t.Errorf("new secret answers %d, want 200", got)
	}
	if next := after.Data["next_vault_rotation"]; next != t0.Add(2*time.Hour).Format(time.RFC3339) {
		t.Errorf("next_vault_rotation = %v", next)
	}

	msg := r.renewStatic(before.Secret)
	if !strings.Contains(msg, "was rotated") || !strings.Contains(msg, "read gradient/agent-static-creds/sched again") {
		t.Errorf("renewal of the old lease: %q", msg)
	}
	if msg := r.renewStatic(after.Secret); msg != "" {
		t.Errorf("renewal of the current lease refused: %q", msg)
	}

	r.restart()
	r.tickAt(t0.Add(time.Hour + time.Minute))
	if n := r.regenerates(); n != 1 {
		t.Errorf("after a restart the role was rotated again: %d regenerates", n)
	}
	r.tickAt(t0.Add(2 * time.Hour))
	if n := r.regenerates(); n != 2 {
		t.Errorf("the next period's rotation: %d regenerates, want 2", n)
	}
	r.assertStaticSecretLive("sched")
}

// renewStatic renews a lease of agent-static-creds as Vault does, and
// returns the refusal's text ("" when renewed).
func (e *testEnv) renewStatic(secret *logical.Secret) string {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RenewOperation, Path: "agent-static-creds/x", Storage: e.storage,
		MountPoint: "gradient/", Secret: secret,
	})
	if err != nil {
		return err.Error()
	}
	if resp != nil && resp.IsError() {
		return resp.Error().Error()
	}
	return ""
}

// rotate now regenerates at once, same uuid, next version.
func TestAgentStatic_RotateNow(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "agent-static-roles/now", map[string]any{"agent_uuid": e.staticAgent("now")})
	old := e.staticCreds("now").Data
	got := e.mustOK(logical.UpdateOperation, "agent-static-roles/now/rotate", nil).Data
	if got["version"] != 2 || got["api_key_uuid"] != old["api_key_uuid"] {
		t.Fatalf("rotate answered %v", got)
	}
	if s := e.agentEndpointStatus(old["agent_url"].(string), old["api_key"].(string)); s != http.StatusUnauthorized {
		t.Errorf("old secret answers %d", s)
	}
	e.assertStaticSecretLive("now")
	e.mustNotFound(logical.UpdateOperation, "agent-static-roles/missing/rotate")
	assertNoWAL(t, e)
}

func (e *testEnv) mustNotFound(op logical.Operation, path string) {
	e.t.Helper()
	resp, err := e.request(op, path, nil)
	if err == nil || !strings.Contains(err.Error(), "no static role") {
		e.t.Fatalf("%s %s: want a 404, got %v %v", op, path, resp, err)
	}
}

// Adoption regenerates the key, so Vault holds its only secret; a second
// role cannot adopt it; deleting the role deletes it.
func TestAgentStatic_Adopt(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("adopt")
	made, _, err := e.do.AgentPlatform.CreateAgentAPIKey(context.Background(), agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	role := e.mustOK(logical.CreateOperation, "agent-static-roles/adopted", map[string]any{"agent_uuid": agent, "api_key_uuid": made.Uuid}).Data
	if role["adopted"] != true || role["api_key_uuid"] != made.Uuid || role["api_key_name"] != "legacy" {
		t.Fatalf("role = %v", role)
	}
	url := role["agent_url"].(string)
	if got := e.agentEndpointStatus(url, made.SecretKey); got != http.StatusUnauthorized {
		t.Errorf("the secret from before the adoption answers %d, want 401", got)
	}
	e.assertStaticSecretLive("adopted")
	if n := len(e.agentKeysOnPlatform()); n != 1 {
		t.Errorf("adoption made keys: %d", n)
	}
	e.mustBadRequest(logical.CreateOperation, "agent-static-roles/twice", map[string]any{"agent_uuid": agent, "api_key_uuid": made.Uuid}, `already managed by static role "adopted"`)

	e.mustOK(logical.DeleteOperation, "agent-static-roles/adopted", nil)
	e.assertNothingStatic()
	assertNoWAL(t, e)
}

// Delete deletes the platform key; a key already gone counts as deleted;
// a refused delete keeps the role.
func TestAgentStatic_Delete(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("del")
	e.mustOK(logical.CreateOperation, "agent-static-roles/del", map[string]any{"agent_uuid": agent})
	e.mustOK(logical.CreateOperation, "agent-static-roles/gone", map[string]any{"agent_uuid": agent})

	e.emu.InjectFault(emulator.Fault{Method: http.MethodDelete, Path: agentKeysPath, Status: http.StatusForbidden})
	e.mustBadRequest(logical.DeleteOperation, "agent-static-roles/del", nil, "was not deleted, so Vault keeps the role")
	e.assertStaticSecretLive("del")

	e.mustOK(logical.DeleteOperation, "agent-static-roles/del", nil)
	gone := e.staticCreds("gone").Data["api_key_uuid"].(string)
	if _, _, err := e.do.AgentPlatform.DeleteAgentAPIKey(context.Background(), agent, gone); err != nil {
		t.Fatal(err)
	}
	e.mustOK(logical.DeleteOperation, "agent-static-roles/gone", nil)
	e.mustOK(logical.DeleteOperation, "agent-static-roles/gone", nil) // nothing there: done
	e.assertNothingStatic()
	assertNoWAL(t, e)
}

// A create whose answer is lost (the platform made the key, the connection
// dropped) or that fails after the platform call (the role's write) leaves
// no key behind; the entry kept for a late landing settles on rollback.
func TestAgentStatic_FailedCreateLeavesNoKey(t *testing.T) {
	for name, setup := range map[string]func(e *testEnv){
		"lost answer": func(e *testEnv) {
			e.emu.InjectFault(emulator.Fault{Method: http.MethodPost, Path: agentKeysPath, Mode: "drop"})
		},
		"5xx": func(e *testEnv) {
			e.emu.InjectFault(emulator.Fault{Method: http.MethodPost, Path: agentKeysPath, Status: http.StatusInternalServerError})
		},
		"storage write": func(e *testEnv) { e.storage.failPutsUnder(agentStaticStoragePrefix) },
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			agent := e.staticAgent("lost")
			setup(e)
			e.mustServerError(logical.CreateOperation, "agent-static-roles/lost", map[string]any{"agent_uuid": agent})
			e.storage.failPutsUnder("")
			e.assertNothingStatic()
			rollbackNow(t, e)
			e.assertNothingStatic()
			assertNoWAL(t, e)
		})
	}
}

// The plugin dies after the platform created the key and before the role
// was stored: the entry written before the create lets Vault's periodic
// rollback, on a new process, delete the key.
func TestAgentStatic_CrashAfterCreateLeavesNoKey(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("crash")
	c := &crashAt{
		at: func(key string, _ map[string]int) (bool, bool) {
			return strings.HasPrefix(key, agentStaticStoragePrefix), false
		},
		seen: map[string]int{}, crashed: make(chan *faultyStorage, 1), release: make(chan struct{}),
	}
	e.storage.onPut(c.hook(e.storage.Storage))
	done := make(chan error, 1)
	go func() {
		_, err := e.send(logical.CreateOperation, "agent-static-roles/crashed", map[string]any{"agent_uuid": agent})
		done <- err
	}()
	var left *faultyStorage
	select {
	case left = <-c.crashed:
	case err := <-done:
		t.Fatalf("setup: the create never reached the store (%v)", err)
	}
	if n := len(e.agentKeysOnPlatform()); n != 1 {
		t.Fatalf("setup: want the create's key on the platform, have %d", n)
	}
	after := e.restartedOn(left)
	if n := walCount(t, after); n != 1 {
		t.Fatalf("setup: want the create's entry in storage, have %d", n)
	}
	rollbackNow(t, after)
	after.assertNothingStatic()
	assertNoWAL(t, after)
	close(c.release)
	<-done
}

// A regenerate whose answer is lost may have killed the stored secret. The
// key is regenerated again at once (Vault then holds a live secret, the
// rotation counts as done) and, once more, by the periodic rollback, in
// case the lost regenerate landed after its repair.
func TestAgentStatic_LostRegenerateIsRepaired(t *testing.T) {
	for name, mode := range map[string]string{"dropped after applying": "drop", "5xx": "status"} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			e.mustOK(logical.CreateOperation, "agent-static-roles/lost", map[string]any{"agent_uuid": e.staticAgent("lost")})
			old := e.staticCreds("lost").Data
			e.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: regeneratePath, Mode: mode})
			got := e.mustOK(logical.UpdateOperation, "agent-static-roles/lost/rotate", nil).Data
			if got["version"] != 2 {
				t.Errorf("version after the repaired rotation = %v, want 2", got["version"])
			}
			if s := e.agentEndpointStatus(old["agent_url"].(string), old["api_key"].(string)); s != http.StatusUnauthorized {
				t.Errorf("the secret before the rotation answers %d", s)
			}
			e.assertStaticSecretLive("lost")
			if n := walCount(t, e); n != 1 {
				t.Fatalf("want the entry kept for the periodic rollback, have %d", n)
			}
			rollbackNow(t, e)
			e.assertStaticSecretLive("lost")
			if v := e.staticCreds("lost").Data["version"]; v != 3 {
				t.Errorf("version after the rollback = %v, want 3", v)
			}
			assertNoWAL(t, e)
			// A settled entry does nothing more.
			rollbackNow(t, e)
			if v := e.staticCreds("lost").Data["version"]; v != 3 {
				t.Errorf("a second rollback regenerated again: version %v", v)
			}
		})
	}
}

// A crash after the regenerate and before the store leaves the entry; the
// periodic rollback regenerates again and stores a live secret.
func TestAgentStatic_RegenerateStoreFailureIsRepairedByRollback(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "agent-static-roles/store", map[string]any{"agent_uuid": e.staticAgent("store")})
	e.storage.failPutsUnder(agentStaticStoragePrefix)
	e.mustServerError(logical.UpdateOperation, "agent-static-roles/store/rotate", nil)
	e.storage.failPutsUnder("")
	if n := walCount(t, e); n != 1 {
		t.Fatalf("want the entry kept, have %d", n)
	}
	rollbackNow(t, e)
	e.assertStaticSecretLive("store")
	assertNoWAL(t, e)
}

// A scheduled rotation that fails (and whose repair fails too) is recorded
// and retried with backoff; a key deleted on the platform is not retried
// within the period.
func TestAgentStatic_ScheduledFailureIsRecorded(t *testing.T) {
	r := newRotationEnv(t, nil)
	agent := r.staticAgent("fail")
	r.mustOK(logical.CreateOperation, "agent-static-roles/fail", map[string]any{"agent_uuid": agent, "rotation_period": "1h"})
	r.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: regeneratePath, Status: http.StatusServiceUnavailable, Count: 2})
	r.tickAt(t0.Add(time.Hour))
	read := r.mustOK(logical.ReadOperation, "agent-static-roles/fail", nil).Data
	if read["rotation_status"] != rotationFailed || !strings.Contains(read["rotation_error"].(string), "attempt 1") {
		t.Fatalf("after a failed attempt: %v", read)
	}
	r.tickAt(t0.Add(time.Hour + firstRetryDelay))
	read = r.mustOK(logical.ReadOperation, "agent-static-roles/fail", nil).Data
	if read["version"] != 2 || read["rotation_status"] != rotationOK {
		t.Fatalf("after the retry: %v", read)
	}
	r.assertStaticSecretLive("fail")

	uuid := read["api_key_uuid"].(string)
	if _, _, err := r.do.AgentPlatform.DeleteAgentAPIKey(context.Background(), agent, uuid); err != nil {
		t.Fatal(err)
	}
	r.tickAt(t0.Add(2*time.Hour + firstRetryDelay))
	read = r.mustOK(logical.ReadOperation, "agent-static-roles/fail", nil).Data
	if !strings.Contains(read["rotation_error"].(string), "gone from the platform") {
		t.Fatalf("after the key was deleted: %v", read["rotation_error"])
	}
	n := r.regenerates()
	r.tickAt(t0.Add(2*time.Hour + 10*firstRetryDelay))
	if r.regenerates() != n {
		t.Errorf("a deleted key was retried within the period")
	}
}

// Only the active node rotates: a standby's tick makes no platform call.
func TestAgentStatic_StandbyTickMakesNoPlatformCall(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.mustOK(logical.CreateOperation, "agent-static-roles/standby", map[string]any{"agent_uuid": r.staticAgent("standby"), "rotation_period": "1h"})
	r.sys.standby.Store(true)
	calls := r.platformCalls()
	r.tickAt(t0.Add(2 * time.Hour))
	if got := r.platformCalls(); got != calls {
		t.Fatalf("a standby tick called the platform: %d calls before, %d after", calls, got)
	}
	r.sys.standby.Store(false)
	r.tick()
	if n := r.regenerates(); n != 1 {
		t.Fatalf("the active node's tick: %d regenerates, want 1", n)
	}
}

// Static keys live beside the dynamic ones: the tidy of agent-creds/ never
// deletes a static role's key, and a key made for a lease cannot be adopted.
func TestAgentStatic_BesideDynamicKeys(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("both")
	e.mustOK(logical.CreateOperation, "agent-static-roles/both", map[string]any{"agent_uuid": agent})
	e.mustOK(logical.CreateOperation, "agent-roles/both", map[string]any{"agent_uuid": agent})
	leased := e.mustOK(logical.ReadOperation, "agent-creds/both", nil).Data["api_key_uuid"].(string)

	e.mustBadRequest(logical.CreateOperation, "agent-static-roles/taken", map[string]any{"agent_uuid": agent, "api_key_uuid": leased}, "made by a Vault mount for its own role or lease")
	e.mustOK(logical.UpdateOperation, "agent-creds-tidy", nil)
	e.assertStaticSecretLive("both")
	if n := len(e.agentKeysOnPlatform()); n != 2 {
		t.Errorf("agent keys after tidy: %d, want the static and the leased one", n)
	}
}

// secondMount is another mount of the plugin on the same platform and
// token (another path, another namespace, or a restored copy).
func (e *testEnv) secondMount() *testEnv {
	e.t.Helper()
	o := newUnconfiguredEnv(e.t, e.emu, e.srv)
	o.mustOK(logical.UpdateOperation, "config", map[string]any{
		"rate_limit_per_minute": unlimited["rate_limit_per_minute"],
		"rate_limit_per_hour":   unlimited["rate_limit_per_hour"],
		"token":                 testToken,
		"api_url":               e.srv.URL,
		"anthropic_url":         e.srv.URL + "/anthropic",
		"openai_url":            e.srv.URL + "/openai",
	})
	return o
}

// mustRefuseAdoption writes a role adopting keyUUID on e and wants a 400
// that says why, with nothing stored and no regenerate.
func (e *testEnv) mustRefuseAdoption(role, agent, keyUUID string) {
	e.t.Helper()
	before := e.regenerates()
	e.mustBadRequest(logical.CreateOperation, "agent-static-roles/"+role, map[string]any{"agent_uuid": agent, "api_key_uuid": keyUUID},
		"made by a Vault mount for its own role or lease; adopting it would let two owners regenerate or delete it", "nothing was changed")
	if r, _ := getAgentStatic(context.Background(), e.storage, role); r != nil {
		e.t.Errorf("role %q stored after a refusal", role)
	}
	if e.regenerates() != before {
		e.t.Errorf("the refused adoption regenerated key %s", keyUUID)
	}
}

// A key a live agent-creds/ lease holds is never adopted, after the
// mount's mark changed too (agent-creds-tidy new_mark=true): the lease's
// revocation would delete the key under the role.
func TestAgentStatic_AdoptRefusesAKeyLeasedUnderThePreviousMark(t *testing.T) {
	e, agent, agentURL := newAgentRoleEnv(t, nil)
	lease := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	leased := lease.Data["api_key_uuid"].(string)
	e.mustOK(logical.UpdateOperation, "agent-creds-tidy", map[string]any{"new_mark": true})

	e.mustRefuseAdoption("taken", agent, leased)
	if got := e.callAgent(agentURL, lease.Data["api_key"].(string)); got != http.StatusOK {
		t.Errorf("the lease's secret answers %d after the refused adoption", got)
	}
}

// The lease record refuses what the name alone would not: a leased key
// renamed on the platform since its issue.
func TestAgentStatic_AdoptRefusesALeasedKeyRenamedOnThePlatform(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	leased := e.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil).Data["api_key_uuid"].(string)
	if _, _, err := e.do.AgentPlatform.UpdateAgentAPIKey(context.Background(), agent, leased, &godo.AgentAPIKeyUpdateRequest{AgentUuid: agent, APIKeyUuid: leased, Name: "renamed-by-hand"}); err != nil {
		t.Fatal(err)
	}
	e.mustRefuseAdoption("taken", agent, leased)
}

// A key whose agent-creds/ create is still in flight (its write-ahead log
// entry remains) is refused: the issue's lease record or its undo comes
// next.
func TestAgentStatic_AdoptRefusesAKeyOfAnIssueInFlight(t *testing.T) {
	e, agent, _ := newAgentRoleEnv(t, nil)
	ctx := context.Background()
	k, _, err := e.do.AgentPlatform.CreateAgentAPIKey(ctx, agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: "issue-in-flight"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := framework.PutWAL(ctx, e.storage, walKindAgentKey, &agentKeyWAL{
		walHeader: walHeader{Created: time.Now()}, Role: "team-a-bot", AgentUUID: agent, Name: "issue-in-flight",
	}); err != nil {
		t.Fatal(err)
	}
	e.mustRefuseAdoption("taken", agent, k.Uuid)
}

// Another mount's static key: both mounts would rotate one key, and each
// rotation kill the secret the other serves.
func TestAgentStatic_AdoptRefusesAnotherMountsStaticKey(t *testing.T) {
	a := newTestEnv(t, nil)
	agent := a.staticAgent("shared")
	key := a.mustOK(logical.CreateOperation, "agent-static-roles/team-a-svc", map[string]any{"agent_uuid": agent}).Data["api_key_uuid"].(string)

	b := a.secondMount()
	b.mustRefuseAdoption("team-b-svc", agent, key)
	a.assertStaticSecretLive("team-a-svc")
}

// Another mount's leased key: its lease's end would delete it under the
// adopter's feet.
func TestAgentStatic_AdoptRefusesAnotherMountsLeasedKey(t *testing.T) {
	a, agent, agentURL := newAgentRoleEnv(t, nil)
	lease := a.mustOK(logical.ReadOperation, "agent-creds/team-a-bot", nil)
	leased := lease.Data["api_key_uuid"].(string)

	b := a.secondMount()
	b.mustRefuseAdoption("stolen", agent, leased)
	if got := a.callAgent(agentURL, lease.Data["api_key"].(string)); got != http.StatusOK {
		t.Errorf("mount A's lease secret answers %d after B's refused adoption", got)
	}
}

// adoptingAgentKeys runs adopt once, right after the first create of a key
// answers and before the create's role is stored: the moment an adoption
// of the new uuid could slip in.
type adoptingAgentKeys struct {
	platform.AgentKeys
	once  sync.Once
	adopt func(created platform.AgentKey)
}

func (a *adoptingAgentKeys) CreateAgentKey(ctx context.Context, agentUUID, name string) (platform.AgentKey, error) {
	k, err := a.AgentKeys.CreateAgentKey(ctx, agentUUID, name)
	if err == nil {
		a.once.Do(func() { a.adopt(k) })
	}
	return k, err
}

// A create and an adoption of its new key never both store the key. The
// new key's name turns adoption away; should the key be renamed on the
// platform between the create and the store, the create's store, under
// the new uuid's lock, sees the adopter and gives up, and its undo leaves
// the adopter's key alone.
func TestAgentStatic_CreateAndAnAdoptionOfItsNewKeyNeverBothHoldIt(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("raced")
	ctx := context.Background()
	c, err := e.b.clients(ctx, e.storage)
	if err != nil {
		t.Fatal(err)
	}
	var refusedByName, adopted bool
	c.agentKeys = &adoptingAgentKeys{AgentKeys: c.agentKeys, adopt: func(k platform.AgentKey) {
		resp, err := e.send(logical.CreateOperation, "agent-static-roles/adopter", map[string]any{"agent_uuid": agent, "api_key_uuid": k.UUID})
		_, failed := answerError(resp, err)
		refusedByName = failed
		// As if an operator renamed it in the control panel meanwhile.
		if _, _, err := e.do.AgentPlatform.UpdateAgentAPIKey(ctx, agent, k.UUID, &godo.AgentAPIKeyUpdateRequest{AgentUuid: agent, APIKeyUuid: k.UUID, Name: "renamed-by-hand"}); err != nil {
			t.Error(err)
		}
		resp, err = e.send(logical.CreateOperation, "agent-static-roles/adopter", map[string]any{"agent_uuid": agent, "api_key_uuid": k.UUID})
		_, failed = answerError(resp, err)
		adopted = !failed
	}}
	resp, err := e.request(logical.CreateOperation, "agent-static-roles/creator", map[string]any{"agent_uuid": agent})
	_, createFailed := answerError(resp, err)
	if !refusedByName {
		t.Errorf("the new key was adopted under its vault-static- name")
	}
	if !adopted || !createFailed {
		t.Fatalf("adopted after the rename: %v; create failed: %v (want both)", adopted, createFailed)
	}
	if r, _ := getAgentStatic(ctx, e.storage, "creator"); r != nil {
		t.Errorf("the create stored a role holding the adopted key")
	}
	e.assertStaticSecretLive("adopter")
	rollbackNow(t, e)
	e.assertStaticSecretLive("adopter")
	e.assertStaticInvariant()
}

// A rewrite refreshes agent_name and agent_url from the agent's GET, as
// agent-roles/ does: a role made while its agent was not deployed, or
// before a redeploy, no longer hands consumers a stale url, and the only
// way to refresh them is not a delete that kills the key every holder uses.
func TestAgentStatic_RewriteRefreshesTheAgentURL(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("moved")
	e.mustOK(logical.CreateOperation, "agent-static-roles/moved", map[string]any{"agent_uuid": agent})
	ctx := context.Background()
	r, _ := getAgentStatic(ctx, e.storage, "moved")
	want := r.AgentURL
	// As if the role had been written while the agent was not deployed.
	r.AgentURL, r.AgentName = "", "old-name"
	if err := putAgentStatic(ctx, e.storage, r); err != nil {
		t.Fatal(err)
	}
	got := e.mustOK(logical.UpdateOperation, "agent-static-roles/moved", map[string]any{"rotation_period": "24h"}).Data
	if got["agent_url"] != want || got["agent_name"] != "moved" {
		t.Fatalf("after a rewrite: agent_url %q, agent_name %q; want %q, %q (the agent's GET now)", got["agent_url"], got["agent_name"], want, "moved")
	}
	if creds := e.staticCreds("moved"); creds.Data["agent_url"] != want {
		t.Errorf("agent-static-creds/ answers agent_url %q after the rewrite, want %q", creds.Data["agent_url"], want)
	}
}

// A rewrite of a role whose agent is gone is a 400 that says so and
// changes nothing.
func TestAgentStatic_RewriteOfARoleWhoseAgentIsGone(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("gone")
	e.mustOK(logical.CreateOperation, "agent-static-roles/gone", map[string]any{"agent_uuid": agent})
	ctx := context.Background()
	before, _ := getAgentStatic(ctx, e.storage, "gone")
	if _, _, err := e.do.AgentPlatform.DeleteAgent(ctx, agent); err != nil {
		t.Fatal(err)
	}
	e.mustBadRequest(logical.UpdateOperation, "agent-static-roles/gone", map[string]any{"rotation_period": "24h"},
		"is gone from the platform", "nothing was changed", "Delete the role")
	after, _ := getAgentStatic(ctx, e.storage, "gone")
	if after.RotationPeriod != before.RotationPeriod || after.AgentURL != before.AgentURL || after.AgentName != before.AgentName {
		t.Errorf("the refused rewrite changed the role: %+v, was %+v", after, before)
	}
}
