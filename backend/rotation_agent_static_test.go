package backend

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Upstream error text is stored in rotation_error and logged: a platform
// (or proxy) that echoes the request or the answer in its error must not
// put the role's secret, nor the one just regenerated, there. The emulator
// cannot echo a secret in an error body (docs/emulator.md), so the function
// that records the failure is tested with such a text.
func TestAgentStatic_RotationErrorNeverHoldsASecret(t *testing.T) {
	const current, regenerated = "AbCdEfGhIjKlMnOpQrStUvWxYz012345", "ZyXwVuTsRqPoNmLkJiHgFeDcBa543210"
	r := &agentStaticEntry{Name: "echo", Secret: current, RotationPeriod: time.Hour, CreatedAt: t0}
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
