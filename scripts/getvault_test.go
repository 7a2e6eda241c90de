package scripts_test

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The Vault version get-vault.sh fetches by default.
const vaultVersion = "1.21.0"

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
			"VAULT_VERSION=0.0.1", "VAULT_FORCE_BUILD=1", "GOFLAGS=", "GOPROXY=off",
			"VAULT_RELEASES_URL="+unreachableURL(t))
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

// TestGetVaultDownload checks the download of HashiCorp's release zip
// against a local release server: a verified zip is installed into the cache
// and reused; a zip or checksum file that does not verify is refused and
// nothing is cached; an unreachable server falls back to the source build.
// Where gpg is installed, the fixture's SHA256SUMS is signed by a key made for
// the test and the script is pointed at it.
func TestGetVaultDownload(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed: the script skips the download")
	}
	platform := runtime.GOOS + "_" + runtime.GOARCH
	zipName := "vault_" + vaultVersion + "_" + platform + ".zip"
	sumsName := "vault_" + vaultVersion + "_SHA256SUMS"
	goodZip := fixtureZip(t, "Vault v"+vaultVersion+" (fixture)")
	goodSums := sumsFile(map[string][]byte{
		zipName: goodZip,
		"vault_" + vaultVersion + "_windows_amd64.zip": []byte("another platform"),
	})
	key := newSigningKey(t) // nil without gpg
	sysPath := toolDir(t)

	// The environment of one run: no build (so a fallback shows as a failure
	// that says so), the test's key, and everything in temporary directories.
	env := func(t *testing.T, cache, url string, extra ...string) []string {
		e := []string{"HOME=" + t.TempDir(), "PATH=" + sysPath, "VAULT_CACHE_DIR=" + cache,
			"VAULT_RELEASES_URL=" + url, "VAULT_NO_BUILD=1"}
		if key != nil {
			e = append(e, "VAULT_RELEASE_KEY="+key.armored, "VAULT_RELEASE_KEY_FINGERPRINT="+key.fingerprint)
		}
		return append(e, extra...)
	}
	release := func(zipBody, sums []byte) map[string][]byte {
		files := map[string][]byte{zipName: zipBody, sumsName: sums}
		if key != nil {
			files[sumsName+".sig"] = key.sign(t, sums)
		}
		return files
	}
	refused := func(t *testing.T, cache, errOut string, code int, out, reason string) {
		t.Helper()
		if code == 0 || out != "" {
			t.Errorf("expected a refusal: exit %d, stdout %q", code, out)
		}
		if !strings.Contains(errOut, reason) || !strings.Contains(errOut, "VAULT_NO_BUILD is set") {
			t.Errorf("stderr does not say %q and stop before the build:\n%s", reason, errOut)
		}
		if names := cacheEntries(t, cache); len(names) != 0 {
			t.Errorf("the cache holds %v after a refusal, want nothing", names)
		}
	}

	t.Run("a verified release is installed into the cache and reused", func(t *testing.T) {
		srv := newReleaseServer(t, release(goodZip, goodSums))
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL)...)
		target := filepath.Join(cache, "vault-"+vaultVersion)
		if code != 0 || out != target {
			t.Fatalf("exit %d, stdout %q, want %q; stderr:\n%s", code, out, target, errOut)
		}
		if v, err := exec.Command(target, "version").Output(); err != nil || strings.TrimSpace(string(v)) != "Vault v1.21.0 (fixture)" {
			t.Errorf("the installed binary says %q (%v)", v, err)
		}
		if names := cacheEntries(t, cache); !slices.Equal(names, []string{"vault-" + vaultVersion}) {
			t.Errorf("cache holds %v, want only the binary (no scratch left)", names)
		}
		if key != nil && !strings.Contains(errOut, "signature by "+key.fingerprint+" verified") {
			t.Errorf("stderr does not report the verified signature:\n%s", errOut)
		}
		want := []string{sumsName, zipName}
		if key != nil {
			want = []string{sumsName, sumsName + ".sig", zipName}
		}
		if !slices.Equal(srv.requests(), want) {
			t.Errorf("requests %v, want %v", srv.requests(), want)
		}

		before := len(srv.requests())
		out, errOut, code = runScript(t, env(t, cache, srv.URL)...)
		if code != 0 || out != target || !strings.Contains(errOut, "using cached") || len(srv.requests()) != before {
			t.Errorf("second run: exit %d, stdout %q, %d new requests, stderr:\n%s", code, out, len(srv.requests())-before, errOut)
		}
	})

	t.Run("a tampered zip is refused and nothing is cached", func(t *testing.T) {
		tampered := fixtureZip(t, "Vault v"+vaultVersion+" (tampered)")
		srv := newReleaseServer(t, release(tampered, goodSums))
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL)...)
		refused(t, cache, errOut, code, out, "refused "+zipName+": its SHA256 is "+sha256Hex(tampered))
	})

	t.Run("an unreachable server falls back to the source build", func(t *testing.T) {
		// A fake go first on PATH shows that the build starts, without one.
		fakeGo := t.TempDir()
		if err := os.WriteFile(filepath.Join(fakeGo, "go"), []byte("#!/bin/sh\necho \"fake go: $*\" >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		url := unreachableURL(t)
		cache := t.TempDir()
		e := slices.DeleteFunc(env(t, cache, url), func(kv string) bool { return kv == "VAULT_NO_BUILD=1" })
		out, errOut, code := runScript(t, append(e, "PATH="+fakeGo+":"+sysPath)...)
		if code == 0 || out != "" {
			t.Errorf("exit %d, stdout %q", code, out)
		}
		why := "download failed (could not fetch " + url + "/vault/" + vaultVersion + "/" + sumsName + ": curl: (7)"
		if strings.Count(errOut, "download failed") != 1 || !strings.Contains(errOut, why) ||
			!strings.Contains(errOut, "building from source instead") {
			t.Errorf("stderr does not give one line with the reason %q:\n%s", why, errOut)
		}
		if !strings.Contains(errOut, "building Vault v"+vaultVersion+" from the Go module proxy") || !strings.Contains(errOut, "fake go: env GOMODCACHE") {
			t.Errorf("the source build did not start:\n%s", errOut)
		}
		if names := cacheEntries(t, cache); len(names) != 0 {
			t.Errorf("the cache holds %v, want nothing", names)
		}
	})

	t.Run("a zip missing from SHA256SUMS is refused", func(t *testing.T) {
		sums := sumsFile(map[string][]byte{"vault_" + vaultVersion + "_plan9_amd64.zip": goodZip})
		srv := newReleaseServer(t, release(goodZip, sums))
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL)...)
		refused(t, cache, errOut, code, out, sumsName+" lists no single checksum for "+zipName)
	})

	t.Run("without unzip, python3 extracts the zip", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("python3 is not installed")
		}
		srv := newReleaseServer(t, release(goodZip, goodSums))
		cache := t.TempDir()
		e := env(t, cache, srv.URL, "PATH="+toolDir(t, "unzip"))
		out, errOut, code := runScript(t, e...)
		if code != 0 || out != filepath.Join(cache, "vault-"+vaultVersion) {
			t.Errorf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
	})

	t.Run("without gpg, the checksum alone is checked and the script says so", func(t *testing.T) {
		files := release(goodZip, goodSums)
		delete(files, sumsName+".sig")
		srv := newReleaseServer(t, files)
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL, "PATH="+toolDir(t, "gpg"))...)
		if code != 0 || out != filepath.Join(cache, "vault-"+vaultVersion) || !strings.Contains(errOut, "gpg is not installed") {
			t.Errorf("exit %d, stdout %q, stderr:\n%s", code, out, errOut)
		}
		tampered := fixtureZip(t, "Vault v"+vaultVersion+" (tampered)")
		srv = newReleaseServer(t, map[string][]byte{zipName: tampered, sumsName: goodSums})
		cache = t.TempDir()
		out, errOut, code = runScript(t, env(t, cache, srv.URL, "PATH="+toolDir(t, "gpg"))...)
		refused(t, cache, errOut, code, out, "refused "+zipName)
	})

	if key == nil {
		t.Log("gpg is not installed: signature cases skipped")
		return
	}

	t.Run("SHA256SUMS altered after signing is refused", func(t *testing.T) {
		files := release(goodZip, goodSums)
		files[sumsName] = append(bytes.Clone(goodSums), []byte(sha256Hex([]byte("x"))+"  vault_"+vaultVersion+"_extra.zip\n")...)
		srv := newReleaseServer(t, files)
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL)...)
		refused(t, cache, errOut, code, out, "the signature of "+sumsName+" does not verify with key "+key.fingerprint)
	})

	t.Run("a missing signature is refused when gpg is installed", func(t *testing.T) {
		files := release(goodZip, goodSums)
		delete(files, sumsName+".sig")
		srv := newReleaseServer(t, files)
		cache := t.TempDir()
		out, errOut, code := runScript(t, env(t, cache, srv.URL)...)
		refused(t, cache, errOut, code, out, "could not fetch "+srv.URL+"/vault/"+vaultVersion+"/"+sumsName+".sig")
	})

	t.Run("the committed HashiCorp key is the pinned one and refuses other signers", func(t *testing.T) {
		srv := newReleaseServer(t, release(goodZip, goodSums))
		cache := t.TempDir()
		e := slices.DeleteFunc(env(t, cache, srv.URL), func(kv string) bool { return strings.HasPrefix(kv, "VAULT_RELEASE_KEY") })
		out, errOut, code := runScript(t, e...)
		// Past the fingerprint check, the fixture's signature is not HashiCorp's.
		refused(t, cache, errOut, code, out, "does not verify with key C874011F0AB405110D02105534365D9472D7468F")
	})

	t.Run("a key with another fingerprint is refused", func(t *testing.T) {
		srv := newReleaseServer(t, release(goodZip, goodSums))
		cache := t.TempDir()
		e := env(t, cache, srv.URL, "VAULT_RELEASE_KEY_FINGERPRINT=C874011F0AB405110D02105534365D9472D7468F")
		out, errOut, code := runScript(t, e...)
		refused(t, cache, errOut, code, out, "is not the key with fingerprint C874011F0AB405110D02105534365D9472D7468F (found: "+key.fingerprint+")")
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
// developer's settings leak into the script: Vault's, HOME, gpg's home, curl's
// configuration and proxies.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VAULT_"), name == "HOME", name == "GNUPGHOME", name == "CURL_HOME":
			continue
		case slices.Contains([]string{"http_proxy", "https_proxy", "all_proxy", "no_proxy"}, strings.ToLower(name)):
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

// unreachableURL is the address of a local port that nothing listens on.
func unreachableURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// fixtureZip is a release zip as HashiCorp ships it: a vault binary (here a
// shell script printing version) and the licence.
func fixtureZip(t *testing.T, version string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range []struct {
		name, body string
		mode       os.FileMode
	}{
		{"vault", "#!/bin/sh\necho '" + version + "'\n", 0o755},
		{"LICENSE.txt", "fixture licence\n", 0o644},
	} {
		h := &zip.FileHeader{Name: f.name, Method: zip.Deflate}
		h.SetMode(f.mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sumsFile is a SHA256SUMS in the releases' format, sorted by name.
func sumsFile(files map[string][]byte) []byte {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	var b bytes.Buffer
	for _, name := range names {
		fmt.Fprintf(&b, "%s  %s\n", sha256Hex(files[name]), name)
	}
	return b.Bytes()
}

// releaseServer serves files under /vault/<version>/ as the release site does,
// 404 for anything else, and records the names asked for.
type releaseServer struct {
	*httptest.Server
	mu   sync.Mutex
	asks []string
}

func newReleaseServer(t *testing.T, files map[string][]byte) *releaseServer {
	t.Helper()
	s := &releaseServer{}
	prefix := "/vault/" + vaultVersion + "/"
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, prefix)
		s.mu.Lock()
		s.asks = append(s.asks, name)
		s.mu.Unlock()
		body, found := files[name]
		if !ok || !found {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *releaseServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asks)
}

// signingKey is an ed25519 key made for the test in its own gpg home.
type signingKey struct {
	home        string
	armored     string // path of the exported public key
	fingerprint string
}

// newSigningKey makes a key, or returns nil when gpg is not installed.
func newSigningKey(t *testing.T) *signingKey {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		return nil
	}
	// A short path: gpg-agent's socket lives in the home directory.
	home, err := os.MkdirTemp("", "gpg")
	if err != nil {
		t.Fatal(err)
	}
	k := &signingKey{home: home, armored: filepath.Join(home, "release.asc")}
	t.Cleanup(func() {
		// Key generation started an agent for this home; stop it.
		exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	k.gpg(t, nil, "--passphrase", "", "--quick-gen-key", "Fixture release key <fixture@example.invalid>", "ed25519", "sign", "never")
	for _, line := range strings.Split(string(k.gpg(t, nil, "--with-colons", "--list-keys")), "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			k.fingerprint = f[9]
			break
		}
	}
	if k.fingerprint == "" {
		t.Fatal("no fingerprint for the fixture key")
	}
	k.gpg(t, nil, "--armor", "--output", k.armored, "--export", k.fingerprint)
	return k
}

func (k *signingKey) gpg(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("gpg", append([]string{"--homedir", k.home, "--batch", "--pinentry-mode", "loopback"}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gpg %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// sign returns a detached binary signature of data.
func (k *signingKey) sign(t *testing.T, data []byte) []byte {
	t.Helper()
	return k.gpg(t, data, "--passphrase", "", "--detach-sign", "--output", "-")
}
