package emulator_test

import (
	"net/http"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// A removed token is refused (401) from then on; the other token still works.
func TestRemoveToken(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{testToken}})
	e.emu.AddToken("second-token")
	e.emu.RemoveToken(testToken)
	if r := e.platform(t, "GET", "/v2/gen-ai/anthropic/keys", nil); r.status != http.StatusUnauthorized {
		t.Errorf("the removed token: HTTP %d, want 401", r.status)
	}
	if r := e.do(t, "GET", "/v2/gen-ai/anthropic/keys", nil, "Authorization", "Bearer second-token"); r.status != http.StatusOK {
		t.Errorf("the remaining token: HTTP %d, want 200", r.status)
	}
}
