package backend

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRotate_Manual(t *testing.T) {
	r := newRotationEnv(t, nil)
	k1, k2, k3 := anthropicKey("man1"), anthropicKey("man2"), anthropicKey("man3")
	uuid := r.createKey("manual", k1, map[string]any{"rotation_period": "24h"})

	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", nil, "no staged successor", "next_api_key=@new-key.txt", "gradient/keys/manual")
	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": k1}, "the key in use now")
	rejected := anthropicKey("man4")
	r.emu.Revoke(rejected)
	r.mustBadRequest(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": rejected}, "rejected by the provider")
	r.assertVersion("manual", 1)
	if r.platformSecret("manual") != k1 {
		t.Fatal("a refused rotation changed the platform")
	}

	r.advance(time.Hour)
	got := r.mustOK(logical.UpdateOperation, "keys/manual/rotate", map[string]any{"api_key": k2}).Data
	if got["version"] != 2 || got["uuid"] != uuid || got["last_vault_rotation"] != ts(t0.Add(time.Hour)) ||
		got["next_vault_rotation"] != ts(t0.Add(25*time.Hour)) || got["previous_key_hint"] != k1[len(k1)-4:] {
		t.Fatalf("rotated with api_key: %v", got)
	}

	r.stage("manual", k3)
	got = r.mustOK(logical.UpdateOperation, "keys/manual/rotate", nil).Data
	if got["version"] != 3 || got["next_key_hint"] != "" || r.platformSecret("manual") != k3 {
		t.Fatalf("promoted the staged key: %v", got)
	}

	if _, err := r.request(logical.UpdateOperation, "keys/nothing-here/rotate", nil); err == nil || !strings.Contains(err.Error(), "no key named") {
		t.Fatalf("rotate of a missing key: %v", err)
	}

	// Writing api_key on keys/<name> is a rotation too.
	k4 := anthropicKey("man5")
	r.stage("manual", k4)
	got = r.mustOK(logical.UpdateOperation, "keys/manual", map[string]any{"api_key": anthropicKey("man6")}).Data
	if got["version"] != 4 || got["next_key_hint"] != "" || got["previous_key_hint"] != k3[len(k3)-4:] {
		t.Fatalf("rotated through keys/<name>: %v", got)
	}
}
