//go:build acceptance

package acceptance

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// vaultServer is a Vault server process the suite started: a dev server
// (startDevVault) or one on raft storage (startRaftVault).
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
	setVaultProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting vault: %w", err)
	}
	reaper, err := startReaper(cmd.Process.Pid)
	if err != nil {
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
	killGroup(cmd.Process.Pid)
	for _, c := range children {
		if processExe(c) == pluginPath {
			_ = killProcess(c)
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
	r := s.vault(nil, as(s.rootToken), "audit", "enable", "file", "file_path="+s.auditPath)
	if r.Code != 0 {
		return fmt.Errorf("enabling the audit device: %s", r.Stderr)
	}
	return nil
}

// registerPlugin registers the plugin by sha256 with its version.
func (s *vaultServer) registerPlugin() error {
	r := s.vault(nil, as(s.rootToken), "plugin", "register",
		"-sha256="+pluginSHA256, "-version="+pluginVersion, "secret", pluginName)
	if r.Code != 0 {
		return fmt.Errorf("registering the plugin: %s", r.Stderr)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
