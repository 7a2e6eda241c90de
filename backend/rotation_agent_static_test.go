package backend

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// Upstream error text is stored in rotation_error and logged: a platform
// (or proxy) that echoes the request or the answer in its error must not
// put the role's secret, nor the one just regenerated, there. The emulator
// cannot echo a secret in an error body (docs/emulator.md), so the function
// that records the failure is tested with such a text.
func TestAgentStatic_RotationErrorNeverHoldsASecret(t *testing.T) {
	const current, regenerated = "AbCdEfGhIjKlMnOpQrStUvWxYz012345", "ZyXwVuTsRqPoNmLkJiHgFeDcBa543210"
	r := &agentStaticEntry{Name: "echo", Secret: current, rotationFields: rotationFields{RotationPeriod: time.Hour}, CreatedAt: t0}
	upstream := fmt.Errorf("regenerating the agent API key: 500: upstream said: old key %s, new key %s", current, regenerated)

	msg := recordStaticRotationFailure(r, upstream, t0.Add(time.Hour), regenerated)
	for _, text := range []string{msg, r.RotationError} {
		if strings.Contains(text, current) || strings.Contains(text, regenerated) {
			t.Errorf("a secret reached the recorded error: %q", text)
		}
		if !strings.Contains(text, "upstream said: old key [redacted], new key [redacted]") {
			t.Errorf("the recorded error lost the upstream text: %q", text)
		}
	}
	if r.RotationAttempts != 1 || r.RetryAt.IsZero() {
		t.Errorf("the failure was not counted: attempts %d, retry at %v", r.RotationAttempts, r.RetryAt)
	}

	// The error regenerateAgentStatic returns (to a rotate request, or the
	// scheduler) is redacted the same way, and stays what it was: a
	// caller's error is still a 400.
	caller := callerErrorf("refused: key %s", regenerated)
	redacted := redactError(caller, current, regenerated)
	if strings.Contains(redacted.Error(), regenerated) || !isCallerError(redacted) || !errors.Is(redacted, caller) {
		t.Errorf("redactError: %q, caller error %v", redacted, isCallerError(redacted))
	}
	if plain := errors.New("nothing secret"); redactError(plain, current) != plain {
		t.Errorf("redactError wrapped an error that held no secret")
	}
}

// A crash during a manual rotate, with scheduled rotation off, leaves the
// stored secret dead (the regenerate landed, the store did not). The active
// node's first tick after it starts repairs it at once: no wait for the
// periodic rollback, which comes only once the entry is walRollbackMinAge
// old. The entry stays for that rollback, which regenerates once more (a
// lost regenerate could still land), and the secret is live throughout.
func TestAgentStatic_StartRepairsAnInterruptedRotateAtOnce(t *testing.T) {
	r := newRotationEnv(t, nil)
	agent := r.staticAgent("manual")
	r.mustOK(logical.CreateOperation, "agent-static-roles/manual", map[string]any{"agent_uuid": agent})
	ctx := context.Background()
	stored, _ := getAgentStatic(ctx, r.storage, "manual")
	w := &agentStaticRegenerateWAL{walHeader: walHeader{Created: t0}, Name: "manual", AgentUUID: agent, KeyUUID: stored.KeyUUID, Version: stored.Version}
	if _, err := framework.PutWAL(ctx, r.storage, w.kind(), w); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.do.AgentPlatform.RegenerateAgentAPIKey(ctx, agent, stored.KeyUUID); err != nil {
		t.Fatal(err)
	}
	if got := r.agentEndpointStatus(stored.AgentURL, stored.Secret); got != http.StatusUnauthorized {
		t.Fatalf("setup: stored secret answers %d", got)
	}

	r.restart()
	r.tick() // the first tick, at once: no time has passed
	r.assertStaticSecretLive("manual")
	after := r.mustOK(logical.ReadOperation, "agent-static-roles/manual", nil).Data
	if after["version"] != stored.Version+1 || after["rotation_period"] != int64(0) || after["next_vault_rotation"] != nil {
		t.Errorf("after the repair: version %v, rotation_period %v, next_vault_rotation %v; want %d, 0, none",
			after["version"], after["rotation_period"], after["next_vault_rotation"], stored.Version+1)
	}
	if n := walCount(t, r.testEnv); n != 1 {
		t.Fatalf("want the entry kept for the periodic rollback, have %d", n)
	}
	// Another tick repairs nothing more.
	n := r.regenerates()
	r.tick()
	if r.regenerates() != n {
		t.Errorf("a later tick regenerated again")
	}
	rollbackNow(t, r.testEnv)
	r.assertStaticSecretLive("manual")
	assertNoWAL(t, r.testEnv)
	r.assertStaticInvariant()
}

// An entry a request already repaired (its stored secret was live then) is
// the periodic rollback's, for a lost regenerate that lands late: a restart
// does not regenerate it again.
func TestAgentStatic_StartLeavesARepairedRegenerateToTheRollback(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.mustOK(logical.CreateOperation, "agent-static-roles/lost", map[string]any{"agent_uuid": r.staticAgent("lost")})
	r.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: regeneratePath, Mode: "drop"})
	if v := r.mustOK(logical.UpdateOperation, "agent-static-roles/lost/rotate", nil).Data["version"]; v != 2 {
		t.Fatalf("version after the repaired rotation = %v, want 2", v)
	}
	n := r.regenerates()
	r.restart()
	r.tick()
	if r.regenerates() != n {
		t.Errorf("the restart regenerated a key its request had repaired")
	}
	r.assertStaticSecretLive("lost")
	rollbackNow(t, r.testEnv)
	r.assertStaticSecretLive("lost")
	if v := r.staticCreds("lost").Data["version"]; v != 3 {
		t.Errorf("version after the rollback = %v, want 3", v)
	}
}

// Holds (from the review): a crash between a scheduled regenerate and its
// store (entry left, stored secret dead) is repaired on the new active
// node, whose due rotation then runs, and the rollback regenerates no more.
func TestAgentStatic_CrashBeforeStoreThenFailover(t *testing.T) {
	r := newRotationEnv(t, nil)
	agent := r.staticAgent("crash")
	r.mustOK(logical.CreateOperation, "agent-static-roles/crash", map[string]any{"agent_uuid": agent, "rotation_period": "1h"})
	ctx := context.Background()
	stored, _ := getAgentStatic(ctx, r.storage, "crash")
	w := &agentStaticRegenerateWAL{walHeader: walHeader{Created: t0}, Name: "crash", AgentUUID: agent, KeyUUID: stored.KeyUUID, Version: stored.Version}
	if _, err := framework.PutWAL(ctx, r.storage, w.kind(), w); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.do.AgentPlatform.RegenerateAgentAPIKey(ctx, agent, stored.KeyUUID); err != nil {
		t.Fatal(err)
	}
	if got := r.agentEndpointStatus(stored.AgentURL, stored.Secret); got != http.StatusUnauthorized {
		t.Fatalf("setup: stored secret answers %d", got)
	}
	r.restart()
	r.tickAt(t0.Add(time.Hour))
	r.assertStaticSecretLive("crash")
	n := r.regenerates()
	rollbackNow(t, r.testEnv)
	if r.regenerates() != n {
		t.Errorf("rollback regenerated again after the failover's rotation")
	}
	r.assertStaticInvariant()
}

// Holds (from the review): roles adopting one key at once: one wins, the
// others are a 400, the winner's secret is live.
func TestAgentStatic_ConcurrentAdoptOfOneKey(t *testing.T) {
	e := newTestEnv(t, nil)
	agent := e.staticAgent("twin")
	k, _, err := e.do.AgentPlatform.CreateAgentAPIKey(context.Background(), agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	oks := make([]bool, 8)
	for i := range oks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.send(logical.CreateOperation, fmt.Sprintf("agent-static-roles/twin-%d", i), map[string]any{"agent_uuid": agent, "api_key_uuid": k.Uuid})
			_, failed := answerError(resp, err)
			oks[i] = !failed
		}()
	}
	wg.Wait()
	won := 0
	for i, ok := range oks {
		if ok {
			won++
			e.assertStaticSecretLive(fmt.Sprintf("twin-%d", i))
		}
	}
	if won != 1 {
		t.Fatalf("%d roles adopted the key", won)
	}
	e.assertStaticInvariant()
}

// Holds (from the review): manual rotations, scheduled ticks, reads,
// rewrites and a delete-and-recreate racing on one role end in the
// invariant.
func TestAgentStatic_RacingRotateTickDelete(t *testing.T) {
	r := newRotationEnv(t, nil)
	agent := r.staticAgent("race")
	r.mustOK(logical.CreateOperation, "agent-static-roles/race", map[string]any{"agent_uuid": agent, "rotation_period": "1h"})
	r.advance(2 * time.Hour)
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(4)
		go func() { defer wg.Done(); _, _ = r.send(logical.UpdateOperation, "agent-static-roles/race/rotate", nil) }()
		go func() { defer wg.Done(); r.tick() }()
		go func() { defer wg.Done(); _, _ = r.send(logical.ReadOperation, "agent-static-creds/race", nil) }()
		go func() {
			defer wg.Done()
			if i%3 == 0 {
				_, _ = r.send(logical.DeleteOperation, "agent-static-roles/race", nil)
				_, _ = r.send(logical.CreateOperation, "agent-static-roles/race", map[string]any{"agent_uuid": agent, "rotation_period": "1h"})
			} else {
				_, _ = r.send(logical.UpdateOperation, "agent-static-roles/race", map[string]any{"rotation_period": "2h"})
			}
		}()
	}
	wg.Wait()
	r.assertStaticInvariant()
}
