package backend

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

func assertNoWAL(t *testing.T, e *testEnv) {
	t.Helper()
	if ids, _ := framework.ListWAL(context.Background(), e.storage); len(ids) != 0 {
		t.Fatalf("write-ahead log entries left: %v", ids)
	}
}

func walCount(t *testing.T, e *testEnv) int {
	t.Helper()
	ids, err := framework.ListWAL(context.Background(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

// assertSettlesOnRollback checks that an ambiguous failure kept exactly one
// entry for the periodic rollback, and that the rollback then settles it.
func assertSettlesOnRollback(t *testing.T, e *testEnv) {
	t.Helper()
	if n := walCount(t, e); n != 1 {
		t.Fatalf("want the one write-ahead log entry kept for the periodic rollback, have %d", n)
	}
	if resp := rollbackNow(t, e); resp != nil && resp.IsError() {
		t.Fatalf("rollback failed: %v", resp.Error())
	}
	assertNoWAL(t, e)
}

// rollbackNow runs Vault's periodic rollback as if the entries were old.
func rollbackNow(t *testing.T, e *testEnv) *logical.Response {
	t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RollbackOperation,
		Storage:   e.storage,
		Data:      map[string]any{"immediate": true},
	})
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	return resp
}

// If storing fails after the platform created the key, the key is deleted
// from the platform again at once.
func TestWAL_CreateStorageFailureRemovesPlatformKey(t *testing.T) {
	e := newTestEnv(t, nil)
	e.storage.failUnder("keys/")
	e.mustServerError(logical.CreateOperation, "keys/unstored", map[string]any{"provider": "anthropic", "api_key": anthropicKey("unstored")}, "removed again")
	e.storage.failUnder("")
	if n := e.emu.Counts()["POST /v2/gen-ai/anthropic/keys"]; n != 1 {
		t.Fatalf("creates = %d, want 1", n)
	}
	if keys := e.state().AnthropicKeys; len(keys) != 0 {
		t.Fatalf("orphan left on the platform: %+v", keys)
	}
	assertNoWAL(t, e)
}

// The common case of a lost answer: the platform applied the create and the
// connection dropped. The plugin does not send the create again blindly: it
// looks up the create's provisional name, finds the key it made, takes it
// and gives it its name. One key on the platform, stored, nothing left over.
func TestWAL_CreateWithLostAnswerTakesTheKeyItMade(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop"})
	resp := e.mustOK(logical.CreateOperation, "keys/dropped", map[string]any{"provider": "openai", "api_key": openAIKey("dropped")})
	keys := e.state().OpenAIKeys
	if len(keys) != 1 || keys[0].Name != "dropped" || keys[0].UUID != resp.Data["uuid"] || keys[0].Secret != openAIKey("dropped") {
		t.Fatalf("platform %+v, stored uuid %v", keys, resp.Data["uuid"])
	}
	if n := e.emu.Counts()["POST /v2/gen-ai/openai/keys"]; n != 1 {
		t.Fatalf("the create was sent %d times; the key found under the provisional name is this create's", n)
	}
	e.mustOK(logical.ReadOperation, "creds/dropped", nil)
	assertNoWAL(t, e)
	assertInvariant(t, e)
}

// createWhileHeld sends a create of name whose platform call takes fault,
// and while the platform holds that call, another client creates a key with
// the same name (the name cache is off, so nothing stops it); faults in
// then apply to the calls after the held one. It returns the other key's
// uuid and the create's answer.
func createWhileHeld(t *testing.T, e *testEnv, fault emulator.Fault, name string, then ...emulator.Fault) (string, *logical.Response, error) {
	t.Helper()
	e.emu.InjectFault(fault)
	type answer struct {
		resp *logical.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := e.send(logical.CreateOperation, "keys/"+name, map[string]any{"provider": "openai", "api_key": openAIKey(name)})
		done <- answer{resp, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.emu.PendingFaults() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.emu.PendingFaults() > 0 {
		t.Fatal("setup: the create never reached the platform")
	}
	for _, f := range then {
		e.emu.InjectFault(f)
	}
	other, _, err := e.do.AgentPlatform.CreateOpenAIAPIKey(context.Background(), &godo.OpenAIAPIKeyCreateRequest{Name: name, ApiKey: openAIKey(name + "-other")})
	if err != nil {
		t.Fatal(err)
	}
	a := <-done
	return other.Uuid, a.resp, a.err
}

// assertOtherKeyUntouched checks that the key another client made under
// name is on the platform as it made it.
func assertOtherKeyUntouched(t *testing.T, e *testEnv, other, name string) {
	t.Helper()
	for _, k := range e.state().OpenAIKeys {
		if k.UUID == other {
			if k.Name != name || k.Secret != openAIKey(name+"-other") {
				t.Fatalf("the other client's key was changed: %+v", k)
			}
			return
		}
	}
	t.Fatalf("the other client's key %s was deleted: %+v", other, e.state().OpenAIKeys)
}

// The case: the name cache is off, the create's answer is lost, and
// another client makes a key with the same final name meanwhile. The key
// the plugin finds under its provisional name is its own, whatever else is
// named like it: the create completes under its own key (uuid and secret),
// and the other client's key is never taken, changed or deleted, neither by
// the create nor by the periodic rollback.
func TestWAL_LostCreateNeverTakesAKeyMadeElsewhere(t *testing.T) {
	for name, fault := range map[string]emulator.Fault{
		"applied, answer dropped": {Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop", Delay: time.Second},
		"not applied (503)":       {Method: "POST", Path: "/v2/gen-ai/openai/keys", Status: 503, Delay: time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, map[string]any{"name_cache_ttl": "0s"})
			other, resp, err := createWhileHeld(t, e, fault, "contested")
			if err != nil || resp == nil || resp.IsError() {
				t.Fatalf("want the create done under its own key, got %v %v", resp, err)
			}
			stored := resp.Data["uuid"]
			if stored == other {
				t.Fatalf("Vault took the other client's key %s", other)
			}
			creds := e.mustOK(logical.ReadOperation, "creds/contested", nil)
			if creds.Data["api_key"] != openAIKey("contested") {
				t.Fatal("creds/ does not serve the secret this create sent")
			}
			assertOtherKeyUntouched(t, e, other, "contested")
			rollbackNow(t, e)
			assertNoWAL(t, e)
			assertOtherKeyUntouched(t, e, other, "contested")
			assertInvariant(t, e, other)
		})
	}
}

// The same, and the platform refuses to give the new key the final name
// (the other key took it): the create fails and says so, the key it made is
// deleted by its uuid, and nothing of this create is left; the other key is
// untouched.
func TestWAL_RefusedRenameLeavesNothingOfTheCreate(t *testing.T) {
	e := newTestEnv(t, map[string]any{"name_cache_ttl": "0s"})
	other, resp, err := createWhileHeld(t, e, emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop", Delay: time.Second}, "taken",
		emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 409})
	msg, failed := answerError(resp, err)
	if !failed {
		t.Fatalf("want the create refused, got %#v", resp)
	}
	e.assertSecretFree("error", msg)
	for _, want := range []string{"renaming it to \"taken\" failed", "removed again"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error lacks %q: %s", want, msg)
		}
	}
	if len(e.listKeys()) != 0 {
		t.Fatalf("Vault stores %v", e.listKeys())
	}
	if own := e.state().OpenAIKeys; len(own) != 1 || own[0].UUID != other {
		t.Fatalf("after the undo: %+v, want only the other client's %s", own, other)
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
	assertOtherKeyUntouched(t, e, other, "taken")
	assertInvariant(t, e, other)
}

// A create whose answer is lost and that lands late, while another client
// made a key with the same name: the lookup finds nothing under the
// provisional name, the create is sent once more and completes; the first
// then lands (a second key under the provisional name) and the rollback
// deletes it, sparing the other client's key and the stored one.
func TestWAL_LateCreateRemovedAndKeyMadeElsewhereSpared(t *testing.T) {
	e := newTestEnv(t, map[string]any{"name_cache_ttl": "0s", "request_timeout": "1s"})
	other, resp, err := createWhileHeld(t, e, emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 1500 * time.Millisecond}, "both")
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("want the re-sent create done, got %v %v", resp, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(e.state().OpenAIKeys) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.state().OpenAIKeys) != 3 {
		t.Fatalf("setup: the late create never landed: %+v", e.state().OpenAIKeys)
	}
	assertSettlesOnRollback(t, e)
	if own := e.ownKeys(platform.OpenAI, "both"); len(own) != 2 {
		t.Fatalf("after the rollback: %+v, want the stored key and the other client's", e.state().OpenAIKeys)
	}
	assertOtherKeyUntouched(t, e, other, "both")
	assertInvariant(t, e, other)
}

// A create whose answer was lost and that the platform did not apply is sent
// once more.
func TestWAL_CreateThatDidNotLandIsSentOnceMore(t *testing.T) {
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 503})
	resp := e.mustOK(logical.CreateOperation, "keys/resent", map[string]any{"provider": "anthropic", "api_key": anthropicKey("resent")})
	if keys := e.state().AnthropicKeys; len(keys) != 1 || keys[0].UUID != resp.Data["uuid"] {
		t.Fatalf("platform %+v, stored uuid %v", keys, resp.Data["uuid"])
	}
	if n := e.emu.Counts()["POST /v2/gen-ai/anthropic/keys"]; n != 2 {
		t.Fatalf("creates sent = %d, want 2 (the failed one and one more)", n)
	}
	// The first attempt could still land late: its entry stays for the
	// periodic rollback, which finds nothing to undo.
	assertSettlesOnRollback(t, e)
	if len(e.state().AnthropicKeys) != 1 {
		t.Fatal("rollback deleted the stored key")
	}
}

// When the immediate cleanup fails too, the WAL entry survives and Vault's
// rollback removes the orphan later; a failing rollback keeps the entry.
func TestWAL_DeferredRollbackDeletesOrphan(t *testing.T) {
	e := newTestEnv(t, nil)
	// A first create fills the name cache, so the faults below hit the
	// create and its cleanup, not the duplicate-name check.
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("primer")})
	// The answer to the create is lost, and the platform cannot be
	// listed, neither to recover the key nor to clean it up.
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503, Count: 2 * platform.MaxAttempts})
	e.mustServerError(logical.CreateOperation, "keys/orphan", map[string]any{"provider": "openai", "api_key": openAIKey("orphan")})
	if len(e.ownKeys(platform.OpenAI, "orphan")) != 1 {
		t.Fatal("setup: want the orphan on the platform before rollback")
	}
	if walCount(t, e) != 1 {
		t.Fatal("the WAL entry did not survive the failed cleanup")
	}

	// Platform still failing: the rollback reports and keeps the entry.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503, Count: platform.MaxAttempts})
	if resp := rollbackNow(t, e); resp == nil || !resp.IsError() {
		t.Fatalf("a failed rollback was not reported: %v", resp)
	}
	if walCount(t, e) != 1 || len(e.ownKeys(platform.OpenAI, "orphan")) != 1 {
		t.Fatal("a failed rollback dropped its entry")
	}

	// A later pass succeeds.
	rollbackNow(t, e)
	if len(e.ownKeys(platform.OpenAI, "orphan")) != 0 {
		t.Fatal("rollback left the orphan")
	}
	if e.platformKeyNamed(platform.OpenAI, "primer") == nil {
		t.Fatal("rollback deleted a key it did not create")
	}
	assertNoWAL(t, e)
	// And the name is free again.
	e.mustOK(logical.CreateOperation, "keys/orphan", map[string]any{"provider": "openai", "api_key": openAIKey("orphan2")})
}

// Rollback compares storage with the entry: a create whose key was stored
// is complete, and keys with the final name are not its orphans.
func TestWAL_RollbackSparesStoredAndOlderKeys(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/kept", map[string]any{"provider": "anthropic", "api_key": anthropicKey("kept")})
	older, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "legacy", ApiKey: anthropicKey("legacy")})
	if err != nil {
		t.Fatal(err)
	}
	kept := e.platformKeyNamed(platform.Anthropic, "kept")
	for _, w := range []*createWAL{
		{walHeader: walHeader{Provider: platform.Anthropic}, Name: "kept", Provisional: "kept.vault-00000000", UUID: kept.UUID},
		{walHeader: walHeader{Provider: platform.Anthropic}, Name: "legacy", Provisional: "legacy.vault-00000000"},
	} {
		if _, err := framework.PutWAL(context.Background(), e.storage, walKindCreate, w); err != nil {
			t.Fatal(err)
		}
	}
	rollbackNow(t, e)
	if n := len(e.state().AnthropicKeys); n != 2 {
		t.Fatalf("rollback deleted keys it did not create: %+v", e.state().AnthropicKeys)
	}
	if e.platformKeyNamed(platform.Anthropic, "legacy").UUID != older.Uuid {
		t.Fatal("legacy key changed")
	}
	assertNoWAL(t, e)
}

// If storing a rotated secret fails, the platform gets the stored secret
// back, so Vault and the platform agree.
func TestWAL_RotateStorageFailurePushesOldSecretBack(t *testing.T) {
	e := newTestEnv(t, nil)
	first := openAIKey("rot-first")
	e.mustOK(logical.CreateOperation, "keys/rot", map[string]any{"provider": "openai", "api_key": first})
	e.storage.failUnder("keys/")
	e.mustServerError(logical.UpdateOperation, "keys/rot", map[string]any{"api_key": openAIKey("rot-second")}, "pushed back")
	e.storage.failUnder("")
	if k := e.platformKeyNamed(platform.OpenAI, "rot"); k.Secret != first {
		t.Fatal("the platform kept the secret Vault failed to store")
	}
	if creds := e.mustOK(logical.ReadOperation, "creds/rot", nil); creds.Data["api_key"] != first || creds.Data["version"] != 1 {
		t.Fatalf("vault = %v", creds.Data)
	}
	assertNoWAL(t, e)
}

// A rotation interrupted after the push (here: the connection dropped and
// the platform cannot be reached to undo it) is undone by the rollback.
func TestWAL_RotateDeferredRollback(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("defer-first")
	e.mustOK(logical.CreateOperation, "keys/defer", map[string]any{"provider": "anthropic", "api_key": first})
	// The push is applied but its answer lost; the immediate undo fails.
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 503, Count: 2*platform.MaxAttempts - 1})
	e.mustServerError(logical.UpdateOperation, "keys/defer", map[string]any{"api_key": anthropicKey("defer-second")})
	if k := e.platformKeyNamed(platform.Anthropic, "defer"); k.Secret == first {
		t.Fatal("setup: the dropped push should have been applied")
	}
	if walCount(t, e) != 1 {
		t.Fatal("no WAL entry survived")
	}
	rollbackNow(t, e)
	if k := e.platformKeyNamed(platform.Anthropic, "defer"); k.Secret != first {
		t.Fatal("rollback did not restore the stored secret")
	}
	assertNoWAL(t, e)
}

func TestWAL_AdoptStorageFailureRestoresName(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "hand-made", ApiKey: anthropicKey("hand")})
	if err != nil {
		t.Fatal(err)
	}
	e.storage.failUnder("keys/")
	adopter := anthropicKey("adopter")
	e.mustServerError(logical.CreateOperation, "keys/adopter", map[string]any{"provider": "anthropic", "api_key": adopter, "uuid": legacy.Uuid}, "old name was restored", "secret sent stays on it")
	e.storage.failUnder("")
	k := e.platformKeyNamed(platform.Anthropic, "hand-made")
	if k == nil || k.UUID != legacy.Uuid {
		t.Fatalf("platform name not restored: %+v", e.state().AnthropicKeys)
	}
	// What docs/security.md promises: the secret sent stays (the platform never
	// returns the old one), and it is a verified key.
	if k.Secret != adopter {
		t.Fatalf("the platform key holds neither the old secret nor the adopter's")
	}
	assertNoWAL(t, e)
}

func TestWAL_UnknownKindIsDropped(t *testing.T) {
	e := newTestEnv(t, nil)
	if _, err := framework.PutWAL(context.Background(), e.storage, "from-the-future", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	rollbackNow(t, e)
	assertNoWAL(t, e)
}

// A rename a->b whose WAL entry could not be deleted, then b->c: rollback
// finds the key by uuid under c and leaves the platform name alone.
func TestWAL_RenameRollbackFollowsTheUUIDNotTheName(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/ren-a", map[string]any{"provider": "anthropic", "api_key": anthropicKey("renuuid")})
	e.storage.failDeletesUnder("wal/")
	sudoRename(t, e, "ren-a", "ren-b")
	e.storage.failDeletesUnder("")
	if walCount(t, e) != 1 {
		t.Fatal("setup: the rename's entry should have survived")
	}
	sudoRename(t, e, "ren-b", "ren-c")
	rollbackNow(t, e)
	if e.platformKeyNamed(platform.Anthropic, "ren-c") == nil {
		t.Fatalf("rollback renamed the key back: %+v", e.state().AnthropicKeys)
	}
	assertNoWAL(t, e)
}

// A rename whose platform answer was lost and whose undo failed, retried to
// another name: rollback does not rename it back to the first target or the
// old name.
func TestWAL_RetriedRenameIsNotUndone(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/retry-a", map[string]any{"provider": "openai", "api_key": openAIKey("retryren")})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 503, Count: 2*platform.MaxAttempts - 1})
	msg := e.mustServerError(logical.UpdateOperation, "rename/retry-a", map[string]any{"new_name": "retry-b"})
	if !strings.Contains(msg, "undoing the platform change failed too") {
		t.Errorf("the error does not say the undo failed: %s", msg)
	}
	sudoRename(t, e, "retry-a", "retry-c")
	rollbackNow(t, e)
	if e.platformKeyNamed(platform.OpenAI, "retry-c") == nil {
		t.Fatalf("rollback renamed the key away from its stored name: %+v", e.state().OpenAIKeys)
	}
	assertNoWAL(t, e)
}

// A rotation whose undo failed, then renamed by an operator: rollback still
// finds the key (by uuid) and pushes the stored secret back.
func TestWAL_RotationRollbackAfterRename(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("rotren-first")
	e.mustOK(logical.CreateOperation, "keys/rotren", map[string]any{"provider": "anthropic", "api_key": first})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 503, Count: 2*platform.MaxAttempts - 1})
	e.mustServerError(logical.UpdateOperation, "keys/rotren", map[string]any{"api_key": anthropicKey("rotren-second")})
	sudoRename(t, e, "rotren", "rotren-renamed")
	rollbackNow(t, e)
	if k := e.platformKeyNamed(platform.Anthropic, "rotren-renamed"); k == nil || k.Secret != first {
		t.Fatalf("the platform holds a secret Vault does not: %+v", k)
	}
	assertNoWAL(t, e)
}

// A create that failed with a 5xx leaves alone a key with the same name that
// someone made in the control panel just before (inside the name cache's
// window), though the platform's clock is not Vault's.
func TestWAL_FailedCreateSparesKeyMadeElsewhere(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "anthropic", "api_key": anthropicKey("spare-primer")})
	other, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "contested", ApiKey: anthropicKey("contested-other")})
	if err != nil {
		t.Fatal(err)
	}
	// Ten seconds pass on the platform (its clock is also ahead of Vault's
	// from now on): the name cache still misses the other key.
	e.emu.SetClockSkew(10 * time.Second)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Status: 503, Count: 2})
	e.mustServerError(logical.CreateOperation, "keys/contested", map[string]any{"provider": "anthropic", "api_key": anthropicKey("contested")}, "HTTP 503")
	rollbackNow(t, e)
	if own := e.ownKeys(platform.Anthropic, "contested"); len(own) != 1 || own[0].UUID != other.Uuid {
		t.Fatalf("the cleanup deleted a key this mount did not create, or left one it did: %+v", e.state().AnthropicKeys)
	}
	assertNoWAL(t, e)
}

// A create whose answer was lost and whose key cannot be looked up: the
// rollback finds the orphan by its provisional name and deletes it, whatever
// the platform's clock says.
func TestWAL_OrphanFoundWhenPlatformClockIsOff(t *testing.T) {
	for _, skew := range []time.Duration{-time.Hour, 2 * time.Hour} {
		t.Run(skew.String(), func(t *testing.T) {
			e := newTestEnv(t, nil)
			e.emu.SetClockSkew(skew)
			e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("orphan-skew-primer")})
			e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop"})
			e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503, Count: 2 * platform.MaxAttempts})
			e.mustServerError(logical.CreateOperation, "keys/skewed", map[string]any{"provider": "openai", "api_key": openAIKey("orphan-skewed")})
			if len(e.ownKeys(platform.OpenAI, "skewed")) != 1 {
				t.Fatal("setup: want the orphan on the platform before rollback")
			}
			assertSettlesOnRollback(t, e)
			if len(e.ownKeys(platform.OpenAI, "skewed")) != 0 || e.platformKeyNamed(platform.OpenAI, "primer") == nil {
				t.Fatalf("platform after rollback: %+v", e.state().OpenAIKeys)
			}
		})
	}
}

// A create that the platform applies after the request timed out: the
// plugin found no key and sent the create once more, which succeeded; the
// first one lands later and the periodic rollback removes it, because the
// entry outlives the request.
func TestWAL_CreateThatLandsLateIsRemoved(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "1s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("late-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 1500 * time.Millisecond})
	resp := e.mustOK(logical.CreateOperation, "keys/late", map[string]any{"provider": "openai", "api_key": openAIKey("late")})
	deadline := time.Now().Add(10 * time.Second)
	for len(e.state().OpenAIKeys) < 3 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.state().OpenAIKeys) != 3 {
		t.Fatal("setup: the late create never landed")
	}
	assertSettlesOnRollback(t, e)
	if k := e.platformKeyNamed(platform.OpenAI, "late"); k == nil || k.UUID != resp.Data["uuid"] || len(e.state().OpenAIKeys) != 2 {
		t.Fatalf("after rollback: platform %+v, stored uuid %v", e.state().OpenAIKeys, resp.Data["uuid"])
	}
}

// An error says what happened: when the undo failed, it does not claim a
// clean-up.
func TestWAL_ErrorSaysWhenTheUndoFailed(t *testing.T) {
	e := newTestEnv(t, nil)
	e.storage.failUnder("keys/")
	e.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/v2/gen-ai/anthropic/keys/", Status: 503, Count: platform.MaxAttempts})
	msg := e.mustServerError(logical.CreateOperation, "keys/undo-fails", map[string]any{"provider": "anthropic", "api_key": anthropicKey("undofails")}, "undoing the platform change failed too")
	e.storage.failUnder("")
	if strings.Contains(msg, "removed again") {
		t.Errorf("the error claims a clean-up that failed: %s", msg)
	}
	if walCount(t, e) != 1 {
		t.Fatal("the entry of a failed undo was dropped")
	}
	rollbackNow(t, e)
	if e.platformKeyNamed(platform.Anthropic, "undo-fails") != nil {
		t.Fatal("rollback left the orphan")
	}
	assertNoWAL(t, e)
}

// A rollback that keeps failing is retried until the entry is older than the
// maximum age, then dropped with an error log that names the change.
func TestWAL_FailingRollbackIsDroppedAfterMaxAge(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "anthropic", "api_key": anthropicKey("maxage-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/anthropic/keys", Status: 503, Count: 2 * platform.MaxAttempts})
	e.mustServerError(logical.CreateOperation, "keys/stuck", map[string]any{"provider": "anthropic", "api_key": anthropicKey("stuck")})
	e.mustOK(logical.DeleteOperation, "config", nil)
	if resp := rollbackNow(t, e); resp == nil || !resp.IsError() {
		t.Fatal("a rollback without config should fail and keep its entry")
	}
	if walCount(t, e) != 1 {
		t.Fatal("the entry was dropped before its maximum age")
	}
	e.b.clock = func() time.Time { return time.Now().Add(defaultWALMaxAge + time.Hour) }
	rollbackNow(t, e)
	assertNoWAL(t, e)
	logs := e.logs.String()
	for _, want := range []string{"finish it by hand", "kind=create-key", "provider=anthropic", "name=stuck"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log of the dropped entry lacks %q", want)
		}
	}
}

// A lost create whose provisional name cannot be looked up learns nothing,
// so its stored entry (the provisional name) is already what the undo
// needs: a write of the write-ahead log that fails then must not drop the
// entry, or the key the lost create made stays on the platform with nothing
// recording it.
func TestWAL_LostCreateKeepsItsEntryWhenThereIsNothingToRecord(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("nothing-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "drop", Delay: 300 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := e.send(logical.CreateOperation, "keys/unseen", map[string]any{"provider": "openai", "api_key": openAIKey("unseen")})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.emu.PendingFaults() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// The create is at the platform (its write-ahead log entry written):
	// now the lookup fails, and so does every write of the log.
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 503, Count: 2 * platform.MaxAttempts})
	e.storage.failPutsUnder("wal/")
	if err := <-done; err == nil {
		t.Fatal("want a server error")
	}
	e.storage.failPutsUnder("")
	e.emu.ClearFaults()
	if len(e.ownKeys(platform.OpenAI, "unseen")) != 1 {
		t.Fatal("setup: the lost create did not land")
	}
	assertSettlesOnRollback(t, e)
	if len(e.ownKeys(platform.OpenAI, "unseen")) != 0 {
		t.Fatalf("the key of the lost create was left on the platform: %+v", e.state().OpenAIKeys)
	}
	assertInvariant(t, e)
}

// A reassign whose single switch failed ambiguously keeps its entry; the
// operator retries and succeeds; the periodic rollback must not undo the
// successful retry.
func TestWAL_ReassignRollbackSparesALaterSuccess(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/rv-from", map[string]any{"provider": "anthropic", "api_key": anthropicKey("rvfrom")})
	e.mustOK(logical.CreateOperation, "keys/rv-to", map[string]any{"provider": "anthropic", "api_key": anthropicKey("rvto")})
	toUUID := e.platformKeyNamed(platform.Anthropic, "rv-to").UUID
	a := e.createAgent("rv-agent", platform.Anthropic, e.platformKeyNamed(platform.Anthropic, "rv-from").UUID)
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/agents/", Status: 503, Count: platform.MaxAttempts})
	e.mustServerError(logical.UpdateOperation, "keys/rv-from/reassign", map[string]any{"to": "rv-to"})
	t.Logf("wal entries after failed reassign: %d", walCount(t, e))
	e.mustOK(logical.UpdateOperation, "keys/rv-from/reassign", map[string]any{"to": "rv-to"})
	rollbackNow(t, e)
	if anth, _ := e.agentKey(a.Uuid); anth != toUUID {
		t.Fatalf("the periodic rollback moved the agent back after a successful reassign (agent on %s, want %s)", anth, toUUID)
	}
}

// The first PUT of a rotation is applied but its answer lost; the retries
// get 429. The final error is a "definite refusal", so the entry is dropped
// without an undo, though the first attempt changed the platform.
func TestWAL_RetryEndingInRefusalAfterALostAnswerIsUndone(t *testing.T) {
	e := newTestEnv(t, nil)
	first := anthropicKey("rv-rot-first")
	e.mustOK(logical.CreateOperation, "keys/rv-rot", map[string]any{"provider": "anthropic", "api_key": first})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Status: 429, Count: platform.MaxAttempts - 1})
	resp, err := e.send(logical.UpdateOperation, "keys/rv-rot", map[string]any{"api_key": anthropicKey("rv-rot-second")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	rollbackNow(t, e)
	if k := e.platformKeyNamed(platform.Anthropic, "rv-rot"); k.Secret != first {
		t.Fatal("the platform holds a secret Vault does not, and no entry is left to fix it")
	}
}

// A create times out and lands late; the lookup finds nothing and the
// create is sent once more, which the platform refuses (429). The entry is
// dropped as a definite refusal; the late create then lands: an orphan.
func TestWAL_ResentCreateRefusedKeepsItsEntry(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "1s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("rv-late-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 1500 * time.Millisecond})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Status: 429})
	resp, err := e.send(logical.CreateOperation, "keys/rv-late", map[string]any{"provider": "openai", "api_key": openAIKey("rv-late")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	deadline := time.Now().Add(5 * time.Second)
	for e.platformKeyNamed(platform.OpenAI, "rv-late") == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	rollbackNow(t, e)
	if e.platformKeyNamed(platform.OpenAI, "rv-late") != nil {
		t.Fatalf("orphan left on the platform with no WAL entry (wal=%d)", walCount(t, e))
	}
}

// Adoption rollback follows the uuid: an adoption whose undo failed,
// retried under another name, is not renamed back by the rollback.
func TestWAL_AdoptRollbackFollowsTheUUID(t *testing.T) {
	e := newTestEnv(t, nil)
	legacy, _, err := e.do.AgentPlatform.CreateOpenAIAPIKey(context.Background(), &godo.OpenAIAPIKeyCreateRequest{Name: "hand-made", ApiKey: openAIKey("rv-hand")})
	if err != nil {
		t.Fatal(err)
	}
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Mode: "drop"})
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 503, Count: 2*platform.MaxAttempts - 1})
	e.mustServerError(logical.CreateOperation, "keys/adopt-b", map[string]any{"provider": "openai", "api_key": openAIKey("rv-adopt"), "uuid": legacy.Uuid})
	e.mustOK(logical.CreateOperation, "keys/adopt-c", map[string]any{"provider": "openai", "api_key": openAIKey("rv-adopt"), "uuid": legacy.Uuid})
	rollbackNow(t, e)
	if e.platformKeyNamed(platform.OpenAI, "adopt-c") == nil {
		t.Fatalf("rollback renamed a managed key away from its stored name: %+v", e.state().OpenAIKeys)
	}
}

// The first create hangs for the whole timeout; the lookup finds nothing
// and the create is sent again; the second answer is lost too and the
// platform applies it late, within one timeout of the client giving up. Its
// created_at is past the entry's Deadline (Started + 2 timeouts), so no
// rollback recognises it.
func TestWAL_ResentCreateThatLandsLateIsFound(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "2s"})
	e.mustOK(logical.CreateOperation, "keys/primer", map[string]any{"provider": "openai", "api_key": openAIKey("rv-win-primer")})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "hang"})
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Mode: "late", Delay: 3900 * time.Millisecond})
	resp, err := e.send(logical.CreateOperation, "keys/rv-win", map[string]any{"provider": "openai", "api_key": openAIKey("rv-win")})
	t.Logf("answer: resp=%v err=%v; wal entries: %d", resp, err, walCount(t, e))
	deadline := time.Now().Add(8 * time.Second)
	for len(e.ownKeys(platform.OpenAI, "rv-win")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(e.ownKeys(platform.OpenAI, "rv-win")) == 0 {
		t.Fatal("setup: the late create never landed")
	}
	rollbackNow(t, e)
	if len(e.ownKeys(platform.OpenAI, "rv-win")) != 0 {
		t.Fatalf("orphan left on the platform (wal=%d)", walCount(t, e))
	}
}

// Found by the chaos run (acceptance/chaos_test.go, seeds 1 and 7): an
// update whose first attempt the platform applied but whose answer was lost,
// and whose retries were then refused with 429, was answered as a rate-limit
// refusal; makeChange took that for "nothing changed" and dropped its
// write-ahead log entry, leaving the platform with the new secret (or name)
// and Vault with the old one, and nothing to undo it. The answer must stay
// ambiguous: the change is undone and the entry kept.
func TestRetry_AppliedThenRefusedStaysAmbiguous(t *testing.T) {
	for label, refusal := range map[string]emulator.Fault{
		"429":       {Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Count: platform.MaxAttempts - 1, Mode: "status", Status: http.StatusTooManyRequests},
		"other 4xx": {Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Count: 1, Mode: "status", Status: http.StatusConflict},
	} {
		t.Run(label, func(t *testing.T) {
			e := newTestEnv(t, nil)
			old, next := anthropicKey("ambig-old"), anthropicKey("ambig-new")
			e.mustOK(logical.CreateOperation, "keys/ambiguous", map[string]any{"provider": platform.Anthropic, "api_key": old})
			e.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop"})
			e.emu.InjectFault(refusal)

			// The answer is the refusal (a 400 for a 4xx, a 502 for a 429),
			// saying that the change was undone.
			resp, err := e.request(logical.UpdateOperation, "keys/ambiguous", map[string]any{"api_key": next})
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatalf("the update succeeded: %v", resp)
			}

			if pk := e.platformKeyNamed(platform.Anthropic, "ambiguous"); pk == nil || pk.Secret != old {
				t.Fatalf("the platform holds another secret than Vault after the failed update: %+v", pk)
			}
			read := e.mustOK(logical.ReadOperation, "keys/ambiguous", nil)
			if v := read.Data["version"]; v != 1 {
				t.Fatalf("version = %v, want 1", v)
			}
			wal, err := e.storage.List(t.Context(), "wal/")
			if err != nil || len(wal) != 1 {
				t.Fatalf("write-ahead log entries: %v (err %v), want the one kept for the periodic rollback", wal, err)
			}
		})
	}
}

// crashAt makes the plugin die at one step of a create: hook sees every
// write of storage; when at says the write is the step's, a copy of
// storage is taken as the dead process left it (with the write when
// applied is true) and the process never goes on (its request blocks
// until the test ends, then fails).
type crashAt struct {
	at      func(key string, n map[string]int) (crash, applied bool)
	mu      sync.Mutex
	seen    map[string]int
	crashed chan *faultyStorage
	release chan struct{}
}

func (c *crashAt) hook(from logical.Storage) func(e *logical.StorageEntry) error {
	return func(entry *logical.StorageEntry) error {
		c.mu.Lock()
		prefix := entry.Key[:strings.Index(entry.Key, "/")+1]
		c.seen[prefix]++
		crash, applied := c.at(entry.Key, c.seen)
		c.mu.Unlock()
		if !crash {
			return nil
		}
		ctx := context.Background()
		copied := &logical.InmemStorage{}
		keys, err := logical.CollectKeys(ctx, from)
		if err != nil {
			panic(err)
		}
		for _, k := range keys {
			if v, err := from.Get(ctx, k); err == nil && v != nil {
				_ = copied.Put(ctx, v)
			}
		}
		if applied {
			_ = copied.Put(ctx, entry)
		}
		c.crashed <- &faultyStorage{Storage: copied}
		<-c.release
		return errors.New("the process died")
	}
}

// A crash at each step of a create (after the create, after the entry
// records the uuid, after the rename), then a new backend on what storage
// holds and its periodic rollback: no key of the create is left on the
// platform, and no entry.
func TestWAL_CrashAtEachStepOfACreateLeavesNoStrayKey(t *testing.T) {
	for name, at := range map[string]func(key string, n map[string]int) (bool, bool){
		// The second write of the log is the uuid's: crash before it.
		"after the create": func(key string, n map[string]int) (bool, bool) {
			return strings.HasPrefix(key, "wal/") && n["wal/"] == 2, false
		},
		"after the WAL rewrite": func(key string, n map[string]int) (bool, bool) {
			return strings.HasPrefix(key, "wal/") && n["wal/"] == 2, true
		},
		"after the rename": func(key string, n map[string]int) (bool, bool) { return strings.HasPrefix(key, "keys/"), false },
	} {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			c := &crashAt{at: at, seen: map[string]int{}, crashed: make(chan *faultyStorage, 1), release: make(chan struct{})}
			e.storage.onPut(c.hook(e.storage.Storage))
			done := make(chan error, 1)
			go func() {
				_, err := e.send(logical.CreateOperation, "keys/crashed", map[string]any{"provider": "anthropic", "api_key": anthropicKey("crashed")})
				done <- err
			}()
			var left *faultyStorage
			select {
			case left = <-c.crashed:
			case err := <-done:
				t.Fatalf("setup: the create never reached the step (%v)", err)
			}
			if own := e.ownKeys(platform.Anthropic, "crashed"); len(own) != 1 {
				t.Fatalf("setup: want the create's key on the platform, have %+v", e.state().AnthropicKeys)
			}
			after := e.restartedOn(left)
			if n := walCount(t, after); n != 1 {
				t.Fatalf("setup: want the create's entry in storage, have %d", n)
			}
			rollbackNow(t, after)
			if own := after.ownKeys(platform.Anthropic, "crashed"); len(own) != 0 {
				t.Errorf("the rollback left the create's key: %+v", own)
			}
			assertNoWAL(t, after)
			assertInvariant(t, after)
			close(c.release)
			<-done
		})
	}
}

// A provisional name follows the name rule for every name the rule accepts
// (the longest, one ending in a period), keeps as much of the name as fits,
// and differs between two creates of the same name.
func TestWAL_ProvisionalNameFollowsTheNameRule(t *testing.T) {
	long := strings.Repeat("n", maxNameLength)
	for _, name := range []string{"a", "a.", "team-a.bot", long, long[:48] + "."} {
		p := provisionalName(name)
		if err := validateName(p); err != nil {
			t.Errorf("provisional name of %q: %v", name, err)
		}
		if !strings.HasPrefix(p, strings.TrimRight(name[:min(len(name), maxNameLength-len(provisionalMark)-8)], ".")+provisionalMark) {
			t.Errorf("provisional name of %q is %q", name, p)
		}
		if !isProvisional(p) {
			t.Errorf("provisional name %q is not recognised as one", p)
		}
		if provisionalName(name) == p {
			t.Errorf("two provisional names of %q are the same", name)
		}
	}
	e := newTestEnv(t, nil)
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Mode: "drop"})
	e.mustOK(logical.CreateOperation, "keys/"+long, map[string]any{"provider": "anthropic", "api_key": anthropicKey("long")})
	assertNoWAL(t, e)
	assertInvariant(t, e)
}

// A key under a provisional name is a create of this mount in flight (or
// left for its rollback): while the create waits between its create and its
// rename, an adoption of that uuid under another name is refused, so no two
// names come to manage one platform key and creds/ never serves a secret the
// platform no longer holds.
func TestWAL_InFlightCreateCannotBeAdopted(t *testing.T) {
	e := newTestEnv(t, nil)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	walPuts := 0
	e.storage.onPut(func(entry *logical.StorageEntry) error {
		if strings.HasPrefix(entry.Key, "wal/") {
			walPuts++
			if walPuts == 2 { // the entry records the uuid, before the rename
				once.Do(func() { close(held) })
				<-release
			}
		}
		return nil
	})
	done := make(chan error, 1)
	go func() {
		_, err := e.send(logical.CreateOperation, "keys/inflight", map[string]any{"provider": "openai", "api_key": openAIKey("inflight")})
		done <- err
	}()
	<-held
	own := e.ownKeys(platform.OpenAI, "inflight")
	if len(own) != 1 || !strings.Contains(own[0].Name, provisionalMark) {
		t.Fatalf("setup: want the create's key under its provisional name, have %+v", own)
	}
	e.mustOK(logical.UpdateOperation, "sync", nil)
	if hint := e.mustOK(logical.ReadOperation, "platform-keys/"+own[0].UUID, nil).Data["adopt_hint"]; !strings.HasPrefix(hint.(string), "none:") {
		t.Errorf("platform-keys/ offers the in-flight create's key for adoption: %v", hint)
	}
	resp, err := e.send(logical.CreateOperation, "keys/grabber", map[string]any{"provider": "openai", "uuid": own[0].UUID, "api_key": openAIKey("grabber")})
	close(release)
	if cerr := <-done; cerr != nil {
		t.Fatalf("the create failed: %v", cerr)
	}
	if err != nil || resp == nil || !resp.IsError() {
		t.Fatalf("want the adoption of an in-flight create's key refused, got %#v %v", resp, err)
	}
	if msg := resp.Error().Error(); !strings.Contains(msg, "provisional") {
		t.Errorf("the refusal does not say why: %s", msg)
	}
	e.mustOK(logical.ReadOperation, "creds/inflight", nil)
	assertInvariant(t, e)
}

// The rollback of a create that crashed after its rename holds the new
// key's uuid lock, as an adoption of that key does: an operator adopting it
// meanwhile either finishes first (the rollback then finds it stored and
// spares it) or waits and finds it gone. Never a Vault entry for a platform
// key the rollback deleted.
func TestWAL_CreateRollbackAndAnAdoptionOfItsKeyDoNotRace(t *testing.T) {
	e := newTestEnv(t, nil)
	afterRename := func(key string, _ map[string]int) (bool, bool) { return strings.HasPrefix(key, "keys/"), false }
	c := &crashAt{at: afterRename, seen: map[string]int{}, crashed: make(chan *faultyStorage, 1), release: make(chan struct{})}
	e.storage.onPut(c.hook(e.storage.Storage))
	done := make(chan error, 1)
	go func() {
		_, err := e.send(logical.CreateOperation, "keys/raced", map[string]any{"provider": "anthropic", "api_key": anthropicKey("raced")})
		done <- err
	}()
	defer func() { close(c.release); <-done }()
	var left *faultyStorage
	select {
	case left = <-c.crashed:
	case err := <-done:
		t.Fatalf("setup: the create never reached its store (%v)", err)
	}
	own := e.ownKeys(platform.Anthropic, "raced")
	if len(own) != 1 || own[0].Name != "raced" {
		t.Fatalf("setup: want the renamed key on the platform, have %+v", e.state().AnthropicKeys)
	}
	uuid := own[0].UUID
	after := e.restartedOn(left)

	// When the rollback first scans the stored keys, an operator adopts the
	// key; an adoption the rollback does not wait for finishes meanwhile.
	adopted := make(chan error, 1)
	var adoptOnKeysScan func(prefix string)
	adoptOnKeysScan = func(prefix string) {
		if prefix != keyStoragePrefix {
			left.onNextList(adoptOnKeysScan)
			return
		}
		go func() {
			_, err := after.send(logical.CreateOperation, "keys/adopter", map[string]any{"provider": "anthropic", "api_key": anthropicKey("adopter"), "uuid": uuid})
			adopted <- err
		}()
		time.Sleep(300 * time.Millisecond)
	}
	left.onNextList(adoptOnKeysScan)
	rollbackNow(t, after)
	<-adopted

	stored, err := getKey(context.Background(), left, "adopter")
	if err != nil {
		t.Fatal(err)
	}
	onPlatform := false
	for _, k := range after.state().AnthropicKeys {
		onPlatform = onPlatform || k.UUID == uuid
	}
	if (stored != nil) != onPlatform {
		t.Fatalf("Vault stores the adoption: %v; the key is on the platform: %v", stored != nil, onPlatform)
	}
	assertInvariant(t, after)
}
