//go:build acceptance

package acceptance

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
	script, err := filepath.Abs("../scripts/get-vault.sh")
	if err != nil {
		t.Fatal(err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	fakeVault := func(t *testing.T, path, output string, code int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "#!/bin/sh\necho '" + output + "'\nexit " + strconv.Itoa(code) + "\n"
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(t *testing.T, env ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command("bash", script)
		cmd.Dir = t.TempDir() // outside any Go module
		cmd.Env = append(cleanEnv("HOME="+os.Getenv("HOME")), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			code = exitErr.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(stdout.String()), stderr.String(), code
	}
	sysPath := "/usr/bin:/bin:" + filepath.Dir(goBin)

	t.Run("a vault on PATH at 1.15 or later is used", func(t *testing.T) {
		bin := t.TempDir()
		fakeVault(t, filepath.Join(bin, "vault"), "Vault v1.16.2 (fake)", 0)
		out, errOut, code := run(t, "PATH="+bin+":"+sysPath, "VAULT_CACHE_DIR="+t.TempDir())
		if code != 0 || out != filepath.Join(bin, "vault") || !strings.Contains(errOut, "using") {
			t.Errorf("exit %d, stdout %q, stderr %s", code, out, errOut)
		}
	})

	t.Run("an older vault is ignored and the cached build used", func(t *testing.T) {
		bin, cache := t.TempDir(), t.TempDir()
		fakeVault(t, filepath.Join(bin, "vault"), "Vault v1.14.9 (fake)", 0)
		cached := filepath.Join(cache, "vault-1.21.0")
		fakeVault(t, cached, "Vault v1.21.0 (fake)", 0)
		out, errOut, code := run(t, "PATH="+bin+":"+sysPath, "VAULT_CACHE_DIR="+cache)
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
		// Version 0.0.1 does not exist, so the build stops at the download.
		out, errOut, code := run(t, "PATH="+sysPath, "VAULT_CACHE_DIR="+cache,
			"VAULT_VERSION=0.0.1", "VAULT_FORCE_BUILD=1", "GOFLAGS=")
		if code == 0 || out != "" {
			t.Fatalf("expected a failure with nothing on stdout: exit %d, stdout %q, stderr %s", code, out, errOut)
		}
		if !strings.Contains(errOut, "get-vault: error:") || !strings.Contains(errOut, "v0.0.1") {
			t.Errorf("the error does not say what failed:\n%s", errOut)
		}
		entries, _ := os.ReadDir(cache)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if want := []string{"build.interrupted", "vault-0.0.1"}; !slices.Equal(names, want) {
			t.Errorf("cache after a failed build: %v, want %v (no new files)", names, want)
		}
	})
}
