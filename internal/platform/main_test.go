package platform

import (
	"os"
	"testing"
	"time"
)

// The tests run with short backoffs, so that they test the retry logic, not
// the clock.
func TestMain(m *testing.M) {
	RetryBaseDelay = 2 * time.Millisecond
	os.Exit(m.Run())
}
