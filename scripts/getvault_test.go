package scripts_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestGetVaultScript checks scripts/get-vault.sh's choices with fake vault
// binaries: a recent one on PATH is used, an old one is ignored in favour of
// the cache, and neither a broken cached binary nor a half-finished build is
// trusted; a failed build says why and leaves nothing behind.
func TestGetVaultScript(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	sysPath := toolDir(t) + ":" + filepath.Dir(goBin)
	home := "HOME=" + os.Getenv("HOME")

	t.Run("a vault on PATH at 1.15 or later is used", func(t *testing.T) {
		bin := t.TempDir()
		fakeVault(t, filepath.Join(bin, "vault"), "Vault v1.16.2 (fake)", 0)
		out, errOut, code := runScript(t, home, "PATH="+bin+":"+sysPath, "VAULT_CACHE_DIR="+t.TempDir())
		if code != 0 || out != filepath.Join(bin, "vault") || !strings.Contains(errOut, "using") {
			t.Errorf("exit %d, stdout %q, stderr %s", code, out, errOut)
		}
	})

	t.Run("an older vault is ignored and the cached build used", func(t *testing.T) {
		bin, cache := t.TempDir(), t.TempDir()
		fakeVault(t, filepath.Join(bin, "vault"), "Vault v1.14.9 (fake)", 0)
		cached := filepath.Join(cache, "vault-1.21.0")
		fakeVault(t, cached, "Vault v1.21.0 (fake)", 0)
		out, errOut, code := runScript(t, home, "PATH="+bin+":"+sysPath, "VAULT_CACHE_DIR="+cache)
		if code != 0 || out != cached || !strings.Contains(errOut, "ignoring") {
			t.Errorf("exit %d, stdout %q, stderr %s", code, out, errOut)
		}
	})

	t.Run("broken or half-built binaries are not trusted", func(t *testing.T) {
		cache := t.TempDir()
		// A cached binary that does not run, and a working binary left in
		// an interrupted build directory.
		fakeVault(t, filepath.Join(cache, "vault-0.0.1"), "Vault v0.0.1", 1)
		fakeVault(t, filepath.Join(cache, "build.interrupted", "vault"), "Vault v1.21.0 (fake)", 0)
		// Version 0.0.1 does not exist, so the build stops at the download;
		// GOPROXY=off makes that so without asking the module proxy.
		out, errOut, code := runScript(t, home, "PATH="+sysPath, "VAULT_CACHE_DIR="+cache,
			"VAULT_VERSION=0.0.1", "VAULT_FORCE_BUILD=1", "GOFLAGS=", "GOPROXY=off")
		if code == 0 || out != "" {
			t.Fatalf("expected a failure with nothing on stdout: exit %d, stdout %q, stderr %s", code, out, errOut)
		}
		if !strings.Contains(errOut, "get-vault: error:") || !strings.Contains(errOut, "v0.0.1") {
			t.Errorf("the error does not say what failed:\n%s", errOut)
		}
		if want := []string{"build.interrupted", "vault-0.0.1"}; !slices.Equal(cacheEntries(t, cache), want) {
			t.Errorf("cache after a failed build: %v, want %v (no new files)", cacheEntries(t, cache), want)
		}
	})
}

// ---------------------------------------------------------------------------
// Helpers.

// runScript runs get-vault.sh outside any Go module with a clean environment
// plus env, and returns its trimmed stdout, its stderr and its exit code.
func runScript(t *testing.T, env ...string) (string, string, int) {
	t.Helper()
	script, err := filepath.Abs("get-vault.sh")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(stdout.String()), stderr.String(), code
}

// cleanEnv is the test's environment without the variables that would let a
// developer's settings leak into the script: Vault's and HOME.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VAULT_"), name == "HOME":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func fakeVault(t *testing.T, path, output string, code int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	body := "#!/bin/sh\necho '" + output + "'\nexit " + strconv.Itoa(code) + "\n"
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

// toolDir returns a directory of links to the system's commands in /usr/bin
// and /bin, less any vault (so a developer's own Vault never answers) and
// less the named commands, to run the script as on a machine without them.
func toolDir(t *testing.T, without ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, src := range []string{"/usr/bin", "/bin"} {
		entries, err := os.ReadDir(src)
		if err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			if name == "vault" || slices.Contains(without, name) {
				continue
			}
			link := filepath.Join(dir, name)
			if _, err := os.Lstat(link); err == nil {
				continue // /bin is often /usr/bin
			}
			if err := os.Symlink(filepath.Join(src, name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
