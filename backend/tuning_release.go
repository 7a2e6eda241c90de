//go:build !gradienttest

package backend

// buildTuning is the release build's: the floors, whatever the environment
// says. Only a build with the gradienttest tag (tuning_gradienttest.go)
// reads test tuning from the environment, so a release binary holds no
// GRADIENT_TEST_ name, and registering it with `vault plugin register -env`
// cannot lower a floor (scripts/release_test.go checks the binaries).
func buildTuning() (tuning, error) { return defaultTuning(), nil }
