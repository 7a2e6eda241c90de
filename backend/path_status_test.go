package backend

import (
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestStatus_Counts(t *testing.T) {
	r := newRotationEnv(t, nil)
	r.createKey("st-ok", anthropicKey("st1"), map[string]any{"rotation_period": "12h"})
	r.createKey("st-later", anthropicKey("st2"), map[string]any{"rotation_period": "48h"})
	r.createKey("st-overdue", anthropicKey("st3"), map[string]any{"rotation_period": "1h"})
	r.createKey("st-failed", anthropicKey("st4"), map[string]any{"rotation_period": "1h"})
	r.mustOK(logical.CreateOperation, "keys/st-openai", map[string]any{"provider": "openai", "api_key": openAIKey("st5")})
	bad := anthropicKey("st6")
	r.stage("st-failed", bad)
	r.emu.Revoke(bad)

	got := r.mustOK(logical.ReadOperation, "status", nil).Data
	if got["rotating_next_24h"] != 3 || got["overdue"] != 0 || got["keys_total"] != 5 || got["scheduler_last_run"] != nil {
		t.Fatalf("before: %v", got)
	}
	if by := got["keys_by_provider"].(map[string]any); by["anthropic"] != 4 || by["openai"] != 1 {
		t.Fatalf("keys_by_provider = %v", by)
	}
	// The platform's own count, as its last answer's headers said.
	rl, _ := got["rate_limit"].(map[string]any)
	if rl == nil || got["rate_limit_note"] != nil {
		t.Fatalf("rate_limit = %v, note %v", got["rate_limit"], got["rate_limit_note"])
	}
	if limit, remaining := rl["limit"].(int), rl["remaining"].(int); limit <= 0 || remaining <= 0 || remaining >= limit {
		t.Fatalf("rate_limit = %v: want the platform's count after the requests made", rl)
	}

	r.tickAt(t0.Add(time.Hour))
	got = r.mustOK(logical.ReadOperation, "status", nil).Data
	want := map[string]any{"rotating_next_24h": 1, "overdue": 1, "failed": 1, "due": 0, "rotation_enabled": 4,
		"scheduler_last_run": ts(t0.Add(time.Hour)), "scheduler_state": schedulerRunning}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
}
