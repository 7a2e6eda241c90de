//go:build gradienttest

package backend

import (
	"strings"
	"testing"
	"time"
)

// The test build reads the GRADIENT_TEST_* variables that are set, and
// refuses one that is not a positive duration. Run with
// `go test -tags gradienttest ./backend -run TestTuning` (make test-unit).
func TestTuning_TestBuildReadsTheEnvironment(t *testing.T) {
	floors := defaultTuning()
	cases := map[string]struct {
		env  map[string]string
		want tuning
		err  string
	}{
		"unset keeps the floors": {want: floors},
		"all three": {
			env:  map[string]string{envTestTickInterval: "1s", envTestMinPeriod: "2s", envTestWALMinAge: "5s"},
			want: tuning{rotationTick: time.Second, minRotationPeriod: 2 * time.Second, walMinAge: 5 * time.Second, retryBaseDelay: floors.retryBaseDelay},
		},
		"bad tick":         {env: map[string]string{envTestTickInterval: "soon"}, err: envTestTickInterval},
		"zero minimum":     {env: map[string]string{envTestMinPeriod: "0s"}, err: envTestMinPeriod},
		"negative WAL age": {env: map[string]string{envTestWALMinAge: "-5s"}, err: envTestWALMinAge},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := tuneFromEnv(floors, func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("tuning %+v (err %v), want %+v", got, err, tc.want)
			}
		})
	}
}

// Factory of the test build applies them: the scheduler's tick, the floor
// of rotation_period and Vault's rollback age.
func TestTuning_TestBuildFactoryAppliesTheEnvironment(t *testing.T) {
	t.Setenv(envTestTickInterval, "1s")
	t.Setenv(envTestMinPeriod, "1s")
	t.Setenv(envTestWALMinAge, "5s")
	b := factoryForTuningTest(t)
	if b.rotation.tick() != time.Second || b.tuning.minRotationPeriod != time.Second || b.WALRollbackMinAge != 5*time.Second {
		t.Fatalf("tick %v, min period %v, WAL min age %v; want 1s, 1s, 5s", b.rotation.tick(), b.tuning.minRotationPeriod, b.WALRollbackMinAge)
	}
}
