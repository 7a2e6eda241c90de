package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Changes made behind Vault's back, with the godo client, as the control
// panel or doctl would make them.

func (e *testEnv) renameOutside(uuid, name string) {
	e.t.Helper()
	if _, _, err := e.do.AgentPlatform.UpdateAnthropicAPIKey(context.Background(), uuid, &godo.AnthropicAPIKeyUpdateRequest{ApiKeyUuid: uuid, Name: name}); err != nil {
		e.t.Fatalf("renaming %s outside Vault: %v", uuid, err)
	}
}

func (e *testEnv) modifyOutside(uuid, secret string) {
	e.t.Helper()
	if _, _, err := e.do.AgentPlatform.UpdateAnthropicAPIKey(context.Background(), uuid, &godo.AnthropicAPIKeyUpdateRequest{ApiKeyUuid: uuid, ApiKey: secret}); err != nil {
		e.t.Fatalf("modifying %s outside Vault: %v", uuid, err)
	}
}

func (e *testEnv) deleteOutside(uuid string) {
	e.t.Helper()
	if _, _, err := e.do.AgentPlatform.DeleteAnthropicAPIKey(context.Background(), uuid); err != nil {
		e.t.Fatalf("deleting %s outside Vault: %v", uuid, err)
	}
}

func (e *testEnv) createOutside(name, secret string) string {
	e.t.Helper()
	k, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: name, ApiKey: secret})
	if err != nil {
		e.t.Fatalf("creating %s outside Vault: %v", name, err)
	}
	return k.Uuid
}

// createManaged creates an Anthropic key through Vault and returns its uuid.
func (e *testEnv) createManaged(name, secret string) string {
	e.t.Helper()
	return e.mustOK(logical.CreateOperation, "keys/"+name, map[string]any{"provider": "anthropic", "api_key": secret}).Data["uuid"].(string)
}

func (e *testEnv) sync() map[string]any {
	e.t.Helper()
	return e.mustOK(logical.UpdateOperation, "sync", nil).Data
}

func (e *testEnv) syncStatus(name string) (status string, lastSynced any) {
	e.t.Helper()
	d := e.mustOK(logical.ReadOperation, "keys/"+name, nil).Data
	return d["sync_status"].(string), d["last_synced"]
}

func (e *testEnv) platformKeyByUUID(uuid string) *emulator.KeyState {
	for _, k := range e.platformKeys(platform.Anthropic) {
		if k.UUID == uuid {
			return &k
		}
	}
	return nil
}

func wantCounts(t *testing.T, got map[string]any, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s = %v, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// Each kind of drift made behind Vault's back is found by a sync and shown
// on the key's read and in status; a rename that also changed the secret is
// reported as renamed (the first in the order).
func TestSync_FindsEachKindOfDrift(t *testing.T) {
	e := newTestEnv(t, nil)
	uuids := map[string]string{}
	for _, name := range []string{"steady", "renamed", "modified", "deleted", "both"} {
		uuids[name] = e.createManaged(name, anthropicKey("d-"+name))
	}
	if status, synced := e.syncStatus("steady"); status != syncInSync || synced != nil {
		t.Fatalf("before any sync: %v %v, want in_sync and no last_synced", status, synced)
	}
	e.renameOutside(uuids["renamed"], "renamed-in-console")
	e.modifyOutside(uuids["modified"], anthropicKey("console1"))
	e.deleteOutside(uuids["deleted"])
	e.renameOutside(uuids["both"], "both-in-console")
	e.modifyOutside(uuids["both"], anthropicKey("console2"))
	stranger := e.createOutside("made-in-console", anthropicKey("console3"))

	got := e.sync()
	wantCounts(t, got, map[string]int{"in_sync": 1, "missing": 1, "renamed": 2, "modified_outside": 1, "unmanaged": 1})
	drifted := got["drifted"].(map[string]any)
	want := map[string]string{"renamed": syncRenamed, "modified": syncModified, "deleted": syncMissing, "both": syncRenamed}
	for name, status := range want {
		if drifted[name] != status {
			t.Errorf("drifted[%s] = %v, want %s", name, drifted[name], status)
		}
		if read, synced := e.syncStatus(name); read != status || synced != got["synced_at"] {
			t.Errorf("read %s: sync_status %v last_synced %v, want %s at %v", name, read, synced, status, got["synced_at"])
		}
	}
	if status, synced := e.syncStatus("steady"); status != syncInSync || synced != got["synced_at"] {
		t.Errorf("steady: %v %v, want in_sync at %v", status, synced, got["synced_at"])
	}

	st := e.mustOK(logical.ReadOperation, "status", nil).Data
	if st["sync_last_run"] != got["synced_at"] {
		t.Errorf("status sync_last_run = %v, want %v", st["sync_last_run"], got["synced_at"])
	}
	wantCounts(t, st["sync_counts"].(map[string]any), map[string]int{"in_sync": 1, "missing": 1, "renamed": 2, "modified_outside": 1, "unmanaged": 1})
	if st["sync_interval_seconds"] != int64(600) {
		t.Errorf("sync_interval_seconds = %v", st["sync_interval_seconds"])
	}
	// Nothing on the platform was touched by the sync.
	if e.platformKeyByUUID(stranger) == nil || e.platformKeyByUUID(uuids["renamed"]).Name != "renamed-in-console" {
		t.Fatal("a sync changed the platform")
	}
}

// The platform's updated_at moves on Vault's own writes too; Vault records
// it from every answer, so its own creates, rotations and renames never
// count as drift, and a rotation after a sync found modified_outside puts
// the key back in sync without another sync.
func TestSync_VaultsOwnWritesAreNotDrift(t *testing.T) {
	e := newTestEnv(t, nil)
	uuid := e.createManaged("own", anthropicKey("own1"))
	e.mustOK(logical.UpdateOperation, "keys/own", map[string]any{"api_key": anthropicKey("own2")})
	e.mustOK(logical.UpdateOperation, "rename/own", map[string]any{"new_name": "own-renamed"})
	e.mustOK(logical.UpdateOperation, "keys/own-renamed/rotate", map[string]any{"api_key": anthropicKey("own3")})
	wantCounts(t, e.sync(), map[string]int{"in_sync": 1, "missing": 0, "renamed": 0, "modified_outside": 0, "unmanaged": 0})

	e.modifyOutside(uuid, anthropicKey("own-console"))
	e.sync()
	if status, _ := e.syncStatus("own-renamed"); status != syncModified {
		t.Fatalf("status %s, want modified_outside", status)
	}
	// Vault writes the key again: what the platform holds is Vault's again.
	e.mustOK(logical.UpdateOperation, "keys/own-renamed", map[string]any{"api_key": anthropicKey("own4")})
	if status, _ := e.syncStatus("own-renamed"); status != syncInSync {
		t.Fatalf("after Vault's rotation: %s, want in_sync", status)
	}
}

// Each kind of drift is repaired through keys/<name>/sync, and the next
// sync finds the key in sync.
func TestSyncRepair_EachKind(t *testing.T) {
	cases := map[string]struct {
		drift func(e *testEnv, uuid string)
		want  string
	}{
		"modified_outside": {func(e *testEnv, uuid string) { e.modifyOutside(uuid, anthropicKey("r-console")) }, syncModified},
		"renamed":          {func(e *testEnv, uuid string) { e.renameOutside(uuid, "r-console-name") }, syncRenamed},
		"renamed and modified": {func(e *testEnv, uuid string) {
			e.renameOutside(uuid, "r-console-name")
			e.modifyOutside(uuid, anthropicKey("r-console"))
		}, syncRenamed},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			secret := anthropicKey("r-vault")
			uuid := e.createManaged("repair-me", secret)
			tc.drift(e, uuid)
			e.sync()

			got := e.mustOK(logical.UpdateOperation, "keys/repair-me/sync", nil).Data
			if got["drift"] != tc.want || got["repaired"] != true || got["uuid"] != uuid {
				t.Fatalf("repair answered %v", got)
			}
			pk := e.platformKeyByUUID(uuid)
			if pk == nil || pk.Name != "repair-me" || pk.Secret != secret {
				t.Fatalf("platform key after repair: %+v", pk)
			}
			if status, _ := e.syncStatus("repair-me"); status != syncInSync {
				t.Fatalf("read after repair: %s", status)
			}
			wantCounts(t, e.sync(), map[string]int{"in_sync": 1, "missing": 0, "renamed": 0, "modified_outside": 0, "unmanaged": 0})

			// Repairing a key in sync changes nothing.
			again := e.mustOK(logical.UpdateOperation, "keys/repair-me/sync", nil).Data
			if again["repaired"] != false || again["drift"] != syncInSync {
				t.Fatalf("second repair: %v", again)
			}
		})
	}
}

// A key deleted outside Vault is created again under its name with Vault's
// secret; the new uuid is stored and the answer names the agents that were
// last seen using the old key, which the platform unlinked.
func TestSyncRepair_MissingIsCreatedAgain(t *testing.T) {
	e := newTestEnv(t, nil)
	secret := anthropicKey("m-vault")
	old := e.createManaged("gone", secret)
	agent := e.createAgent("support-bot", platform.Anthropic, old)
	// Reading the agents is when the plugin learns them.
	e.mustOK(logical.ReadOperation, "keys/gone/agents", nil)
	e.mustOK(logical.UpdateOperation, "keys/gone", map[string]any{"description": "kept across the repair", "rotation_period": "720h"})
	e.deleteOutside(old)
	if a, _ := e.agentKey(agent.Uuid); a != "" {
		t.Fatalf("the emulator left the agent on the deleted key: %s", a)
	}
	e.sync()
	if status, _ := e.syncStatus("gone"); status != syncMissing {
		t.Fatalf("status %s, want missing", status)
	}

	resp := e.mustOK(logical.UpdateOperation, "keys/gone/sync", nil)
	got := resp.Data
	newUUID, _ := got["uuid"].(string)
	if got["drift"] != syncMissing || got["old_uuid"] != old || newUUID == "" || newUUID == old {
		t.Fatalf("repair answered %v", got)
	}
	lost := got["agents_lost_key"].([]map[string]any)
	if len(lost) != 1 || lost[0]["uuid"] != agent.Uuid || lost[0]["name"] != "support-bot" {
		t.Fatalf("agents_lost_key = %v", lost)
	}
	note := got["agents_note"].(string)
	for _, f := range []string{"lost it when it was deleted", "support-bot", agent.Uuid, newUUID, "anthropic_key_uuid"} {
		if !strings.Contains(note, f) {
			t.Errorf("agents_note lacks %q: %s", f, note)
		}
	}
	if len(resp.Warnings) == 0 {
		t.Error("no warning about the agents")
	}

	pk := e.platformKeyNamed(platform.Anthropic, "gone")
	if pk == nil || pk.UUID != newUUID || pk.Secret != secret {
		t.Fatalf("platform key after repair: %+v", pk)
	}
	read := e.mustOK(logical.ReadOperation, "keys/gone", nil).Data
	if read["uuid"] != newUUID || read["sync_status"] != syncInSync || read["description"] != "kept across the repair" ||
		read["rotation_period"] != int64(720*3600) || read["version"] != 1 {
		t.Fatalf("entry after repair: %v", read)
	}
	wantCounts(t, e.sync(), map[string]int{"in_sync": 1, "missing": 0, "unmanaged": 0})
	// The plugin does not move agents on its own.
	if a, _ := e.agentKey(agent.Uuid); a != "" {
		t.Fatalf("agent moved to %s", a)
	}
}

// Without a record of the agents, the answer says the plugin does not know
// them rather than claiming there were none.
func TestSyncRepair_MissingWithUnknownAgents(t *testing.T) {
	e := newTestEnv(t, nil)
	e.deleteOutside(e.createManaged("unseen", anthropicKey("u-vault")))
	e.sync()
	got := e.mustOK(logical.UpdateOperation, "keys/unseen/sync", nil).Data
	if note := got["agents_note"].(string); !strings.Contains(note, "never listed the agents") {
		t.Fatalf("agents_note = %s", note)
	}
	if _, ok := got["agents_seen_at"]; ok {
		t.Fatal("agents_seen_at set though the agents were never seen")
	}
}

// A repair never overwrites a key that changed again since the sync that
// found the drift: it is a 400 telling the caller to sync again, and the
// platform is left as it is. After a sync, the repair goes through.
func TestSyncRepair_ConflictWhenChangedAgain(t *testing.T) {
	cases := map[string]struct {
		first, again func(e *testEnv, uuid string)
		fragment     string
	}{
		"modified again": {
			func(e *testEnv, uuid string) { e.modifyOutside(uuid, anthropicKey("c-one")) },
			func(e *testEnv, uuid string) { e.modifyOutside(uuid, anthropicKey("c-two")) },
			"modified again",
		},
		"renamed again": {
			func(e *testEnv, uuid string) { e.renameOutside(uuid, "c-first") },
			func(e *testEnv, uuid string) { e.renameOutside(uuid, "c-second") },
			`renamed again, from "c-first" to "c-second"`,
		},
		"modified, then renamed": {
			func(e *testEnv, uuid string) { e.modifyOutside(uuid, anthropicKey("c-one")) },
			func(e *testEnv, uuid string) { e.renameOutside(uuid, "c-first") },
			"renamed again",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			e := newTestEnv(t, nil)
			secret := anthropicKey("c-vault")
			uuid := e.createManaged("contested", secret)
			tc.first(e, uuid)
			e.sync()
			tc.again(e, uuid)
			before := *e.platformKeyByUUID(uuid)

			e.mustBadRequest(logical.UpdateOperation, "keys/contested/sync", nil,
				"changed since the sync", tc.fragment, "Nothing was changed", "vault write -f gradient/sync")
			if after := *e.platformKeyByUUID(uuid); after != before {
				t.Fatalf("the platform key changed: %+v -> %+v", before, after)
			}

			e.sync()
			e.mustOK(logical.UpdateOperation, "keys/contested/sync", nil)
			if pk := e.platformKeyByUUID(uuid); pk.Name != "contested" || pk.Secret != secret {
				t.Fatalf("after sync and repair: %+v", pk)
			}
		})
	}

	t.Run("deleted since", func(t *testing.T) {
		e := newTestEnv(t, nil)
		uuid := e.createManaged("contested", anthropicKey("c-vault"))
		e.modifyOutside(uuid, anthropicKey("c-one"))
		e.sync()
		e.deleteOutside(uuid)
		e.mustBadRequest(logical.UpdateOperation, "keys/contested/sync", nil, "deleted from the platform since", "sync")
		if e.platformKeyNamed(platform.Anthropic, "contested") != nil {
			t.Fatal("a key was created though the drift changed")
		}
	})
}

// A missing key whose name another platform key took meanwhile (re-created
// by hand, say) is not created a second time.
func TestSyncRepair_NameTakenOnThePlatform(t *testing.T) {
	e := newTestEnv(t, nil)
	e.deleteOutside(e.createManaged("taken", anthropicKey("t-vault")))
	byHand := e.createOutside("taken", anthropicKey("t-hand"))
	wantCounts(t, e.sync(), map[string]int{"missing": 1, "unmanaged": 1})
	e.mustBadRequest(logical.UpdateOperation, "keys/taken/sync", nil, byHand, "nothing was changed", "uuid="+byHand)
	if n := len(e.platformKeys(platform.Anthropic)); n != 1 {
		t.Fatalf("%d platform keys, want only the one made by hand", n)
	}
}

// A secret the provider rejects now is never pushed back: it may be why the
// key was changed in the control panel.
func TestSyncRepair_RejectedSecretIsNotPushed(t *testing.T) {
	e := newTestEnv(t, nil)
	secret := anthropicKey("rev-vault")
	uuid := e.createManaged("revoked", secret)
	e.modifyOutside(uuid, anthropicKey("rev-console"))
	e.sync()
	e.emu.Revoke(secret)
	e.mustBadRequest(logical.UpdateOperation, "keys/revoked/sync", nil, "was not pushed back", "rejected by the provider", "write a new api_key")
	if pk := e.platformKeyByUUID(uuid); pk.Secret != anthropicKey("rev-console") {
		t.Fatal("the rejected secret was pushed")
	}
}

// Repairing before any sync compared the key is a 400 that says to sync.
func TestSyncRepair_NeedsASync(t *testing.T) {
	e := newTestEnv(t, nil)
	e.createManaged("fresh", anthropicKey("f-vault"))
	e.mustBadRequest(logical.UpdateOperation, "keys/fresh/sync", nil, "no sync has compared", "vault write -f gradient/sync")
}

// A re-created key whose entry cannot be stored is deleted again through
// the create's write-ahead log entry: no orphan is left on the platform,
// and Vault still holds the old uuid, so the drift stays visible.
func TestSyncRepair_MissingStorageFailureLeavesNoOrphan(t *testing.T) {
	e := newTestEnv(t, nil)
	old := e.createManaged("fragile", anthropicKey("s-vault"))
	e.deleteOutside(old)
	e.sync()
	e.storage.failUnder(keyStoragePrefix)
	e.mustServerError(logical.UpdateOperation, "keys/fragile/sync", nil, "removed again")
	e.storage.failUnder("")
	if pk := e.platformKeyNamed(platform.Anthropic, "fragile"); pk != nil {
		t.Fatalf("orphan left on the platform: %+v", pk)
	}
	if status, _ := e.syncStatus("fragile"); status != syncMissing {
		t.Fatalf("status %s, want missing still", status)
	}
	e.mustOK(logical.UpdateOperation, "keys/fragile/sync", nil)
}

// A listing that fails records nothing: no key is called missing because a
// page did not arrive.
func TestSync_FailedListingRecordsNothing(t *testing.T) {
	e := newTestEnv(t, nil)
	e.createManaged("kept", anthropicKey("l-vault"))
	e.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/openai/keys", Status: 401})
	e.mustServerError(logical.UpdateOperation, "sync", nil, "nothing was recorded")
	if status, synced := e.syncStatus("kept"); status != syncInSync || synced != nil {
		t.Fatalf("after a failed sync: %v %v", status, synced)
	}
	if _, ok := e.mustOK(logical.ReadOperation, "status", nil).Data["sync_last_run"]; ok {
		t.Fatal("a failed sync counted as run")
	}
}

// A repair whose answer is lost (the platform applied it and dropped the
// connection) or that the platform refuses with a 5xx stays on the WAL
// road: the entry is undone at once by pushing Vault's name and secret
// again, kept for the periodic rollback, which settles it; the platform ends
// up as Vault holds the key, and no entry is left.
func TestSyncRepair_AmbiguousFailureSettlesThroughTheWAL(t *testing.T) {
	for _, mode := range []string{"drop", "status"} {
		t.Run(mode, func(t *testing.T) {
			e := newTestEnv(t, nil)
			secret := anthropicKey("w-vault")
			uuid := e.createManaged("walled", secret)
			e.renameOutside(uuid, "walled-console")
			e.sync()
			// Fail every attempt of the repair's PUT, retries included;
			// the undo's PUT then goes through.
			e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: mode, Status: 503, Count: platform.MaxAttempts})
			resp, err := e.request(logical.UpdateOperation, "keys/walled/sync", nil)
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatalf("want the repair to fail, got %v", resp)
			}
			assertSettlesOnRollback(t, e)
			if pk := e.platformKeyByUUID(uuid); pk.Name != "walled" || pk.Secret != secret {
				t.Fatalf("platform key after the rollback: %+v", pk)
			}
			// The undo recorded its own write: a sync finds the key in sync.
			wantCounts(t, e.sync(), map[string]int{"in_sync": 1, "renamed": 0, "modified_outside": 0})
		})
	}
}

// A periodic sync that fails says so on status until one completes.
func TestSync_PeriodicFailureShowsOnStatus(t *testing.T) {
	r := newSyncEnv(t, map[string]any{"sync_interval": "10m"})
	r.emu.InjectFault(emulator.Fault{Method: "GET", Path: "/v2/gen-ai/anthropic/keys", Status: 401})
	r.advance(10 * time.Minute)
	r.syncTick()
	st := r.mustOK(logical.ReadOperation, "status", nil).Data
	if msg, _ := st["sync_last_error"].(string); !strings.Contains(msg, "nothing was recorded") {
		t.Fatalf("sync_last_error = %v", st["sync_last_error"])
	}
	if _, ok := st["sync_last_run"]; ok {
		t.Fatal("a failed sync counted as run")
	}
	r.advance(10 * time.Minute)
	r.syncTick()
	st = r.mustOK(logical.ReadOperation, "status", nil).Data
	if _, ok := st["sync_last_error"]; ok || st["sync_last_run"] == nil {
		t.Fatalf("after a sync that completed: %v", st)
	}
}

// A reassign records where the agents went: the key they left is known to
// have none, the key they moved to is known to have them, and a repair of
// either after a deletion outside Vault says so.
func TestSyncRepair_AgentsRecordedByReassign(t *testing.T) {
	e := newTestEnv(t, nil)
	from := e.createManaged("from", anthropicKey("ra-from"))
	to := e.createManaged("to", anthropicKey("ra-to"))
	agent := e.createAgent("moved-bot", platform.Anthropic, from)
	e.mustOK(logical.UpdateOperation, "keys/from/reassign", map[string]any{"to": "to"})
	e.deleteOutside(from)
	e.deleteOutside(to)
	wantCounts(t, e.sync(), map[string]int{"missing": 2})

	got := e.mustOK(logical.UpdateOperation, "keys/to/sync", nil).Data
	lost := got["agents_lost_key"].([]map[string]any)
	if len(lost) != 1 || lost[0]["uuid"] != agent.Uuid {
		t.Fatalf("to: agents_lost_key = %v", lost)
	}
	got = e.mustOK(logical.UpdateOperation, "keys/from/sync", nil).Data
	if lost := got["agents_lost_key"].([]map[string]any); len(lost) != 0 {
		t.Fatalf("from: agents_lost_key = %v, want none (they were moved away)", lost)
	}
	if note := got["agents_note"].(string); !strings.Contains(note, "No agent used the old key") {
		t.Fatalf("from: agents_note = %s", note)
	}
}

// An undo is Vault's own write too: a rotation whose answers were lost is
// undone by pushing the stored secret back, and the platform's updated_at of
// that push is recorded, so the next sync does not call the key modified.
func TestSync_UndoneRotationIsNotDrift(t *testing.T) {
	e := newTestEnv(t, nil)
	secret := anthropicKey("ur-1")
	uuid := e.createManaged("undone", secret)
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/anthropic/keys/", Mode: "drop", Count: platform.MaxAttempts})
	if resp, err := e.request(logical.UpdateOperation, "keys/undone", map[string]any{"api_key": anthropicKey("ur-2")}); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("want the rotation to fail, got %v", resp)
	}
	if pk := e.platformKeyByUUID(uuid); pk.Secret != secret {
		t.Fatalf("the undo did not push the stored secret back: %+v", pk)
	}
	wantCounts(t, e.sync(), map[string]int{"in_sync": 1, "modified_outside": 0})
}

// Drift seen in a listing is confirmed with one get of the key; drift that
// persists unchanged is not fetched again at the next sync: a sync then
// costs its listing pages only.
func TestSync_PersistentDriftCostsNoExtraCalls(t *testing.T) {
	e := newTestEnv(t, nil)
	uuid := e.createManaged("left-renamed", anthropicKey("pd-1"))
	e.deleteOutside(e.createManaged("left-deleted", anthropicKey("pd-2")))
	e.renameOutside(uuid, "renamed-on-purpose")

	before := e.platformCalls()
	e.sync()
	if got := e.platformCalls() - before; got != 4 {
		t.Fatalf("first sync: %d calls, want 2 listing pages and 2 confirmations", got)
	}
	before = e.platformCalls()
	wantCounts(t, e.sync(), map[string]int{"missing": 1, "renamed": 1})
	if got := e.platformCalls() - before; got != 2 {
		t.Fatalf("second sync: %d calls, want the 2 listing pages only", got)
	}
	// A change since is confirmed again.
	e.renameOutside(uuid, "renamed-again")
	before = e.platformCalls()
	e.sync()
	if got := e.platformCalls() - before; got != 3 {
		t.Fatalf("after another change: %d calls, want 2 pages and 1 confirmation", got)
	}
}

// Drift repair's re-create takes the create's late-landing window: its first
// call times out, the lookup finds nothing, the re-sent create succeeds, and
// the first one lands later than two request timeouts after the start (the
// re-create's old, shorter window) but inside the create's. The periodic
// rollback removes it and keeps the key Vault stored.
func TestSyncRepair_ReCreateThatLandsLateIsRemoved(t *testing.T) {
	e := newTestEnv(t, map[string]any{"request_timeout": "2s"})
	old := e.createManaged("late-repair", anthropicKey("lr-vault"))
	e.deleteOutside(old)
	e.sync()
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Mode: "late", Delay: 6500 * time.Millisecond})
	stored := e.mustOK(logical.UpdateOperation, "keys/late-repair/sync", nil).Data["uuid"]
	named := func() int { return len(e.ownKeys(platform.Anthropic, "late-repair")) }
	deadline := time.Now().Add(15 * time.Second)
	for named() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if named() != 2 {
		t.Fatal("setup: the late create never landed")
	}
	assertSettlesOnRollback(t, e)
	if pk := e.platformKeyNamed(platform.Anthropic, "late-repair"); pk == nil || pk.UUID != stored || named() != 1 {
		t.Fatalf("after the rollback: platform %+v, stored uuid %v", e.state().AnthropicKeys, stored)
	}
}

// A re-create whose answer is lost after the platform applied it finds the
// key it made under its provisional name and takes it, as a create does:
// the repair completes with one key under the name, stored, and nothing
// left over.
func TestSyncRepair_LostReCreateTakesTheKeyItMade(t *testing.T) {
	e := newTestEnv(t, nil)
	old := e.createManaged("lost-repair", anthropicKey("lost-repair"))
	e.deleteOutside(old)
	e.sync()
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Mode: "drop"})
	stored := e.mustOK(logical.UpdateOperation, "keys/lost-repair/sync", nil).Data["uuid"]
	own := e.ownKeys(platform.Anthropic, "lost-repair")
	if len(own) != 1 || own[0].UUID != stored || own[0].Name != "lost-repair" || own[0].Secret != anthropicKey("lost-repair") {
		t.Fatalf("platform %+v, stored uuid %v", e.state().AnthropicKeys, stored)
	}
	assertNoWAL(t, e)
	assertInvariant(t, e)
}
