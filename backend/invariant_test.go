package backend

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
)

// assertInvariant checks a mount at rest (no request in flight, rollback
// run) against the platform, from the emulator's state and Vault's storage:
//   - every key in Vault exists on the platform under its uuid, with its
//     name and the exact secret Vault holds;
//   - every platform key has its Vault entry, except the foreign ones the
//     test made elsewhere;
//   - every agent points at a key that exists;
//   - no write-ahead log entry is left over.
func assertInvariant(t *testing.T, e *testEnv, foreign ...string) {
	t.Helper()
	ctx := context.Background()
	platform := map[string]struct{ name, secret string }{}
	for _, k := range append(e.state().AnthropicKeys, e.state().OpenAIKeys...) {
		platform[k.UUID] = struct{ name, secret string }{k.Name, k.Secret}
	}
	names, err := e.storage.List(ctx, keyStoragePrefix)
	if err != nil {
		t.Fatal(err)
	}
	held := map[string]bool{}
	for _, name := range names {
		k, err := getKey(ctx, e.storage, name)
		if err != nil || k == nil {
			t.Fatalf("reading stored key %q: %v", name, err)
		}
		held[k.UUID] = true
		p, ok := platform[k.UUID]
		switch {
		case !ok:
			t.Errorf("invariant: Vault holds %q (uuid %s), which the platform does not have", name, k.UUID)
		case p.name != k.Name:
			t.Errorf("invariant: %s is %q in Vault and %q on the platform", k.UUID, k.Name, p.name)
		case p.secret != k.APIKey:
			t.Errorf("invariant: the platform's secret of %q is not the one Vault holds", name)
		}
	}
	isForeign := map[string]bool{}
	for _, f := range foreign {
		isForeign[f] = true
	}
	for uuid, p := range platform {
		if !held[uuid] && !isForeign[uuid] {
			t.Errorf("invariant: stray platform key %q (uuid %s) that Vault does not hold", p.name, uuid)
		}
	}
	for _, a := range e.state().Agents {
		for _, key := range []string{a.AnthropicKeyUUID, a.OpenAIKeyUUID} {
			if _, ok := platform[key]; key != "" && !ok {
				t.Errorf("invariant: agent %s points at key %s, which does not exist", a.UUID, key)
			}
		}
	}
	if ids, _ := framework.ListWAL(ctx, e.storage); len(ids) != 0 {
		t.Errorf("invariant: write-ahead log entries left after rollback: %v", ids)
	}
}
