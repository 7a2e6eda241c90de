package backend

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func TestRotation_RestartWithDueAndNotDueKeys(t *testing.T) {
	r := newRotationEnv(t, nil)
	dueNext, laterNext := anthropicKey("rst2"), anthropicKey("rst4")
	r.createKey("due-key", anthropicKey("rst1"), map[string]any{"rotation_period": "1h"})
	r.createKey("later-key", anthropicKey("rst3"), map[string]any{"rotation_period": "24h"})
	r.createKey("off-key", anthropicKey("rst5"), nil)
	r.stage("due-key", dueNext)
	r.stage("later-key", laterNext)

	r.stop()
	r.advance(2 * time.Hour)
	r.restart()
	r.tick()
	if r.platformSecret("due-key") != dueNext {
		t.Fatal("a key that came due while Vault was down was not rotated")
	}
	r.assertVersion("due-key", 2)
	r.assertVersion("later-key", 1)
	r.assertVersion("off-key", 1)

	// Another restart rotates nothing twice.
	r.restart()
	r.tick()
	r.assertVersion("due-key", 2)
	r.assertVersion("later-key", 1)

	r.tickAt(t0.Add(24 * time.Hour))
	if r.platformSecret("later-key") != laterNext {
		t.Fatal("the not-due key did not rotate when it came due")
	}
}

// hashicorp/vault PR 29537: database static roles rotated on every reload
// after an upgrade, because the stored next rotation was missing and read as
// "due since the epoch".
func TestRotation_Bug29537_ReloadNeverRotatesWhatIsNotDue(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("steady", anthropicKey("up1"), map[string]any{"rotation_period": "24h"})
	r.stage("steady", anthropicKey("up2"))
	next := r.read("steady")["next_vault_rotation"]

	// An entry as an older version would have stored it: settings, but no
	// next, last or settings time.
	legacy := &keyEntry{Name: "legacy", Provider: platform.Anthropic, UUID: r.createKey("legacy", anthropicKey("up3"), nil), APIKey: anthropicKey("up3"),
		Version: 1, rotationFields: rotationFields{RotationPeriod: time.Hour}, NextAPIKey: anthropicKey("up4")}
	if err := putKey(context.Background(), r.storage, legacy); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < 3; i++ {
		r.advance(time.Minute)
		r.restart()
		r.tick()
	}
	r.assertVersion("steady", 1)
	r.assertVersion("legacy", 1)
	if got := r.read("steady")["next_vault_rotation"]; got != next {
		t.Fatalf("reloads moved the next rotation: %v -> %v", next, got)
	}
	// The legacy entry got a next rotation counted from the first reload.
	if got := r.read("legacy")["next_vault_rotation"]; got != ts(t0.Add(time.Minute+time.Hour)) {
		t.Fatalf("legacy next = %v", got)
	}
}

// hashicorp/vault issue 21935: rotation stopped after a failover, because the
// new active node never filled its queue.
func TestRotation_Bug21935_RotationResumesAfterFailover(t *testing.T) {
	r := newRotationEnv(t, nil)
	k2 := anthropicKey("fo2")
	r.createKey("failover", anthropicKey("fo1"), map[string]any{"rotation_period": "1h"})
	r.stage("failover", k2)

	// This node becomes a standby: it must not act, even when the key is due.
	r.sys.standby.Store(true)
	r.tickAt(t0.Add(2 * time.Hour))
	r.assertVersion("failover", 1)
	if state, _, _ := r.b.rotation.status(); state != schedulerStandby {
		t.Fatalf("scheduler state = %v", state)
	}
	// status forwards to the active node, where the scheduler runs.
	if _, err := r.request(logical.ReadOperation, "status", nil); err != logical.ErrReadOnly {
		t.Fatalf("status on a standby: %v, want it forwarded", err)
	}

	// The same node becomes active again: it rebuilds and rotates.
	r.sys.standby.Store(false)
	r.tick()
	if r.platformSecret("failover") != k2 {
		t.Fatal("the node that became active again did not rotate")
	}

	// Another node takes over (a new backend on the same storage): the
	// next rotation happens there.
	k3 := anthropicKey("fo3")
	r.stage("failover", k3)
	r.restart()
	r.tickAt(r.clock.Now().Add(time.Hour))
	if r.platformSecret("failover") != k3 {
		t.Fatal("the new active node did not rotate")
	}
	r.assertVersion("failover", 3)
}
