package providers

import (
	"os"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The tests run with short backoffs, so that they test the retry logic, not
// the clock.
func TestMain(m *testing.M) {
	platform.RetryBaseDelay = 2 * time.Millisecond
	os.Exit(m.Run())
}
