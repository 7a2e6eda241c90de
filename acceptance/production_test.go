//go:build acceptance

package acceptance

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests behind docs/production.md ("Running in production") that need no
// cluster (TestCluster covers the rest).

// TestAuditorPolicy: examples/policies/auditor.hcl lists and reads every key's
// metadata, the status and the configuration, without a secret in any
// answer; it cannot read creds or change anything.
func TestAuditorPolicy(t *testing.T) {
	f := sharedFixture(t)
	f.writePolicies(t)
	auditor := f.token(t, "auditor")
	name := uniqueName("audited")
	k := newAnthropicKey()
	f.writeKey(t, f.mount, name, "anthropic", k, "rotation_period=720h")
	keys := f.mount + "/keys/"

	if names := f.v.list(t, auditor, keys); !slices.Contains(names, name) {
		t.Errorf("the auditor's list of %s lacks %s: %v", keys, name, names)
	}
	for _, path := range []string{keys + name, f.mount + "/status", f.mount + "/config"} {
		out := f.v.vault(t, as(auditor).ok(), "read", "-format=json", path).Stdout
		if strings.Contains(out, k) || strings.Contains(out, f.emu.token) {
			t.Errorf("the auditor's read of %s shows a secret", path)
		}
	}
	if d := f.v.readData(t, auditor, keys+name); str(d, "key_hint") != hint(k) || str(d, "uuid") == "" {
		t.Errorf("the auditor's read of %s: %v", name, d)
	}

	before := f.snapshot(t, f.mount, f.emu)
	for what, args := range map[string][]string{
		"read creds":   {"read", f.mount + "/creds/" + name},
		"update a key": {"write", keys + name, "description=audited"},
		"rotate a key": {"write", keys + name + "/rotate", "api_key=" + newAnthropicKey()},
		"stage a key":  {"write", keys + name, "next_api_key=" + newAnthropicKey()},
		"create a key": {"write", keys + uniqueName("auditor-made"), "provider=anthropic", "api_key=" + newAnthropicKey()},
		"delete a key": {"delete", keys + name},
		"rename a key": {"write", f.mount + "/rename/" + name, "new_name=" + uniqueName("auditor-renamed")},
		"write config": {"write", f.mount + "/config", "request_timeout=45s"},
	} {
		t.Run(what, func(t *testing.T) { assertDenied(t, f.v.vault(t, as(auditor), args...)) })
	}
	f.assertUnchanged(t, before, f.mount, f.emu)
}

// TestBackupRestore: a raft snapshot holds config, keys and the WAL; restoring
// an older one brings back the keys as they were then, while the platform
// keeps what happened since:
//   - a key rotated by hand after the snapshot reads its old version and
//     secret again, and the platform holds the newer secret; rotating it
//     again puts Vault and the platform back in line;
//   - a key whose staged successor was promoted after the snapshot has it
//     staged and due again, and the scheduler promotes it again: same
//     secret, so the platform does not change.
func TestBackupRestore(t *testing.T) {
	v := startRaftVault(t)
	root := v.rootToken
	v.vault(t, as(root).ok(), "plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion,
		"-env="+testTick, "-env="+testMinPeriod, "secret", pluginName)
	e := newEmulator(t)
	mount := "gradient"
	if err := v.mountPlugin(t, mount, e); err != nil {
		t.Fatal(err)
	}
	f := &fixture{v: v, emu: e, mount: mount, root: root}
	manual := &clusterKey{name: uniqueName("restored-manual"), provider: "anthropic", first: newAnthropicKey(), next: newAnthropicKey()}
	staged := &clusterKey{name: uniqueName("restored-staged"), provider: "openai", first: newOpenAIKey(), next: newOpenAIKey()}
	for _, k := range []*clusterKey{manual, staged} {
		k.uuid = str(f.writeKey(t, mount, k.name, k.provider, k.first), "uuid")
	}
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+staged.name, "rotation_period=6s", "next_api_key="+staged.next)

	snapshot := filepath.Join(t.TempDir(), "vault.snap")
	v.vault(t, as(root).ok(), "operator", "raft", "snapshot", "save", snapshot)

	// After the snapshot: a manual rotation, and the scheduled one.
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+manual.name+"/rotate", "api_key="+manual.next)
	onPlatform := func(k *clusterKey, secret string) func() bool {
		return func() bool { pk := e.key(k.provider, k.uuid); return pk != nil && pk.Secret == secret }
	}
	eventually(t, 30*time.Second, "the scheduled rotation", onPlatform(staged, staged.next))
	firstPromotion := v.readData(t, root, mount+"/keys/"+staged.name)
	if num(firstPromotion, "version") != 2 {
		t.Fatalf("%s after its rotation: %v", staged.name, firstPromotion)
	}

	v.vault(t, as(root).ok(), "operator", "raft", "snapshot", "restore", snapshot)
	if err := v.waitHealth(200, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	// The manually rotated key is back to its old version and secret; the
	// platform keeps the newer one.
	eventually(t, 30*time.Second, "the restored Vault to answer with the snapshot's keys", func() bool {
		r := v.vault(t, as(root), "read", "-format=json", mount+"/keys/"+manual.name)
		return r.Code == 0 && num(decodeData(t, r.Stdout), "version") == 1
	})
	if d := v.readData(t, root, mount+"/creds/"+manual.name); str(d, "api_key") != manual.first {
		t.Errorf("creds of %s after the restore are not the snapshot's key", manual.name)
	}
	if !onPlatform(manual, manual.next)() {
		t.Errorf("the platform no longer holds the key rotated after the snapshot")
	}
	// The scheduled rotation is due again with the same staged key: promoted
	// again, without a change on the platform.
	eventually(t, 30*time.Second, "the restored staged key promoted again", func() bool {
		d := v.readData(t, root, mount+"/keys/"+staged.name)
		return num(d, "version") == 2 && str(d, "key_hint") == hint(staged.next) &&
			str(d, "last_vault_rotation") != str(firstPromotion, "last_vault_rotation")
	})
	if n := e.SecretChanges()[staged.uuid]; n != 1 {
		t.Errorf("%s: %d secret changes on the platform, want 1", staged.name, n)
	}

	// The way back for the manual one: rotate again.
	third := newAnthropicKey()
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+manual.name+"/rotate", "api_key="+third)
	if d := v.readData(t, root, mount+"/creds/"+manual.name); str(d, "api_key") != third || num(d, "version") != 2 || !onPlatform(manual, third)() {
		t.Errorf("after rotating %s again: version %d, Vault and platform in line: %v", manual.name, num(d, "version"), onPlatform(manual, third)())
	}
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+staged.name, "rotation_period=0")
}
