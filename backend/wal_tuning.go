package backend

import (
	"fmt"
	"time"
)

// envTestWALMinAge lowers how old a write-ahead log entry must be before
// Vault's periodic rollback hands it to walRollback (walRollbackMinAge
// otherwise), so that an acceptance test on a real Vault cluster sees a
// rollback within its run. Like the rotation tuning in rotation.go it is
// test-only: the acceptance suite sets it with `vault plugin register -env`,
// nothing else should.
const envTestWALMinAge = "GRADIENT_TEST_WAL_MIN_AGE"

// tuneWALFromEnv applies envTestWALMinAge when it is set.
func (b *gradientBackend) tuneWALFromEnv(lookup func(string) (string, bool)) error {
	v, ok := lookup(envTestWALMinAge)
	if !ok {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return fmt.Errorf("%s must be a positive duration", envTestWALMinAge)
	}
	b.WALRollbackMinAge = d
	return nil
}
