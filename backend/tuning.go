package backend

import (
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// tuning is everything tests change about the backend's pace, in one place.
//
// A release build runs with defaultTuning() and nothing can lower it: no
// environment variable, mount option or request reaches these fields (the
// Factory of a build without the gradienttest tag, tuning_release.go, reads
// nothing). Unit tests fill the struct in process (factory, or b.tuning
// before the part that reads it starts). Tests through a real Vault (the
// acceptance suite, the cluster and chaos tests, the bench) run a plugin
// built with `-tags gradienttest`, whose Factory reads the GRADIENT_TEST_*
// environment into it (tuning_gradienttest.go); `make` builds that plugin
// into bin/plugins-test and the release and `make dev` plugin without it.
type tuning struct {
	// rotationTick is how often the rotation scheduler looks at its queue,
	// read at Initialize; 0 starts no ticker (unit tests tick by hand).
	rotationTick time.Duration
	// minRotationPeriod is the shortest rotation_period a write may set,
	// read at every write.
	minRotationPeriod time.Duration
	// walMinAge is how old a WAL entry must be before Vault's periodic
	// rollback hands it to walRollback, read by newBackend.
	walMinAge time.Duration
	// retryBaseDelay is the first backoff of a retried upstream call, read
	// when the clients are built from a config.
	retryBaseDelay time.Duration
}

// defaultTuning is the release's: the floors.
func defaultTuning() tuning {
	return tuning{
		rotationTick:      defaultTickInterval,
		minRotationPeriod: defaultMinRotationPeriod,
		walMinAge:         walRollbackMinAge,
		retryBaseDelay:    platform.DefaultRetryBaseDelay,
	}
}
