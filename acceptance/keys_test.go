//go:build acceptance

package acceptance

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestKeyLifecycle: write, read, list, update of the secret (same uuid,
// version+1, the platform holds the new secret), description-only update,
// creds, provider change refused, delete.
func TestKeyLifecycle(t *testing.T) {
	f := sharedFixture(t)
	for _, provider := range []string{"anthropic", "openai"} {
		t.Run(provider, func(t *testing.T) {
			name := uniqueName("life-" + provider)
			path := f.mount + "/keys/" + name
			k1 := newKey(provider)

			out := f.v.vault(t, as(f.root).ok(), "write", "-format=json", path, "provider="+provider, "api_key="+k1, "description=first key").Stdout
			if strings.Contains(out, k1) {
				t.Errorf("write output shows the key:\n%s", out)
			}
			raw := f.v.vault(t, as(f.root).ok(), "read", "-format=json", path).Stdout
			if strings.Contains(raw, k1) {
				t.Fatalf("read shows the key:\n%s", raw)
			}
			d := decodeData(t, raw)
			if _, ok := d["api_key"]; ok {
				t.Errorf("read has an api_key field: %v", d)
			}
			uuid := str(d, "uuid")
			if str(d, "name") != name || str(d, "provider") != provider || uuid == "" ||
				str(d, "description") != "first key" || num(d, "version") != 1 || str(d, "key_hint") != k1[len(k1)-4:] ||
				str(d, "created_at") == "" || str(d, "updated_at") == "" {
				t.Errorf("read after create: %v", d)
			}
			pk := f.emu.key(provider, uuid)
			if pk == nil || pk.Name != name || pk.Secret != k1 {
				t.Fatalf("platform key %s: %+v", uuid, pk)
			}

			names := f.v.list(t, f.root, f.mount+"/keys")
			if !slices.Contains(names, name) || !slices.IsSorted(names) {
				t.Errorf("list: %v (want sorted, with %s)", names, name)
			}

			// New secret through stdin: same uuid, version 2, platform updated.
			k2 := newKey(provider)
			f.v.vault(t, as(f.root).withStdin(k2).ok(), "write", path, "api_key=-")
			d2 := f.v.readData(t, f.root, path)
			if str(d2, "uuid") != uuid || num(d2, "version") != 2 || str(d2, "key_hint") != k2[len(k2)-4:] ||
				str(d2, "description") != "first key" || str(d2, "created_at") != str(d, "created_at") {
				t.Errorf("read after update: %v", d2)
			}
			if pk := f.emu.key(provider, uuid); pk == nil || pk.Secret != k2 || pk.Name != name {
				t.Errorf("platform after update: %+v", pk)
			}
			if n := len(f.emu.keysNamed(name)); n != 1 {
				t.Errorf("%d platform keys named %s, want 1", n, name)
			}

			// Description only: no new secret, same version.
			f.v.vault(t, as(f.root).ok(), "write", path, "description=second description")
			d3 := f.v.readData(t, f.root, path)
			if num(d3, "version") != 2 || str(d3, "description") != "second description" {
				t.Errorf("read after description update: %v", d3)
			}

			// Changing the provider is refused.
			other := map[string]string{"anthropic": "openai", "openai": "anthropic"}[provider]
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), "write", path, "provider="+other, "api_key="+newKey(other))
			assertCode(t, r, 400, "provider")
			f.assertUnchanged(t, before, f.mount, f.emu)

			// creds returns the current secret.
			c := f.v.readData(t, f.root, f.mount+"/creds/"+name)
			if str(c, "api_key") != k2 || str(c, "provider") != provider || str(c, "uuid") != uuid || num(c, "version") != 2 {
				t.Errorf("creds: provider=%v uuid=%v version=%v api_key matches=%v", c["provider"], c["uuid"], c["version"], str(c, "api_key") == k2)
			}

			// A key from a file with a trailing newline is stored trimmed.
			k3 := newKey(provider)
			file := filepath.Join(t.TempDir(), "key.txt")
			if err := os.WriteFile(file, []byte(k3+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			f.v.vault(t, as(f.root).ok(), "write", path, "api_key=@"+file)
			if c := f.v.readData(t, f.root, f.mount+"/creds/"+name); str(c, "api_key") != k3 || num(c, "version") != 3 {
				t.Errorf("creds after @file update: version=%v trimmed=%v", c["version"], str(c, "api_key") == k3)
			}
			if pk := f.emu.key(provider, uuid); pk == nil || pk.Secret != k3 {
				t.Errorf("platform secret after @file update is not the trimmed key")
			}

			f.v.vault(t, as(f.root).ok(), "delete", path)
			assertNotFound(t, f.v.vault(t, as(f.root), "read", path))
			assertNotFound(t, f.v.vault(t, as(f.root), "read", f.mount+"/creds/"+name))
			if pk := f.emu.key(provider, uuid); pk != nil {
				t.Errorf("platform still has the key after delete: %+v", pk)
			}
			if slices.Contains(f.v.list(t, f.root, f.mount+"/keys"), name) {
				t.Errorf("list still shows %s after delete", name)
			}
		})
	}
}

// TestDeleteKeyAlreadyGoneFromPlatform: a key deleted on the platform behind
// Vault's back still deletes cleanly from Vault (platform 404 = deleted).
func TestDeleteKeyAlreadyGoneFromPlatform(t *testing.T) {
	f := sharedFixture(t)
	name := uniqueName("gone")
	d := f.writeKey(t, f.mount, name, "openai", newOpenAIKey())
	f.emu.platform(t, http.MethodDelete, "/v2/gen-ai/openai/keys/"+str(d, "uuid"), nil)
	f.v.vault(t, as(f.root).ok(), "delete", f.mount+"/keys/"+name)
	assertNotFound(t, f.v.vault(t, as(f.root), "read", f.mount+"/keys/"+name))
}

// TestAdopt: `uuid=` takes over a key that exists on the platform, giving it
// this name and secret instead of creating a second key.
func TestAdopt(t *testing.T) {
	f := sharedFixture(t)
	legacy := uniqueName("legacy")
	oldSecret := newAnthropicKey()
	uuid := f.emu.createPlatformKey(t, "anthropic", legacy, oldSecret)
	count := len(f.emu.keys("anthropic"))

	name := uniqueName("adopted")
	k := newAnthropicKey()
	d := f.writeKey(t, f.mount, name, "anthropic", k, "uuid="+uuid)
	if str(d, "uuid") != uuid || num(d, "version") != 1 || str(d, "name") != name {
		t.Errorf("read after adopt: %v", d)
	}
	pk := f.emu.key("anthropic", uuid)
	if pk == nil || pk.Name != name || pk.Secret != k {
		t.Errorf("platform key after adopt: %+v", pk)
	}
	if n := len(f.emu.keys("anthropic")); n != count {
		t.Errorf("adopt changed the number of platform keys: %d -> %d", count, n)
	}

	t.Run("a uuid this mount already manages under another name", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+uniqueName("adopt-again"),
			"provider=anthropic", "api_key="+newAnthropicKey(), "uuid="+uuid)
		assertCode(t, r, 400, name)
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	t.Run("a uuid the platform does not have", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+uniqueName("adopt-missing"),
			"provider=anthropic", "api_key="+newAnthropicKey(), "uuid=00000000-0000-4000-8000-000000000000")
		assertCode(t, r, 400)
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	t.Run("a uuid of the other provider", func(t *testing.T) {
		ouuid := f.emu.createPlatformKey(t, "openai", uniqueName("legacy-openai"), newOpenAIKey())
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+uniqueName("adopt-cross"),
			"provider=anthropic", "api_key="+newAnthropicKey(), "uuid="+ouuid)
		assertCode(t, r, 400)
		f.assertUnchanged(t, before, f.mount, f.emu)
	})
}

// TestDuplicatePlatformName: a create whose name already exists on the
// platform is refused, naming the existing uuid and how to adopt it. It runs
// on its own mount with name_cache_ttl=0 so the key created behind Vault's
// back is seen at once.
func TestDuplicatePlatformName(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "dup", e)
	f.v.vault(t, as(f.root).ok(), "write", mount+"/config", "name_cache_ttl=0")

	for _, provider := range []string{"anthropic", "openai"} {
		t.Run(provider, func(t *testing.T) {
			name := uniqueName("dup-" + provider)
			uuid := e.createPlatformKey(t, provider, name, newKey(provider))
			before := f.snapshot(t, mount, e)
			r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+name, "provider="+provider, "api_key="+newKey(provider))
			assertCode(t, r, 400, uuid, "uuid=")
			f.assertUnchanged(t, before, mount, e)

			// Following the advice works.
			k := newKey(provider)
			d := f.writeKey(t, mount, name, provider, k, "uuid="+uuid)
			if str(d, "uuid") != uuid {
				t.Errorf("adopting after the hint: %v", d)
			}
			if got := e.keysNamed(name); len(got) != 1 || got[0].Secret != k {
				t.Errorf("platform keys named %s: %+v", name, got)
			}
		})
	}
}

// TestRename: rename/<name> (sudo) moves the key to a new name in Vault and on
// the platform, keeping uuid, version and secret.
func TestRename(t *testing.T) {
	f := sharedFixture(t)
	from, to := uniqueName("rename-from"), uniqueName("rename-to")
	k := newAnthropicKey()
	d := f.writeKey(t, f.mount, from, "anthropic", k, "description=to be renamed")

	f.v.vault(t, as(f.root).ok(), "write", f.mount+"/rename/"+from, "new_name="+to)
	assertNotFound(t, f.v.vault(t, as(f.root), "read", f.mount+"/keys/"+from))
	d2 := f.v.readData(t, f.root, f.mount+"/keys/"+to)
	for _, field := range []string{"uuid", "provider", "description", "key_hint", "created_at"} {
		if str(d2, field) != str(d, field) {
			t.Errorf("%s changed by rename: %q -> %q", field, str(d, field), str(d2, field))
		}
	}
	if num(d2, "version") != num(d, "version") || str(d2, "name") != to {
		t.Errorf("read after rename: %v", d2)
	}
	if c := f.v.readData(t, f.root, f.mount+"/creds/"+to); str(c, "api_key") != k {
		t.Errorf("creds after rename do not return the same key")
	}
	if pk := f.emu.key("anthropic", str(d, "uuid")); pk == nil || pk.Name != to || pk.Secret != k {
		t.Errorf("platform key after rename: %+v", pk)
	}
	names := f.v.list(t, f.root, f.mount+"/keys")
	if slices.Contains(names, from) || !slices.Contains(names, to) {
		t.Errorf("list after rename: %v", names)
	}

	t.Run("to an existing name", func(t *testing.T) {
		other := uniqueName("rename-other")
		f.writeKey(t, f.mount, other, "anthropic", newAnthropicKey())
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/rename/"+to, "new_name="+other)
		assertCode(t, r, 400, other)
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	t.Run("to an invalid name", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/rename/"+to, "new_name=Not_Valid")
		assertCode(t, r, 400, "name")
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	t.Run("without new_name", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/rename/"+to, "description=x")
		assertCode(t, r, 400, "new_name")
		f.assertUnchanged(t, before, f.mount, f.emu)
	})
}

// TestAnyMountPath: the plugin works the same at a nested, non-default path.
func TestAnyMountPath(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := "team/ai/" + uniqueName("providers")
	if err := f.v.mountPlugin(t, mount, e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.v.vault(nil, as(f.root), "secrets", "disable", mount) })

	name := uniqueName("elsewhere")
	k := newOpenAIKey()
	d := f.writeKey(t, mount, name, "openai", k)
	if pk := e.key("openai", str(d, "uuid")); pk == nil || pk.Name != name || pk.Secret != k {
		t.Errorf("platform key: %+v", pk)
	}
	if names := f.v.list(t, f.root, mount+"/keys"); !slices.Equal(names, []string{name}) {
		t.Errorf("list: %v", names)
	}
	if c := f.v.readData(t, f.root, mount+"/creds/"+name); str(c, "api_key") != k {
		t.Errorf("creds do not return the key")
	}
	f.v.vault(t, as(f.root).ok(), "delete", mount+"/keys/"+name)
	if n := len(e.keys("openai")); n != 0 {
		t.Errorf("%d platform keys left after delete", n)
	}
}
