//go:build gradienttest

package backend

import (
	"fmt"
	"os"
	"time"
)

// The gradienttest build tag makes the test build of the plugin: the one the
// acceptance suite, the cluster and chaos tests and the bench register, with
// `vault plugin register -env=GRADIENT_TEST_...=1s`, to rotate and roll back
// within seconds. `make build-test` builds it (`go build -tags gradienttest`)
// into bin/plugins-test; the release and `make dev` builds leave the tag out
// and read none of these (tuning_release.go).
const (
	envTestTickInterval = "GRADIENT_TEST_ROTATION_TICK"
	envTestMinPeriod    = "GRADIENT_TEST_MIN_ROTATION_PERIOD"
	envTestWALMinAge    = "GRADIENT_TEST_WAL_MIN_AGE"
)

// buildTuning is the test build's: the floors, lowered by the GRADIENT_TEST_*
// variables that are set.
func buildTuning() (tuning, error) { return tuneFromEnv(defaultTuning(), os.LookupEnv) }

func tuneFromEnv(t tuning, lookup func(string) (string, bool)) (tuning, error) {
	for name, field := range map[string]*time.Duration{
		envTestTickInterval: &t.rotationTick,
		envTestMinPeriod:    &t.minRotationPeriod,
		envTestWALMinAge:    &t.walMinAge,
	} {
		v, ok := lookup(name)
		if !ok {
			continue
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return t, fmt.Errorf("%s must be a positive duration", name)
		}
		*field = d
	}
	return t, nil
}
