//go:build acceptance

package acceptance

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestDrift: through the real vault CLI, changes made behind Vault's back
// (on the platform directly, as the control panel or doctl would) are found
// by `vault write -f <mount>/sync`, shown on `vault read`, repaired with
// keys/<name>/sync, and platform keys the mount does not manage are listed
// with an adopt hint and no secret. It runs on a mount and emulator of its
// own, so the counts are exact.
func TestDrift(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "drift", e)

	renamed, modified, deleted := uniqueName("renamed"), uniqueName("modified"), uniqueName("deleted")
	secrets := map[string]string{}
	uuids := map[string]string{}
	for _, name := range []string{renamed, modified, deleted} {
		secrets[name] = newAnthropicKey()
		uuids[name] = str(f.writeKey(t, mount, name, "anthropic", secrets[name]), "uuid")
	}
	e.platform(t, http.MethodPut, "/v2/gen-ai/anthropic/keys/"+uuids[renamed], map[string]string{"name": renamed + "-console"})
	e.platform(t, http.MethodPut, "/v2/gen-ai/anthropic/keys/"+uuids[modified], map[string]string{"api_key": newAnthropicKey()})
	e.platform(t, http.MethodDelete, "/v2/gen-ai/anthropic/keys/"+uuids[deleted], nil)
	stranger := e.createPlatformKey(t, "openai", uniqueName("console-made"), newOpenAIKey())

	d := syncNow(t, f, mount)
	for field, want := range map[string]int{"in_sync": 0, "missing": 1, "renamed": 1, "modified_outside": 1, "unmanaged": 1} {
		if num(d, field) != want {
			t.Errorf("sync %s = %v, want %d (%v)", field, d[field], want, d)
		}
	}
	for name, want := range map[string]string{renamed: "renamed", modified: "modified_outside", deleted: "missing"} {
		if got := f.v.readData(t, f.root, mount+"/keys/"+name); str(got, "sync_status") != want || str(got, "last_synced") == "" {
			t.Errorf("read %s: sync_status %v last_synced %v, want %s", name, got["sync_status"], got["last_synced"], want)
		}
	}

	t.Run("platform-keys", func(t *testing.T) {
		if keys := f.v.list(t, f.root, mount+"/platform-keys"); !slices.Equal(keys, []string{stranger}) {
			t.Fatalf("platform-keys = %v, want [%s]", keys, stranger)
		}
		got := f.v.readData(t, f.root, mount+"/platform-keys/"+stranger)
		if str(got, "provider") != "openai" || !strings.Contains(str(got, "adopt_hint"), "uuid="+stranger) {
			t.Errorf("platform-keys/%s: %v", stranger, got)
		}
	})

	t.Run("repair", func(t *testing.T) {
		for _, name := range []string{renamed, modified} {
			f.v.vault(t, as(f.root).ok(), "write", "-f", mount+"/keys/"+name+"/sync")
			if pk := e.key("anthropic", uuids[name]); pk == nil || pk.Name != name || pk.Secret != secrets[name] {
				t.Errorf("platform key of %s after repair: %+v", name, pk)
			}
		}
		r := f.v.vault(t, as(f.root).ok(), "write", "-format=json", "-f", mount+"/keys/"+deleted+"/sync")
		if !strings.Contains(r.Stdout, "lost it when it was deleted") {
			t.Errorf("repair of a deleted key does not say what happened to its agents:\n%s", r)
		}
		got := f.v.readData(t, f.root, mount+"/keys/"+deleted)
		if str(got, "uuid") == uuids[deleted] || str(got, "sync_status") != "in_sync" {
			t.Errorf("read after re-create: %v", got)
		}
		if keys := e.keysNamed(deleted); len(keys) != 1 || keys[0].Secret != secrets[deleted] {
			t.Errorf("platform keys named %s: %+v", deleted, keys)
		}
		d := syncNow(t, f, mount)
		if num(d, "in_sync") != 3 || num(d, "missing")+num(d, "renamed")+num(d, "modified_outside") != 0 {
			t.Errorf("sync after the repairs: %v", d)
		}
	})

	t.Run("conflict", func(t *testing.T) {
		e.platform(t, http.MethodPut, "/v2/gen-ai/anthropic/keys/"+uuids[modified], map[string]string{"api_key": newAnthropicKey()})
		syncNow(t, f, mount)
		e.platform(t, http.MethodPut, "/v2/gen-ai/anthropic/keys/"+uuids[modified], map[string]string{"api_key": newAnthropicKey()})
		r := f.v.vault(t, as(f.root), "write", "-f", mount+"/keys/"+modified+"/sync")
		assertCode(t, r, 400, "changed since the sync", "sync")
	})
}

// syncNow runs `vault write -f <mount>/sync` and returns its data.
func syncNow(t *testing.T, f *fixture, mount string) map[string]any {
	t.Helper()
	return decodeData(t, f.v.vault(t, as(f.root).ok(), "write", "-format=json", "-f", mount+"/sync").Stdout)
}
