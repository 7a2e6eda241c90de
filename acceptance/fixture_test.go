//go:build acceptance

package acceptance

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// fixture is a Vault and an emulator, with the plugin mounted. The shared
// fixture is one dev Vault and one emulator for the tests that can share them
// (unique key names per test; nothing here resets the emulator).
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
	r := s.vault(t, as(s.rootToken), "secrets", "enable", "-path="+mount,
		"-plugin-version="+pluginVersion, pluginName)
	if r.Code != 0 {
		return fmt.Errorf("enabling the plugin at %s: %s", mount, r.Stderr)
	}
	if e == nil {
		return nil
	}
	r = s.vault(t, as(s.rootToken).withStdin(e.token), "write", mount+"/config", "token=-",
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
	t.Cleanup(func() { f.v.vault(nil, as(f.root), "secrets", "disable", mount) })
	return mount
}

// writeKey stores a key through the CLI and returns what `read` shows.
func (f *fixture) writeKey(t testing.TB, mount, name, provider, apiKey string, extra ...string) map[string]any {
	t.Helper()
	args := append([]string{"write", mount + "/keys/" + name, "provider=" + provider, "api_key=" + apiKey}, extra...)
	f.v.vault(t, as(f.root).ok(), args...)
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
