//go:build acceptance

package acceptance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

const pluginName = "vault-plugin-secrets-gradient"

// Set by TestMain from the environment.
var (
	vaultBin      string
	pluginDir     string
	pluginPath    string
	pluginVersion string
	pluginSHA256  string
	// suiteDir holds every log the suite produces: server logs, audit logs
	// and the CLI's error output. The secret-hygiene check scans all of it.
	suiteDir string
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	if err := loadEnv(); err != nil {
		fmt.Fprintf(os.Stderr, "\nacceptance: %v\n\n"+
			"Run the suite with `make test-acceptance` (or `make test`): it builds the plugin,\n"+
			"gets a Vault binary with scripts/get-vault.sh and sets the environment. To run it\n"+
			"by hand, set VAULT_BIN to a vault binary (1.15 or later), GRADIENT_PLUGIN_DIR to the\n"+
			"directory holding %s and GRADIENT_PLUGIN_VERSION to its version.\n\n", err, pluginName)
		return 1
	}
	dir, err := os.MkdirTemp("", "gradient-acceptance-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: %v\n", err)
		return 1
	}
	suiteDir = dir

	code := m.Run()

	stopShared()
	stopAllServers()
	if leaks := scanForSecrets(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "\nFAIL: secret hygiene: plaintext secrets found after the suite:\n  %s\n",
			strings.Join(leaks, "\n  "))
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "acceptance: secret hygiene: %d secrets absent from %d log files\n",
			secretCount(), len(logFiles()))
	}
	if code == 0 {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "acceptance: logs kept in %s\n", dir)
	}
	return code
}

func loadEnv() error {
	vaultBin = os.Getenv("VAULT_BIN")
	if vaultBin == "" {
		return errors.New("VAULT_BIN is not set")
	}
	out, err := exec.Command(vaultBin, "version").Output()
	if err != nil {
		return fmt.Errorf("VAULT_BIN=%s does not run: %v", vaultBin, err)
	}
	if !strings.HasPrefix(string(out), "Vault v") {
		return fmt.Errorf("VAULT_BIN=%s is not Vault: %q", vaultBin, out)
	}
	pluginDir = os.Getenv("GRADIENT_PLUGIN_DIR")
	if pluginDir == "" {
		return errors.New("GRADIENT_PLUGIN_DIR is not set")
	}
	if pluginDir, err = filepath.Abs(pluginDir); err != nil {
		return err
	}
	pluginPath = filepath.Join(pluginDir, pluginName)
	st, err := os.Stat(pluginPath)
	if err != nil || st.Mode()&0o111 == 0 {
		return fmt.Errorf("no executable plugin at %s (build it with `make build`)", pluginPath)
	}
	pluginVersion = os.Getenv("GRADIENT_PLUGIN_VERSION")
	if pluginVersion == "" {
		pluginVersion = "v0.1.0"
	}
	b, err := os.ReadFile(pluginPath)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	pluginSHA256 = hex.EncodeToString(sum[:])
	return nil
}

// ---------------------------------------------------------------------------
// Secrets the suite uses, and the scan for them.

var secrets = struct {
	sync.Mutex
	set map[string]bool
}{set: map[string]bool{}}

// mustNotLeak records a secret that must never appear in a log or in the
// CLI's error output.
func mustNotLeak(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.set[s] = true
	return s
}

func secretCount() int {
	secrets.Lock()
	defer secrets.Unlock()
	return len(secrets.set)
}

const (
	alnum    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerAln = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[j.Int64()]
	}
	return string(b)
}

// Fresh keys of the shape the emulator's providers accept. Each is recorded
// as a secret.
func newAnthropicKey() string { return mustNotLeak("sk-ant-api03-" + randomString(alnum, 40)) }
func newOpenAIKey() string    { return mustNotLeak("sk-proj-" + randomString(alnum, 40)) }

func newKey(provider string) string {
	if provider == "openai" {
		return newOpenAIKey()
	}
	return newAnthropicKey()
}

// uniqueName returns prefix plus a random suffix, a valid key name.
func uniqueName(prefix string) string { return prefix + "-" + randomString(lowerAln, 6) }

var logRegistry = struct {
	sync.Mutex
	files []string
}{}

func registerLog(path string) {
	logRegistry.Lock()
	defer logRegistry.Unlock()
	for _, f := range logRegistry.files {
		if f == path {
			return
		}
	}
	logRegistry.files = append(logRegistry.files, path)
}

func logFiles() []string {
	logRegistry.Lock()
	defer logRegistry.Unlock()
	return append([]string(nil), logRegistry.files...)
}

// scanForSecrets looks for every recorded secret, and for long fragments of
// it, in every registered log. It returns one line per finding.
func scanForSecrets() []string {
	secrets.Lock()
	var list []string
	for s := range secrets.set {
		list = append(list, s)
	}
	secrets.Unlock()
	sort.Strings(list)
	return scanFiles(logFiles(), list)
}

func scanFiles(files, secrets []string) []string {
	var leaks []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				leaks = append(leaks, fmt.Sprintf("%s: cannot read: %v", f, err))
			}
			continue
		}
		text := string(b)
		for _, s := range secrets {
			for _, frag := range fragments(s) {
				if strings.Contains(text, frag) {
					leaks = append(leaks, fmt.Sprintf("%s contains %q (from secret %s...)", f, frag, s[:min(len(s), 10)]))
					break
				}
			}
		}
	}
	return leaks
}

// fragments are the whole secret and, for long ones, the first and last 12
// characters of its random part: enough to catch a truncated or masked echo.
func fragments(s string) []string {
	out := []string{s}
	body := s
	for _, p := range []string{"sk-ant-api03-", "sk-ant-admin01-", "sk-proj-", "sk-admin-", "sk-"} {
		if strings.HasPrefix(s, p) {
			body = s[len(p):]
			break
		}
	}
	if len(body) >= 24 {
		out = append(out, body[:12], body[len(body)-12:])
	}
	return out
}

// ---------------------------------------------------------------------------
// Ports, processes.

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// childPIDs lists the processes whose parent is pid (Linux /proc).
func childPIDs(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, child)
		}
	}
	return out
}

// processExe is the binary a process runs, "" when it is gone.
func processExe(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && processExe(pid) != ""
}

// cleanEnv is the test's environment without any VAULT_ variable, so a
// developer's own Vault settings never leak into the suite.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VAULT_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// ---------------------------------------------------------------------------
// Vault servers.

type vaultServer struct {
	name      string
	dir       string
	addr      string // http://127.0.0.1:PORT
	rootToken string
	args      []string // vault server arguments, reused on restart
	logPath   string
	auditPath string
	unsealKey string // raft servers only

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{}
	logF   *os.File
	reaper *exec.Cmd
}

var servers = struct {
	sync.Mutex
	list []*vaultServer
}{}

func stopAllServers() {
	servers.Lock()
	list := append([]*vaultServer(nil), servers.list...)
	servers.Unlock()
	for _, s := range list {
		s.stop()
	}
}

// startDevVault starts `vault server -dev` on a free port with the plugin
// directory, debug logging to a file and a file audit device.
func startDevVault(name string) (*vaultServer, error) {
	var err error
	// Another process can take the free port before Vault binds it: retry.
	for attempt := 1; attempt <= 3; attempt++ {
		var s *vaultServer
		if s, err = startDevVaultOnce(name, attempt); err == nil {
			return s, nil
		}
	}
	return nil, err
}

func startDevVaultOnce(name string, attempt int) (*vaultServer, error) {
	if attempt > 1 {
		name = fmt.Sprintf("%s-%d", name, attempt)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(suiteDir, name)
	if err := os.MkdirAll(filepath.Join(dir, "home"), 0o700); err != nil {
		return nil, err
	}
	s := &vaultServer{
		name:      name,
		dir:       dir,
		addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
		rootToken: "root-" + randomString(lowerAln, 16),
		logPath:   filepath.Join(dir, "vault.log"),
		auditPath: filepath.Join(dir, "audit.log"),
	}
	s.args = []string{"server", "-dev", "-dev-no-store-token",
		"-dev-root-token-id=" + s.rootToken,
		"-dev-listen-address=" + fmt.Sprintf("127.0.0.1:%d", port),
		"-dev-plugin-dir=" + pluginDir,
		"-log-level=debug",
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	if err := s.waitHealth(http.StatusOK, 60*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.enableAudit(); err != nil {
		s.stop()
		return nil, err
	}
	if err := s.registerPlugin(); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *vaultServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	registerLog(s.logPath)
	registerLog(s.auditPath)
	cmd := exec.Command(vaultBin, s.args...)
	cmd.Dir = s.dir
	cmd.Env = cleanEnv("HOME=" + filepath.Join(s.dir, "home"))
	cmd.Stdout = f
	cmd.Stderr = f
	// Vault leads its own process group, which its plugin processes join.
	// If the test binary dies (timeout panic, SIGKILL), Vault dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting vault: %w", err)
	}
	// Plugins outlive a killed Vault, so a reaper in a group of its own
	// kills Vault's whole group if the test binary goes away first.
	reaper := exec.Command("sh", "-c", fmt.Sprintf(
		"while kill -0 %d 2>/dev/null; do sleep 1; done; kill -KILL -%d 2>/dev/null", os.Getpid(), cmd.Process.Pid))
	reaper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := reaper.Start(); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		f.Close()
		return fmt.Errorf("starting the reaper: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.logF, s.reaper = cmd, done, f, reaper
	servers.Lock()
	if !slices.Contains(servers.list, s) {
		servers.list = append(servers.list, s)
	}
	servers.Unlock()
	return nil
}

func (s *vaultServer) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *vaultServer) exited() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// pluginPIDs lists this server's plugin processes running our binary.
func (s *vaultServer) pluginPIDs() []int {
	pid := s.pid()
	if pid == 0 {
		return nil
	}
	var out []int
	for _, c := range childPIDs(pid) {
		if processExe(c) == pluginPath {
			out = append(out, c)
		}
	}
	return out
}

// stop shuts the server down gracefully (SIGTERM, then SIGKILL after 20s)
// and makes sure none of its plugin processes outlives it.
func (s *vaultServer) stop() {
	s.mu.Lock()
	cmd, done, f, reaper := s.cmd, s.done, s.logF, s.reaper
	s.cmd, s.logF, s.reaper = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	children := childPIDs(cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	// Whatever is left of Vault's process group (plugins) goes too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	for _, c := range children {
		if processExe(c) == pluginPath {
			_ = syscall.Kill(c, syscall.SIGKILL)
		}
	}
	if reaper != nil {
		_ = reaper.Process.Kill()
		_ = reaper.Wait()
	}
	if f != nil {
		_ = f.Close()
	}
}

// waitHealth polls sys/health until it answers want (200 active, 501 not
// initialized, 503 sealed) or the timeout passes or the server exits.
func (s *vaultServer) waitHealth(want int, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		if s.exited() {
			return fmt.Errorf("vault %s exited while starting; log %s:\n%s", s.name, s.logPath, tailFile(s.logPath, 30))
		}
		resp, err := client.Get(s.addr + "/v1/sys/health")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("vault %s not healthy (want %d) after %s: %s; log %s:\n%s",
		s.name, want, timeout, last, s.logPath, tailFile(s.logPath, 30))
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *vaultServer) enableAudit() error {
	r := s.run(nil, s.rootToken, "", "audit", "enable", "file", "file_path="+s.auditPath)
	if r.Code != 0 {
		return fmt.Errorf("enabling the audit device: %s", r.Stderr)
	}
	return nil
}

// registerPlugin registers the plugin by sha256 with its version.
func (s *vaultServer) registerPlugin() error {
	r := s.run(nil, s.rootToken, "", "plugin", "register",
		"-sha256="+pluginSHA256, "-version="+pluginVersion, "secret", pluginName)
	if r.Code != 0 {
		return fmt.Errorf("registering the plugin: %s", r.Stderr)
	}
	return nil
}

// ---------------------------------------------------------------------------
// The vault CLI.

type cliResult struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int
}

func (r cliResult) String() string {
	return fmt.Sprintf("vault %s\nexit %d\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

var cliLog = struct {
	sync.Mutex
	f *os.File
}{}

// recordStderr appends the CLI's error output to a file the hygiene scan reads.
func recordStderr(args []string, stderr string) {
	if stderr == "" {
		return
	}
	cliLog.Lock()
	defer cliLog.Unlock()
	if cliLog.f == nil {
		path := filepath.Join(suiteDir, "cli-stderr.log")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			panic(err)
		}
		cliLog.f = f
		registerLog(path)
	}
	fmt.Fprintf(cliLog.f, "$ vault %s\n%s\n", args[0], stderr)
}

// run executes the real vault CLI against s with token (none when empty) and
// stdin. t may be nil outside a test.
func (s *vaultServer) run(t testing.TB, token, stdin string, args ...string) cliResult {
	if t != nil {
		t.Helper()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	env := []string{"VAULT_ADDR=" + s.addr, "HOME=" + filepath.Join(s.dir, "home"), "NO_COLOR=1"}
	if token != "" {
		env = append(env, "VAULT_TOKEN="+token)
	}
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	r := cliResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.Code = exitErr.ExitCode()
	default:
		if t != nil {
			t.Fatalf("running vault %v: %v", args, err)
		}
		r.Code = -1
		r.Stderr += err.Error()
	}
	recordStderr(args, r.Stderr)
	return r
}

// vault runs the CLI with token.
func (s *vaultServer) vault(t testing.TB, token string, args ...string) cliResult {
	t.Helper()
	return s.run(t, token, "", args...)
}

// ok runs the CLI and fails the test unless it exits 0; it returns stdout.
func (s *vaultServer) ok(t testing.TB, token string, args ...string) string {
	t.Helper()
	r := s.run(t, token, "", args...)
	if r.Code != 0 {
		t.Fatalf("expected success:\n%s", r)
	}
	return r.Stdout
}

// okStdin is ok with stdin (for `api_key=-` and `token=-`).
func (s *vaultServer) okStdin(t testing.TB, token, stdin string, args ...string) string {
	t.Helper()
	r := s.run(t, token, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("expected success:\n%s", r)
	}
	return r.Stdout
}

// readData runs `vault read -format=json path` and returns its data.
func (s *vaultServer) readData(t testing.TB, token, path string) map[string]any {
	t.Helper()
	out := s.ok(t, token, "read", "-format=json", path)
	return decodeData(t, out)
}

// writeData runs `vault write -format=json path args...` and returns the
// response data (nil when the response has none).
func (s *vaultServer) writeData(t testing.TB, token, path string, args ...string) map[string]any {
	t.Helper()
	out := s.ok(t, token, append([]string{"write", "-format=json", path}, args...)...)
	if strings.TrimSpace(out) == "" {
		return nil
	}
	return decodeData(t, out)
}

func decodeData(t testing.TB, out string) map[string]any {
	t.Helper()
	var secret struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		t.Fatalf("decoding vault JSON output: %v\n%s", err, out)
	}
	return secret.Data
}

// list runs `vault list -format=json path`; an empty or missing list is nil.
func (s *vaultServer) list(t testing.TB, token, path string) []string {
	t.Helper()
	r := s.run(t, token, "", "list", "-format=json", path)
	if r.Code != 0 {
		// An empty list: exit 2 with "No value found", or with -format=json
		// an empty object and no error text.
		if r.Code == 2 && (strings.Contains(r.Stderr, "No value found") ||
			(strings.TrimSpace(r.Stderr) == "" && strings.TrimSpace(r.Stdout) == "{}")) {
			return nil
		}
		t.Fatalf("list failed:\n%s", r)
	}
	var names []string
	if err := json.Unmarshal([]byte(r.Stdout), &names); err != nil {
		t.Fatalf("decoding list output: %v\n%s", err, r.Stdout)
	}
	return names
}

// ---------------------------------------------------------------------------
// Emulators.

type emu struct {
	*emulator.Emulator
	url   string
	token string
	srv   *http.Server
	logMu sync.Mutex
	log   bytes.Buffer
}

// startEmulator serves a new emulator on a real 127.0.0.1 listener, so the
// plugin process reaches it over loopback. Limits are raised far above the
// suite's traffic: rate limiting is not what this suite tests.
func startEmulator() (*emu, error) {
	e := &emu{token: "do-token-" + randomString(alnum, 32)}
	mustNotLeak(e.token)
	e.Emulator = emulator.New(emulator.Config{
		Tokens:         []string{e.token},
		PerMinuteLimit: 1_000_000,
		PerHourLimit:   10_000_000,
		Logf: func(format string, args ...any) {
			e.logMu.Lock()
			defer e.logMu.Unlock()
			fmt.Fprintf(&e.log, format+"\n", args...)
		},
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	e.url = "http://" + l.Addr().String()
	e.srv = &http.Server{Handler: e.Emulator, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return e, nil
}

func (e *emu) close() { _ = e.srv.Close() }

// newEmulator is startEmulator for one test, closed by t.Cleanup.
func newEmulator(t testing.TB) *emu {
	t.Helper()
	e, err := startEmulator()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.close()
		if t.Failed() {
			e.logMu.Lock()
			t.Logf("emulator request log:\n%s", e.log.String())
			e.logMu.Unlock()
		}
	})
	return e
}

// platform sends a request to the emulated platform API with the DO token,
// the way a person or another tool would, and decodes the JSON answer.
func (e *emu) platform(t testing.TB, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("%s %s: decoding: %v: %s", method, path, err, b)
	}
	return out
}

// createPlatformKey adds a key directly on the platform (outside Vault).
func (e *emu) createPlatformKey(t testing.TB, provider, name, secret string) string {
	t.Helper()
	out := e.platform(t, http.MethodPost, "/v2/gen-ai/"+provider+"/keys", map[string]string{"name": name, "api_key": secret})
	info, _ := out["api_key_info"].(map[string]any)
	uuid, _ := info["uuid"].(string)
	if uuid == "" {
		t.Fatalf("platform key create returned no uuid: %v", out)
	}
	return uuid
}

// createAgent adds an agent on the platform that uses the key keyUUID.
func (e *emu) createAgent(t testing.TB, name, provider, keyUUID string) string {
	t.Helper()
	body := map[string]string{
		"name":        name,
		"instruction": "Answer questions about " + name + ".",
		"model_uuid":  "model-" + randomString(lowerAln, 8),
		"region":      "tor1",
		"project_id":  "project-" + randomString(lowerAln, 8),
	}
	if provider == "openai" {
		body["open_ai_key_uuid"] = keyUUID
	} else {
		body["anthropic_key_uuid"] = keyUUID
	}
	out := e.platform(t, http.MethodPost, "/v2/gen-ai/agents", body)
	agent, _ := out["agent"].(map[string]any)
	uuid, _ := agent["uuid"].(string)
	if uuid == "" {
		t.Fatalf("agent create returned no uuid: %v", out)
	}
	return uuid
}

func (e *emu) keys(provider string) []emulator.KeyState {
	st := e.State()
	if provider == "openai" {
		return st.OpenAIKeys
	}
	return st.AnthropicKeys
}

// key returns the platform key with uuid, or nil.
func (e *emu) key(provider, uuid string) *emulator.KeyState {
	for _, k := range e.keys(provider) {
		if k.UUID == uuid {
			k := k
			return &k
		}
	}
	return nil
}

// keysNamed returns the platform keys (any provider) called name.
func (e *emu) keysNamed(name string) []emulator.KeyState {
	var out []emulator.KeyState
	st := e.State()
	for _, k := range append(append([]emulator.KeyState(nil), st.AnthropicKeys...), st.OpenAIKeys...) {
		if k.Name == name {
			out = append(out, k)
		}
	}
	return out
}

func (e *emu) agent(uuid string) *emulator.AgentState {
	for _, a := range e.State().Agents {
		if a.UUID == uuid {
			a := a
			return &a
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// The shared fixture: one dev Vault and one emulator for the tests that can
// share them (unique key names per test; nothing here resets the emulator).

type fixture struct {
	v     *vaultServer
	emu   *emu
	mount string
	root  string
}

var shared struct {
	once sync.Once
	f    *fixture
	err  error
}

func sharedFixture(t testing.TB) *fixture {
	t.Helper()
	shared.once.Do(func() {
		shared.f, shared.err = newSharedFixture()
	})
	if shared.err != nil {
		t.Fatalf("starting the shared Vault and emulator: %v", shared.err)
	}
	return shared.f
}

func newSharedFixture() (*fixture, error) {
	e, err := startEmulator()
	if err != nil {
		return nil, err
	}
	v, err := startDevVault("shared")
	if err != nil {
		e.close()
		return nil, err
	}
	f := &fixture{v: v, emu: e, mount: "gradient", root: v.rootToken}
	if err := f.v.mountPlugin(nil, f.mount, e); err != nil {
		v.stop()
		e.close()
		return nil, err
	}
	return f, nil
}

func stopShared() {
	if shared.f != nil {
		shared.f.v.stop()
		shared.f.emu.close()
	}
}

// mountPlugin enables the plugin at mount and configures it against e.
func (s *vaultServer) mountPlugin(t testing.TB, mount string, e *emu) error {
	r := s.run(t, s.rootToken, "", "secrets", "enable", "-path="+mount,
		"-plugin-version="+pluginVersion, pluginName)
	if r.Code != 0 {
		return fmt.Errorf("enabling the plugin at %s: %s", mount, r.Stderr)
	}
	if e == nil {
		return nil
	}
	r = s.run(t, s.rootToken, e.token, "write", mount+"/config", "token=-",
		"api_url="+e.url, "anthropic_url="+e.url+"/anthropic", "openai_url="+e.url+"/openai")
	if r.Code != 0 {
		return fmt.Errorf("configuring %s: %s", mount, r.Stderr)
	}
	return nil
}

// newMount enables the plugin at a fresh path of the shared Vault, configured
// against e (or not configured when e is nil), disabled again by t.Cleanup.
func (f *fixture) newMount(t testing.TB, prefix string, e *emu) string {
	t.Helper()
	mount := uniqueName(prefix)
	if err := f.v.mountPlugin(t, mount, e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.v.run(nil, f.root, "", "secrets", "disable", mount) })
	return mount
}

// writeKey stores a key through the CLI and returns what `read` shows.
func (f *fixture) writeKey(t testing.TB, mount, name, provider, apiKey string, extra ...string) map[string]any {
	t.Helper()
	args := append([]string{"write", mount + "/keys/" + name, "provider=" + provider, "api_key=" + apiKey}, extra...)
	f.v.ok(t, f.root, args...)
	return f.v.readData(t, f.root, mount+"/keys/"+name)
}

// snapshot is what must not change when a request is refused.
type snapshot struct {
	state emulator.State
	names []string
}

func (f *fixture) snapshot(t testing.TB, mount string, e *emu) snapshot {
	t.Helper()
	return snapshot{state: e.State(), names: f.v.list(t, f.root, mount+"/keys")}
}

func (f *fixture) assertUnchanged(t testing.TB, before snapshot, mount string, e *emu) {
	t.Helper()
	after := f.snapshot(t, mount, e)
	if !reflect.DeepEqual(before.state, after.state) {
		t.Errorf("the platform changed:\nbefore: %+v\nafter:  %+v", before.state, after.state)
	}
	if !reflect.DeepEqual(before.names, after.names) {
		t.Errorf("vault list %s/keys changed:\nbefore: %v\nafter:  %v", mount, before.names, after.names)
	}
}

// ---------------------------------------------------------------------------
// Assertions on CLI results.

// assertCode checks a refused request: non-zero exit, "Code: <code>" and
// every wanted fragment in the error output.
func assertCode(t testing.TB, r cliResult, code int, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("expected HTTP %d, the command succeeded:\n%s", code, r)
		return
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("Code: %d", code)) {
		t.Errorf("expected Code: %d:\n%s", code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("expected %q in the error output:\n%s", w, r)
		}
	}
}

// assert5xx checks an upstream fault: non-zero exit and a 5xx code.
func assert5xx(t testing.TB, r cliResult, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("expected a 5xx, the command succeeded:\n%s", r)
		return
	}
	if !strings.Contains(r.Stderr, "Code: 5") {
		t.Errorf("expected Code: 5xx:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("expected %q in the error output:\n%s", w, r)
		}
	}
}

// assertNotFound checks that a read found nothing (the CLI prints "No value
// found" for an empty 404 and "Code: 404" for one with an error).
func assertNotFound(t testing.TB, r cliResult) {
	t.Helper()
	if r.Code == 0 || !(strings.Contains(r.Stderr, "No value found") || strings.Contains(r.Stderr, "Code: 404")) {
		t.Errorf("expected not found:\n%s", r)
	}
}

// assertDenied checks a request refused by policy.
func assertDenied(t testing.TB, r cliResult) {
	t.Helper()
	if r.Code == 0 || !strings.Contains(r.Stderr, "Code: 403") || !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("expected permission denied (403):\n%s", r)
	}
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func num(m map[string]any, k string) int {
	switch v := m[k].(type) {
	case float64:
		return int(v)
	case json.Number:
		n, _ := v.Int64()
		return int(n)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return -1
}
