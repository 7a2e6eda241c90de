//go:build acceptance

package acceptance

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// startRaftVault starts a Vault with integrated (raft) storage in its own
// directory, initializes it with one unseal key and unseals it.
func startRaftVault(t *testing.T) *vaultServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	clusterPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("raft")
	dir := filepath.Join(suiteDir, name)
	for _, d := range []string{filepath.Join(dir, "raft"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	config := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = "node1"
}

listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:%d"
cluster_addr     = "http://127.0.0.1:%d"
plugin_directory = %q
disable_mlock    = true
ui               = false
log_level        = "debug"
`, filepath.Join(dir, "raft"), port, clusterPort, port, clusterPort, pluginDir)
	configPath := filepath.Join(dir, "vault.hcl")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &vaultServer{
		name:      name,
		dir:       dir,
		addr:      fmt.Sprintf("http://127.0.0.1:%d", port),
		args:      []string{"server", "-config=" + configPath},
		logPath:   filepath.Join(dir, "vault.log"),
		auditPath: filepath.Join(dir, "audit.log"),
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.waitHealth(501, 60*time.Second); err != nil { // not initialized
		t.Fatal(err)
	}
	out := s.vault(t, cliOpts{}.ok(), "operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json").Stdout
	var init struct {
		Keys      []string `json:"unseal_keys_b64"`
		RootToken string   `json:"root_token"`
	}
	if err := json.Unmarshal([]byte(out), &init); err != nil || len(init.Keys) != 1 || init.RootToken == "" {
		t.Fatalf("operator init: %v", err)
	}
	s.unsealKey, s.rootToken = init.Keys[0], mustNotLeak(init.RootToken)
	s.unseal(t)
	if err := s.enableAudit(); err != nil {
		t.Fatal(err)
	}
	if err := s.registerPlugin(); err != nil {
		t.Fatal(err)
	}
	return s
}

// unseal unseals the server and waits until it is the active node.
func (s *vaultServer) unseal(t *testing.T) {
	t.Helper()
	if err := s.waitHealth(503, 60*time.Second); err != nil { // sealed
		t.Fatal(err)
	}
	if r := s.vault(t, cliOpts{}, "operator", "unseal", s.unsealKey); r.Code != 0 {
		t.Fatalf("unseal failed:\n%s", r)
	}
	if err := s.waitHealth(200, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// restart stops the server gracefully and starts it again on the same
// storage, then unseals it.
func (s *vaultServer) restart(t *testing.T) {
	t.Helper()
	s.stop()
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	s.unseal(t)
}

type keyRecord struct {
	read  map[string]any
	creds map[string]any
}

// TestDurability: keys survive the plugin process being killed with SIGKILL,
// a Vault restart and `vault plugin reload`; the platform still matches.
func TestDurability(t *testing.T) {
	if !findsPlugins {
		t.Skip("finding the plugin process to kill needs Linux /proc")
	}
	v := startRaftVault(t)
	e := newEmulator(t)
	f := &fixture{v: v, emu: e, mount: "gradient", root: v.rootToken}
	if err := v.mountPlugin(t, f.mount, e); err != nil {
		t.Fatal(err)
	}

	keys := map[string]string{ // name -> provider
		uniqueName("durable-claude"):  "anthropic",
		uniqueName("durable-gpt"):     "openai",
		uniqueName("durable-rotated"): "anthropic",
	}
	for name, provider := range keys {
		f.writeKey(t, f.mount, name, provider, newKey(provider), "description=kept across restarts")
	}
	for name, provider := range keys {
		if strings.HasPrefix(name, "durable-rotated-") {
			f.v.vault(t, as(f.root).ok(), "write", f.mount+"/keys/"+name, "api_key="+newKey(provider))
		}
	}
	record := func() map[string]keyRecord {
		out := map[string]keyRecord{}
		for name := range keys {
			out[name] = keyRecord{
				read:  v.readData(t, f.root, f.mount+"/keys/"+name),
				creds: v.readData(t, f.root, f.mount+"/creds/"+name),
			}
		}
		return out
	}
	before := record()
	names := v.list(t, f.root, f.mount+"/keys")
	platform := e.State()

	// Kill the plugin process the hard way.
	pids := v.pluginPIDs()
	if len(pids) == 0 {
		t.Fatalf("no plugin process of %s found under Vault (pid %d)", pluginPath, v.pid())
	}
	for _, pid := range pids {
		if err := killProcess(pid); err != nil {
			t.Fatalf("SIGKILL plugin %d: %v", pid, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processAlive(pid) {
			t.Fatalf("plugin %d survived SIGKILL", pid)
		}
	}

	v.restart(t)
	v.vault(t, as(f.root).ok(), "plugin", "reload", "-plugin="+pluginName)

	after := record()
	for name := range keys {
		b, a := before[name], after[name]
		if !reflect.DeepEqual(b.read, a.read) {
			t.Errorf("%s reads differently after the restart:\n before %v\n after  %v", name, b.read, a.read)
		}
		if !reflect.DeepEqual(b.creds, a.creds) {
			t.Errorf("%s creds differ after the restart (uuid %v -> %v, version %v -> %v, same key: %v)", name,
				b.creds["uuid"], a.creds["uuid"], b.creds["version"], a.creds["version"],
				str(b.creds, "api_key") == str(a.creds, "api_key"))
		}
		// The platform holds the secret Vault hands out.
		pk := e.key(keys[name], str(a.read, "uuid"))
		if pk == nil || pk.Name != name || pk.Secret != str(a.creds, "api_key") {
			t.Errorf("platform key of %s does not match Vault: %+v", name, pk)
		}
	}
	if got := v.list(t, f.root, f.mount+"/keys"); !reflect.DeepEqual(got, names) {
		t.Errorf("list after restart: %v, before: %v", got, names)
	}
	if got := e.State(); !reflect.DeepEqual(got, platform) {
		t.Errorf("the platform changed across the restart:\n before %+v\n after  %+v", platform, got)
	}

	// The restarted plugin still works end to end.
	name := uniqueName("after-restart")
	k := newOpenAIKey()
	d := f.writeKey(t, f.mount, name, "openai", k)
	if pk := e.key("openai", str(d, "uuid")); pk == nil || pk.Secret != k {
		t.Errorf("a key written after the restart is not on the platform: %+v", pk)
	}
}
