//go:build !gradienttest

package backend

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A release build ignores the test build's variables: registered with
// `vault plugin register -env=GRADIENT_TEST_...`, it keeps every floor, and
// a rotation_period under a minute is still refused.
func TestTuning_ReleaseBuildIgnoresTheEnvironment(t *testing.T) {
	for _, name := range []string{"GRADIENT_TEST_ROTATION_TICK", "GRADIENT_TEST_MIN_ROTATION_PERIOD", "GRADIENT_TEST_WAL_MIN_AGE"} {
		t.Setenv(name, "1s")
	}
	b := factoryForTuningTest(t)
	if b.tuning != defaultTuning() {
		t.Fatalf("tuning %+v, want the floors %+v", b.tuning, defaultTuning())
	}
	if b.rotation.tick() != defaultTickInterval || b.WALRollbackMinAge != walRollbackMinAge {
		t.Fatalf("tick %v, WAL min age %v; want %v, %v", b.rotation.tick(), b.WALRollbackMinAge, defaultTickInterval, walRollbackMinAge)
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.CreateOperation, Path: "keys/fast", Storage: &logical.InmemStorage{},
		Data: map[string]any{"provider": "anthropic", "api_key": anthropicKey("fast1"), "rotation_period": "1s"},
	})
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "rotation_period must be at least 1m0s") {
		t.Fatalf("a 1s rotation_period: resp %v, err %v; want the 1m floor's 400", resp, err)
	}
}
