package scripts_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestMakeRelease runs `make release` into a temporary directory and checks
// its output: one binary per platform, named with the version, built for that
// platform without cgo and with -trimpath, the version stamped into the
// backend, no test tuning, and a SHA256SUMS that covers exactly those
// binaries. It cross-
// compiles four times, so it is skipped with -short; the Go build cache makes
// repeats take seconds.
func TestMakeRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the plugin four times")
	}
	for _, tool := range []string{"make", "go", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	const version = "v9.9.9-test"
	dist := t.TempDir()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-C", root, "release", "VERSION="+version, "DIST_DIR="+dist)
	// A make running this test must not hand its jobserver to this one.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}

	var names []string
	for _, platform := range []string{"darwin_amd64", "darwin_arm64", "linux_amd64", "linux_arm64"} {
		name := "vault-plugin-secrets-gradient_" + version + "_" + platform
		names = append(names, name)
		info, err := exec.Command("go", "version", "-m", filepath.Join(dist, name)).Output()
		if err != nil {
			t.Errorf("%s: go version -m: %v", name, err)
			continue
		}
		goos, goarch, _ := strings.Cut(platform, "_")
		for _, want := range []string{
			"\tpath\tgithub.com/gradient-vault/vault-plugin-secrets-gradient/cmd/vault-plugin-secrets-gradient\n",
			"\tbuild\tGOOS=" + goos + "\n",
			"\tbuild\tGOARCH=" + goarch + "\n",
			"\tbuild\tCGO_ENABLED=0\n",
			"\tbuild\t-trimpath=true\n",
		} {
			if !strings.Contains(string(info), want) {
				t.Errorf("%s: build info lacks %q:\n%s", name, strings.TrimSpace(want), info)
			}
		}
	}
	// ReadDir sorts by name: "SHA256SUMS" before the lower-case binaries.
	if entries := cacheEntries(t, dist); !slices.Equal(entries, append([]string{"SHA256SUMS"}, names...)) {
		t.Errorf("dist holds %v, want SHA256SUMS and %v", entries, names)
	}

	// SHA256SUMS lists exactly the four binaries, and they match it.
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			listed = append(listed, f[1])
		}
	}
	if !slices.Equal(listed, names) {
		t.Errorf("SHA256SUMS lists %v, want %v", listed, names)
	}
	check := exec.Command("sha256sum", "-c", "SHA256SUMS")
	check.Dir = dist
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS: %v\n%s", err, out)
	}

	// No release binary carries the test build's tuning (the gradienttest
	// build tag, backend/tuning_gradienttest.go): the names of its
	// environment variables are absent, as `strings` would show, so nothing
	// passed with `vault plugin register -env` can lower a floor.
	for _, name := range names {
		bin, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(bin, []byte("GRADIENT_TEST_")) {
			t.Errorf("%s contains %q: the release must be built without the gradienttest tag", name, "GRADIENT_TEST_")
		}
	}

	// -trimpath keeps -ldflags out of the build info, so look for the
	// version that -X stored in backend.Version among the binary's strings.
	bin, err := os.ReadFile(filepath.Join(dist, "vault-plugin-secrets-gradient_"+version+"_linux_amd64"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(bin, []byte(version)) {
		t.Errorf("the linux/amd64 binary does not contain the version %s", version)
	}
}
