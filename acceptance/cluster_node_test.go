//go:build acceptance

package acceptance

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// A Vault cluster of three servers on 127.0.0.1 with integrated (raft)
// storage, for TestCluster. Each node has its own ports and data directory;
// the first is initialized (one Shamir share) and the others join it with
// `vault operator raft join` and are unsealed with the same key.

// clusterPerformanceMultiplier scales raft's timeouts (Vault's default is 5,
// for slow networks). 2 keeps a failover within a few seconds and still
// leaves room for a loaded two-core machine to miss a heartbeat or two.
const clusterPerformanceMultiplier = 2

type cluster struct {
	nodes []*vaultServer
	// pluginDir is every node's plugin_directory: a copy of the plugin
	// binary, and later builds of other versions (upgrade tests).
	pluginDir string
	unsealKey string
	rootToken string
	auditPath string

	pids *pidOwners
}

// startCluster starts n raft nodes, initializes and unseals the first, and
// joins and unseals the others as standbys.
func startCluster(t *testing.T, n int) *cluster {
	t.Helper()
	dir := filepath.Join(suiteDir, uniqueName("cluster"))
	c := &cluster{pluginDir: filepath.Join(dir, "plugins")}
	c.pids = newPIDOwners(c)
	if err := os.MkdirAll(c.pluginDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(pluginPath, filepath.Join(c.pluginDir, pluginName)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		c.nodes = append(c.nodes, newClusterNode(t, dir, c.pluginDir, i))
	}
	// All processes start at once; each then waits for its own turn.
	for _, s := range c.nodes {
		if err := s.start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.stop)
	}
	t.Cleanup(c.pids.stop)
	go c.pids.watch()
	for _, s := range c.nodes {
		if err := s.waitHealth(501, 60*time.Second); err != nil { // not initialized
			t.Fatal(err)
		}
	}

	first := c.nodes[0]
	out := first.vault(t, cliOpts{}.ok(), "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json").Stdout
	var init struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &init); err != nil || len(init.Keys) != 1 || init.RootToken == "" {
		t.Fatalf("operator init: %v", err)
	}
	c.unsealKey, c.rootToken = mustNotLeak(init.Keys[0]), mustNotLeak(init.RootToken)
	for _, s := range c.nodes {
		s.unsealKey, s.rootToken = c.unsealKey, c.rootToken
	}
	first.unseal(t) // waits for 200: active
	// A node joins as a non-voter; autopilot makes it a voter once it has
	// been healthy this long (10 s by default). Until then the cluster has
	// one voter and cannot survive losing it.
	first.vault(t, as(c.rootToken).ok(), "operator", "raft", "autopilot", "set-config", "-server-stabilization-time=2s")

	for _, s := range c.nodes[1:] {
		s.vault(t, cliOpts{}.ok(), "operator", "raft", "join", first.addr)
		c.unsealStandby(t, s)
	}
	c.waitVoters(t, first, n)

	// One audit device for the cluster: the active node writes it, and
	// after a failover the new active appends to the same file.
	c.auditPath = first.auditPath
	first.vault(t, as(c.rootToken).ok(), "audit", "enable", "file", "file_path="+c.auditPath)
	return c
}

func newClusterNode(t *testing.T, clusterDir, pluginDir string, i int) *vaultServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	clusterPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("node%d", i)
	dir := filepath.Join(clusterDir, name)
	for _, d := range []string{filepath.Join(dir, "raft"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`storage "raft" {
  path                   = %q
  node_id                = %q
  performance_multiplier = %d
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "https://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
ui               = false
log_level        = "debug"
`, filepath.Join(dir, "raft"), name, clusterPerformanceMultiplier, port, clusterPort, port, clusterPort, pluginDir)
	configPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return &vaultServer{
		name:      name,
		dir:       dir,
		addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
		args:      []string{"server", "-config=" + configPath},
		logPath:   filepath.Join(dir, "vault.log"),
		auditPath: filepath.Join(clusterDir, "audit.log"), // one file for the cluster
	}
}

// unsealStandby unseals a node that joined (or rejoins) the cluster and waits
// until it is an unsealed standby (sys/health 429).
func (c *cluster) unsealStandby(t *testing.T, s *vaultServer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := s.vault(t, cliOpts{}, "operator", "unseal", c.unsealKey)
		if r.Code == 0 {
			break
		}
		// A joining node may not be ready for its key yet.
		if time.Now().After(deadline) {
			t.Fatalf("unsealing %s:\n%s", s.name, r)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := s.waitHealth(429, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	// A standby answers 429 before it has found the active node, and
	// until then it can neither forward nor redirect.
	deadline = time.Now().Add(60 * time.Second)
	for {
		leader := leaderOf(s)
		if leader != "" && leader != s.addr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not found the active node after 60s (sys/leader: %q)", s.name, leader)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// leaderOf is the active node's address as s knows it from sys/leader, ""
// when it does not know one.
func leaderOf(s *vaultServer) string {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(s.addr + "/v1/sys/leader")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var l struct {
		LeaderAddress string `json:"leader_address"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&l) != nil {
		return ""
	}
	return l.LeaderAddress
}

// waitVoters polls until s lists n raft peers, all voters.
func (c *cluster) waitVoters(t *testing.T, s *vaultServer, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		peers := c.peers(t, s)
		voters := 0
		for _, p := range peers {
			if strings.HasSuffix(p, "voter=true") {
				voters++
			}
		}
		if len(peers) == n && voters == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lists raft peers %v after 60s; want %d voters", s.name, peers, n)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// peers lists the raft peers as node/state/voter, as s sees them.
func (c *cluster) peers(t *testing.T, s *vaultServer) []string {
	t.Helper()
	out := s.vault(t, as(c.rootToken).ok(), "operator", "raft", "list-peers", "-format=json").Stdout
	var resp struct {
		Data struct {
			Config struct {
				Servers []struct {
					NodeID string `json:"node_id"`
					Leader bool   `json:"leader"`
					Voter  bool   `json:"voter"`
				} `json:"servers"`
			} `json:"config"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("list-peers: %v\n%s", err, out)
	}
	var peers []string
	for _, p := range resp.Data.Config.Servers {
		state := "follower"
		if p.Leader {
			state = "leader"
		}
		peers = append(peers, fmt.Sprintf("%s/%s/voter=%v", p.NodeID, state, p.Voter))
	}
	return peers
}

// health is a node's sys/health status code: 200 active, 429 standby, 503
// sealed, 501 not initialized; 0 when it does not answer.
func health(s *vaultServer) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(s.addr + "/v1/sys/health")
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// active returns the one node that answers as active, with every other
// running node a standby; nil while that is not so.
func (c *cluster) active(except ...*vaultServer) (*vaultServer, []*vaultServer) {
	var act *vaultServer
	var standbys []*vaultServer
	for _, s := range c.nodes {
		if s.exited() || containsNode(except, s) {
			continue
		}
		switch health(s) {
		case 200:
			if act != nil {
				return nil, nil
			}
			act = s
		case 429:
			standbys = append(standbys, s)
		default:
			return nil, nil
		}
	}
	if act == nil {
		return nil, nil
	}
	for _, sb := range standbys {
		if leaderOf(sb) != act.addr { // not yet able to forward to it
			return nil, nil
		}
	}
	return act, standbys
}

// waitActive polls until exactly one running node is active and the rest
// are standbys, and returns them.
func (c *cluster) waitActive(t *testing.T, timeout time.Duration) (*vaultServer, []*vaultServer) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if act, standbys := c.active(); act != nil {
			return act, standbys
		}
		if time.Now().After(deadline) {
			var states []string
			for _, s := range c.nodes {
				states = append(states, fmt.Sprintf("%s=%d", s.name, health(s)))
			}
			t.Fatalf("no single active node after %s: %s", timeout, strings.Join(states, " "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func containsNode(list []*vaultServer, s *vaultServer) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pluginPIDs lists node s's plugin processes: its children that run a
// binary from the cluster's plugin directory, whatever its version.
func (c *cluster) pluginPIDs(s *vaultServer) []int {
	pid := s.pid()
	if pid == 0 {
		return nil
	}
	var out []int
	for _, child := range childPIDs(pid) {
		if exe := processExe(child); exe != "" && filepath.Dir(exe) == c.pluginDir {
			out = append(out, child)
		}
	}
	return out
}

// crash kills the node the way a power cut would: SIGKILL to Vault and its
// plugin processes at once (they share its process group), nothing flushed.
// It returns the pids of the plugin processes that died with it.
func (c *cluster) crash(t *testing.T, s *vaultServer) []int {
	t.Helper()
	plugins := c.pluginPIDs(s)
	c.pids.scan() // they are about to be gone from /proc
	s.mu.Lock()
	cmd, done, f, reaper := s.cmd, s.done, s.logF, s.reaper
	s.cmd, s.logF, s.reaper = nil, nil, nil
	s.mu.Unlock()
	if cmd == nil {
		t.Fatalf("%s is not running", s.name)
	}
	killGroup(cmd.Process.Pid)
	for _, p := range plugins { // in case one left the group
		_ = killProcess(p)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s (pid %d) survived SIGKILL", s.name, cmd.Process.Pid)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range plugins {
		for processAlive(p) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if processAlive(p) {
			t.Fatalf("plugin process %d of %s survived SIGKILL", p, s.name)
		}
	}
	if reaper != nil {
		_ = reaper.Process.Kill()
		_ = reaper.Wait()
	}
	if f != nil {
		_ = f.Close()
	}
	return plugins
}

// rejoin starts a crashed node again on its own data directory and unseals
// it; raft already knows it, so it comes back as a standby.
func (c *cluster) rejoin(t *testing.T, s *vaultServer) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	if err := s.waitHealth(503, 60*time.Second); err != nil { // sealed
		t.Fatal(err)
	}
	c.unsealStandby(t, s)
}

// cli runs the vault CLI against node s, refusing redirects: a standby
// that answered with a redirect to the active node instead of forwarding
// the request would fail the command with "Code: 307". So a command that
// succeeds against a standby was forwarded by it.
func (s *vaultServer) cli(t testing.TB, o cliOpts, args ...string) cliResult {
	if t != nil {
		t.Helper()
	}
	return s.vault(t, o.forwardedOnly(), args...)
}

// redirectsWithoutForwarding sends a request to s as a client that asks not
// to be forwarded (X-Vault-No-Request-Forwarding) and follows no redirect,
// and returns the status and Location: a standby answers 307 to the active
// node's api_addr, the active node serves the request.
func redirectsWithoutForwarding(t *testing.T, s *vaultServer, token, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("LIST", s.addr+"/v1/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", token)
	req.Header.Set("X-Vault-No-Request-Forwarding", "true")
	client := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Location")
}

// pidOwners remembers which node each plugin process belonged to. Plugin
// processes are children of their Vault server; once one is gone /proc can
// no longer say whose it was, so a watcher records them while they run.
type pidOwners struct {
	c      *cluster
	mu     sync.Mutex
	owner  map[int]string
	exe    map[int]string
	stopCh chan struct{}
	once   sync.Once
}

func newPIDOwners(c *cluster) *pidOwners {
	return &pidOwners{c: c, owner: map[int]string{}, exe: map[int]string{}, stopCh: make(chan struct{})}
}

func (p *pidOwners) watch() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		p.scan()
		select {
		case <-p.stopCh:
			return
		case <-t.C:
		}
	}
}

func (p *pidOwners) scan() {
	for _, s := range p.c.nodes {
		for _, pid := range p.c.pluginPIDs(s) {
			exe := processExe(pid)
			p.mu.Lock()
			p.owner[pid] = s.name
			if exe != "" {
				p.exe[pid] = exe
			}
			p.mu.Unlock()
		}
	}
}

// exeOf is the binary plugin process pid ran.
func (p *pidOwners) exeOf(pid int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exe[pid]
}

func (p *pidOwners) stop() { p.once.Do(func() { close(p.stopCh) }) }

// of returns the node whose plugin process pid is, "" if none was seen.
func (p *pidOwners) of(pid int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.owner[pid]
}

// byNode lists the plugin pids seen under node.
func (p *pidOwners) byNode(node string) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int
	for pid, n := range p.owner {
		if n == node {
			out = append(out, pid)
		}
	}
	return out
}

// readAll reads every path on every node, the nodes in parallel (each read
// is a vault CLI process; one after the other they add up), with redirects
// off so each answer comes through the node asked. It returns the data by
// node name and path.
func readAll(t *testing.T, nodes []*vaultServer, token string, paths ...string) map[string]map[string]map[string]any {
	t.Helper()
	type result struct {
		node string
		data map[string]map[string]any
		err  error
	}
	results := make(chan result, len(nodes))
	for _, s := range nodes {
		go func() {
			res := result{node: s.name, data: map[string]map[string]any{}}
			for _, p := range paths {
				r := s.cli(nil, as(token), "read", "-format=json", p)
				var secret struct {
					Data map[string]any `json:"data"`
				}
				if r.Code != 0 {
					res.err = fmt.Errorf("reading %s on %s:\n%s", p, s.name, r)
					break
				}
				if err := json.Unmarshal([]byte(r.Stdout), &secret); err != nil {
					res.err = fmt.Errorf("reading %s on %s: %v", p, s.name, err)
					break
				}
				res.data[p] = secret.Data
			}
			results <- res
		}()
	}
	out := map[string]map[string]map[string]any{}
	var errs []string
	for range nodes {
		r := <-results
		out[r.node] = r.data
		if r.err != nil {
			errs = append(errs, r.err.Error())
		}
	}
	if len(errs) > 0 {
		t.Fatal(strings.Join(errs, "\n"))
	}
	return out
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// buildPlugin builds the plugin with version stamped in, into the cluster's
// plugin directory as <name>_<version>, as an operator installs a new
// release next to the old one, and returns the file name and its sha256.
// It is a test build, as `make build-test` makes the first one: the cluster
// registers it with the GRADIENT_TEST_* tuning.
func (c *cluster) buildPlugin(t *testing.T, version string) (string, string) {
	t.Helper()
	name := pluginName + "_" + version
	out := filepath.Join(c.pluginDir, name)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building a second plugin version needs the go command: %v", err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-tags", testBuildTag,
		"-ldflags", "-X github.com/gradient-vault/vault-plugin-secrets-gradient/backend.Version="+version,
		"-o", out, "./cmd/"+pluginName)
	cmd.Dir = ".." // the module root; go test runs in the package directory
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", version, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return name, hex.EncodeToString(sum[:])
}
