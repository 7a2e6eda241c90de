package platform

import "time"

// The tests build their clients with short backoffs, so that they test the
// retry logic, not the clock.
const testRetryBase = 2 * time.Millisecond
