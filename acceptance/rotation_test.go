//go:build acceptance

package acceptance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The rotation tests run on a dev Vault of their own, where the plugin is
// registered with the test-only tuning (`vault plugin register -env`): the
// scheduler ticks every second and rotation_period may be as short as one
// second, so a scheduled rotation happens within the test.
// The suite runs the test build of the plugin (`make build-test`: the build
// tag testBuildTag), which reads the GRADIENT_TEST_* tuning passed with
// `vault plugin register -env`; a release build reads none of it
// (backend/tuning.go).
const (
	testBuildTag  = "gradienttest"
	testTick      = "GRADIENT_TEST_ROTATION_TICK=1s"
	testMinPeriod = "GRADIENT_TEST_MIN_ROTATION_PERIOD=1s"
)

var rotationServer struct {
	once sync.Once
	v    *vaultServer
	err  error
}

func rotationVault(t *testing.T) *vaultServer {
	t.Helper()
	rotationServer.once.Do(func() {
		v, err := startDevVault("rotation")
		if err != nil {
			rotationServer.err = err
			return
		}
		r := v.vault(nil, as(v.rootToken), "plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion,
			"-env="+testTick, "-env="+testMinPeriod, "secret", pluginName)
		if r.Code != 0 {
			rotationServer.err = fmt.Errorf("registering the plugin with the test tuning: %s", r.Stderr)
			return
		}
		rotationServer.v = v
	})
	if rotationServer.err != nil {
		t.Fatalf("starting the rotation Vault: %v", rotationServer.err)
	}
	return rotationServer.v
}

// rotationMount enables the plugin at a fresh path of the rotation Vault,
// configured against e.
func rotationMount(t *testing.T, v *vaultServer, e *emu, config ...string) string {
	t.Helper()
	mount := uniqueName("rot")
	if err := v.mountPlugin(t, mount, e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.vault(nil, as(v.rootToken), "secrets", "disable", mount) })
	if len(config) > 0 {
		v.vault(t, as(v.rootToken).ok(), append([]string{"write", mount + "/config"}, config...)...)
	}
	return mount
}

// eventually polls cond every 200 ms until it holds or timeout passes, and
// returns how long it took.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return time.Since(start)
}

func hint(key string) string { return key[len(key)-4:] }

// A short period rotates a key on the emulator: its secret changes, its uuid
// does not, its agents still use it, and status counts follow.
func TestRotation_ScheduledOnTheEmulator(t *testing.T) {
	v := rotationVault(t)
	e := newEmulator(t)
	mount := rotationMount(t, v, e)
	root := v.rootToken
	name := uniqueName("sched")
	k1, k2, k3 := newAnthropicKey(), newAnthropicKey(), newAnthropicKey()

	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "provider=anthropic", "api_key="+k1)
	uuid := str(v.readData(t, root, mount+"/keys/"+name), "uuid")
	agent := e.createAgent(t, "agent-"+name, "anthropic", uuid)

	status := v.readData(t, root, mount+"/status")
	if by, _ := status["keys_by_provider"].(map[string]any); fmt.Sprint(by["anthropic"]) != "1" ||
		num(status, "rotating_next_24h") != 0 || num(status, "overdue") != 0 || str(status, "scheduler_state") != "running" {
		t.Fatalf("status before: %v", status)
	}

	// Stage the successor and set a period of 4 seconds.
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=4s", "next_api_key="+k2)
	read := v.readData(t, root, mount+"/keys/"+name)
	if str(read, "next_key_hint") != hint(k2) || str(read, "next_vault_rotation") == "" || str(read, "rotation_status") != "ok" {
		t.Fatalf("after staging: %v", read)
	}
	if status = v.readData(t, root, mount+"/status"); num(status, "rotating_next_24h") != 1 || num(status, "rotation_enabled") != 1 {
		t.Fatalf("status after staging: %v", status)
	}

	took := eventually(t, 20*time.Second, "the scheduled rotation", func() bool {
		k := e.key("anthropic", uuid)
		return k != nil && k.Secret == k2
	})
	t.Logf("scheduled rotation reached the platform %s after the period was set", took.Round(100*time.Millisecond))
	if a := e.agent(agent); a == nil || a.AnthropicKeyUUID != uuid {
		t.Fatalf("the agent no longer uses key %s: %+v", uuid, a)
	}
	if n := len(e.keysNamed(name)); n != 1 {
		t.Fatalf("%d platform keys named %s, want 1", n, name)
	}
	read = v.readData(t, root, mount+"/keys/"+name)
	if num(read, "version") != 2 || str(read, "uuid") != uuid || str(read, "previous_key_hint") != hint(k1) ||
		str(read, "key_hint") != hint(k2) || str(read, "next_key_hint") != "" {
		t.Fatalf("after the rotation: %v", read)
	}

	// Nothing staged for the next period: the key becomes overdue.
	eventually(t, 20*time.Second, "overdue in status", func() bool {
		return num(v.readData(t, root, mount+"/status"), "overdue") == 1
	})
	if s := str(v.readData(t, root, mount+"/keys/"+name), "rotation_status"); s != "overdue" {
		t.Fatalf("rotation_status = %s", s)
	}

	// Staging a key ends it at the next tick.
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "next_api_key="+k3)
	eventually(t, 20*time.Second, "the overdue key's rotation", func() bool {
		k := e.key("anthropic", uuid)
		return k != nil && k.Secret == k3
	})
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=0")
	status = v.readData(t, root, mount+"/status")
	if num(status, "overdue") != 0 || num(status, "rotation_enabled") != 0 || str(status, "scheduler_last_run") == "" {
		t.Fatalf("status after turning rotation off: %v", status)
	}
	if got := num(v.readData(t, root, mount+"/keys/"+name), "version"); got != 3 {
		t.Fatalf("version = %d, want 3", got)
	}
}

// A real Vault Agent renders a template from creds/<name> and picks up the
// new key after a manual and after a scheduled rotation, without a restart:
// renewal of its lease fails once the key rotates, and it reads again.
func TestRotation_VaultAgentFollowsRotations(t *testing.T) {
	v := rotationVault(t)
	e := newEmulator(t)
	mount := rotationMount(t, v, e, "creds_ttl=6s")
	root := v.rootToken
	name := uniqueName("agent")
	k1, k2, k3 := newAnthropicKey(), newAnthropicKey(), newAnthropicKey()
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "provider=anthropic", "api_key="+k1)

	// Every creds read is leased and renewable.
	out := v.vault(t, as(root).ok(), "read", "-format=json", mount+"/creds/"+name).Stdout
	if !strings.Contains(out, `"renewable": true`) || !strings.Contains(out, `"lease_duration": 6`) {
		t.Fatalf("creds read is not a 6 s renewable lease:\n%s", strings.ReplaceAll(out, k1, "[key]"))
	}

	dir := t.TempDir()
	rendered := filepath.Join(dir, "api-key.txt")
	agent := startAgent(t, v, dir, fmt.Sprintf(`{{ with secret "%s/creds/%s" }}{{ .Data.api_key }} v{{ .Data.version }}{{ end }}`, mount, name), rendered)
	renderedIs := func(key string, version int) func() bool {
		want := fmt.Sprintf("%s v%d", key, version)
		return func() bool {
			b, err := os.ReadFile(rendered)
			return err == nil && strings.TrimSpace(string(b)) == want
		}
	}
	eventually(t, 30*time.Second, "the first render", renderedIs(k1, 1))

	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name+"/rotate", "api_key="+k2)
	took := eventually(t, 20*time.Second, "the render after a manual rotation", renderedIs(k2, 2))
	t.Logf("Vault Agent rendered the manually rotated key %s after the rotation (lease TTL 6 s)", took.Round(100*time.Millisecond))
	// Within the lease's TTL, with a little room for process scheduling.
	if took > 6*time.Second+2*time.Second {
		t.Errorf("the agent took %s to follow a manual rotation; the lease TTL is 6 s", took)
	}

	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=3s", "next_api_key="+k3)
	took = eventually(t, 30*time.Second, "the render after a scheduled rotation", renderedIs(k3, 3))
	t.Logf("Vault Agent rendered the key rotated on schedule %s after it was staged (period 3 s)", took.Round(100*time.Millisecond))
	// The rotation comes at 3 s (+1 s tick); the lease then held ends by it.
	if took > 3*time.Second+time.Second+3*time.Second+2*time.Second {
		t.Errorf("the agent took %s to follow a scheduled rotation", took)
	}
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=0")

	if agent.ProcessState != nil || syscall.Kill(agent.Process.Pid, 0) != nil {
		t.Fatal("the agent is no longer the process that started")
	}
}

// startAgent runs `vault agent` from the same Vault binary with the root
// token, rendering contents to destination, until the test ends.
func startAgent(t *testing.T, v *vaultServer, dir, contents, destination string) *exec.Cmd {
	t.Helper()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(v.rootToken), 0o600); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`
vault {
  address = %q
}
auto_auth {
  method "token_file" {
    config = {
      token_file_path = %q
    }
  }
}
template {
  contents    = %q
  destination = %q
  perms       = "0600"
}
`, v.addr, tokenFile, contents, destination)
	configFile := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(suiteDir, "agent-"+filepath.Base(dir)+".log")
	logF, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	registerLog(logPath)
	cmd := exec.Command(vaultBin, "agent", "-config="+configFile)
	cmd.Dir = dir
	cmd.Env = cleanEnv("HOME=" + dir)
	cmd.Stdout, cmd.Stderr = logF, logF
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logF.Close()
		t.Fatalf("starting vault agent: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logF.Close()
		if t.Failed() {
			t.Logf("vault agent log:\n%s", tailFile(logPath, 40))
		}
	})
	return cmd
}

// The rotation fields, keys/<name>/rotate and status explain themselves.
func TestRotation_PathHelp(t *testing.T) {
	f := sharedFixture(t)
	cases := map[string][]string{
		"keys/example":        {"rotation_period", "rotation_schedule", "rotation_window", "disable_automated_rotation", "next_api_key"},
		"keys/example/rotate": {"name", "api_key"},
		"status":              nil,
		"config":              {"creds_ttl"},
	}
	for path, params := range cases {
		out := f.v.vault(t, as(f.root).ok(), "path-help", f.mount+"/"+path).Stdout
		if !strings.Contains(out, "## DESCRIPTION") {
			t.Errorf("%s: path-help lacks a description:\n%s", path, out)
		}
		for _, p := range params {
			if !strings.Contains(out, p) {
				t.Errorf("%s: path-help does not mention %s", path, p)
			}
		}
	}
}

// The example policies cover rotation: a team rotates and stages only its
// own keys, operators read status, consumers cannot.
func TestRotation_Policies(t *testing.T) {
	f := sharedFixture(t)
	f.writePolicies(t)
	teamA, consumer, admin := f.token(t, "team-a"), f.token(t, "consumer"), f.token(t, "gradient-admin")
	keys := f.mount + "/keys/"
	own, other := uniqueName("team-a-rot"), uniqueName("team-b-rot")
	f.writeKey(t, f.mount, own, "anthropic", newAnthropicKey())
	f.writeKey(t, f.mount, other, "anthropic", newAnthropicKey())

	f.v.vault(t, as(teamA).ok(), "write", keys+own, "rotation_period=720h", "next_api_key="+newAnthropicKey())
	f.v.vault(t, as(teamA).ok(), "write", "-f", keys+own+"/rotate")
	if got := num(f.v.readData(t, teamA, keys+own), "version"); got != 2 {
		t.Fatalf("version after team A's rotation = %d", got)
	}
	before := f.snapshot(t, f.mount, f.emu)
	assertDenied(t, f.v.vault(t, as(teamA), "write", keys+other+"/rotate", "api_key="+newAnthropicKey()))
	assertDenied(t, f.v.vault(t, as(teamA), "write", keys+other, "next_api_key="+newAnthropicKey()))
	assertDenied(t, f.v.vault(t, as(teamA), "read", f.mount+"/status"))
	assertDenied(t, f.v.vault(t, as(consumer), "read", f.mount+"/status"))
	f.assertUnchanged(t, before, f.mount, f.emu)

	if status := f.v.readData(t, admin, f.mount+"/status"); num(status, "rotation_enabled") < 1 {
		t.Fatalf("status for the admin: %v", status)
	}
}
