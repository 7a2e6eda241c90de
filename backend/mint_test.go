package backend

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The admin keys the zero-touch tests register with the emulator.
var (
	testOpenAIAdminKey    = "sk-admin-" + strings.Repeat("Q", 12) + "-test-openai-admin"
	testAnthropicAdminKey = "sk-ant-admin01-" + strings.Repeat("R", 12) + "-test-anthropic-admin"
)

// newZeroTouchEnv is a rotEnv whose config holds both admin keys, which the
// emulator accepts. Admin keys and every key the providers hold count as
// secrets for the leak checks on logs and messages.
func newZeroTouchEnv(t *testing.T) *rotEnv {
	t.Helper()
	r := newRotationEnv(t, nil)
	r.emu.AddAdminKey(emulator.ProviderOpenAI, testOpenAIAdminKey)
	r.emu.AddAdminKey(emulator.ProviderAnthropic, testAnthropicAdminKey)
	r.mustOK(logical.UpdateOperation, "config", map[string]any{
		"openai_admin_key": testOpenAIAdminKey, "anthropic_admin_key": testAnthropicAdminKey,
	})
	r.trackSecret(testOpenAIAdminKey)
	r.trackSecret(testAnthropicAdminKey)
	// Runs before the log check that newTestEnv registered.
	t.Cleanup(func() {
		ps := r.emu.ProviderState()
		for _, a := range ps.OpenAIServiceAccounts {
			r.trackSecret(a.APIKey)
		}
		for _, k := range ps.AnthropicKeys {
			r.trackSecret(k.Secret)
		}
	})
	return r
}

func (e *testEnv) trackSecret(s string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	if secrets[e.t] == nil {
		secrets[e.t] = map[string]bool{testToken: true}
	}
	secrets[e.t][s] = true
}

// createMinted creates an OpenAI key whose secrets the plugin mints in the
// default project; the first one is minted too.
func (r *rotEnv) createMinted(name string, settings map[string]any) map[string]any {
	r.t.Helper()
	data := map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": emulator.DefaultOpenAIProjectID}
	for k, v := range settings {
		data[k] = v
	}
	return r.mustOK(logical.CreateOperation, "keys/"+name, data).Data
}

// accounts are the emulator's service accounts named for key name.
func (r *rotEnv) accounts(name string) (live, deleted []emulator.OpenAIServiceAccountState) {
	for _, a := range r.emu.ProviderState().OpenAIServiceAccounts {
		if !strings.HasPrefix(a.Name, serviceAccountNamePrefix+name+"-v") {
			continue
		}
		if a.Deleted {
			deleted = append(deleted, a)
		} else {
			live = append(live, a)
		}
	}
	return live, deleted
}

func (r *rotEnv) openAISecret(name string) string {
	r.t.Helper()
	pk := r.platformKeyNamed(platform.OpenAI, name)
	if pk == nil {
		r.t.Fatalf("no platform key %s", name)
	}
	return pk.Secret
}

// Minted rotations over several periods: each period the platform gets a
// freshly minted, verified key; the account of the key it replaced is
// deleted after the grace period and not before; in the end exactly one
// account lives, the one whose key the platform holds.
func TestMint_RotationsOverSeveralPeriods(t *testing.T) {
	r := newZeroTouchEnv(t)
	got := r.createMinted("minted", map[string]any{"rotation_period": "1h", "grace_period": "10m"})
	live, _ := r.accounts("minted")
	if len(live) != 1 || live[0].Name != "vault-minted-v1" || got["service_account_id"] != live[0].ID {
		t.Fatalf("first mint: accounts %+v, read %v", live, got)
	}
	if r.openAISecret("minted") != live[0].APIKey || !strings.HasPrefix(live[0].APIKey, "sk-svcacct-") {
		t.Fatal("the platform does not hold the minted key")
	}
	if got["source"] != sourceOpenAIServiceAccount || got["retire_previous"] != true || got["grace_period"] != int64(600) || got["retire_status"] != retireNone {
		t.Fatalf("read after create: %v", got)
	}
	for field, v := range got {
		if s, ok := v.(string); ok && strings.Contains(s, "sk-svcacct-") {
			t.Fatalf("%s returns the minted key", field)
		}
	}

	seen := map[string]bool{r.openAISecret("minted"): true}
	for version := 2; version <= 5; version++ {
		due := t0.Add(time.Duration(version-1) * time.Hour)
		previous := r.read("minted")["service_account_id"].(string)
		r.tickAt(due)
		r.assertVersion("minted", version)
		secret := r.openAISecret("minted")
		if seen[secret] || !strings.HasPrefix(secret, "sk-svcacct-") {
			t.Fatalf("version %d: the platform holds no fresh minted key", version)
		}
		seen[secret] = true
		live, _ := r.accounts("minted")
		if len(live) != 2 {
			t.Fatalf("version %d: want the new account and the previous one (in its grace period), have %+v", version, live)
		}
		got := r.read("minted")
		if got["retire_status"] != retirePending || got["retirements_pending"] != 1 || got["service_account_id"] == previous {
			t.Fatalf("version %d after rotation: %v", version, got)
		}

		r.tickAt(due.Add(9 * time.Minute))
		if live, _ := r.accounts("minted"); len(live) != 2 {
			t.Fatalf("version %d: the previous account went before its grace period ended", version)
		}
		r.tickAt(due.Add(10 * time.Minute))
		live, _ = r.accounts("minted")
		if len(live) != 1 || live[0].APIKey != secret || live[0].Name != serviceAccountName("minted", version) {
			t.Fatalf("version %d: after the grace period, live accounts %+v", version, live)
		}
		if got := r.read("minted"); got["retire_status"] != retireRetired || got["retirements_pending"] != 0 || got["rotation_status"] != rotationOK {
			t.Fatalf("version %d after retirement: %v", version, got)
		}
	}
	live, deleted := r.accounts("minted")
	if len(live) != 1 || len(deleted) != 4 || len(r.emu.ProviderState().OpenAIServiceAccounts) != 5 {
		t.Fatalf("leak check: %d live, %d deleted, %d in all", len(live), len(deleted), len(r.emu.ProviderState().OpenAIServiceAccounts))
	}
	if creds := r.mustOK(logical.ReadOperation, "creds/minted", nil); creds.Data["api_key"] != live[0].APIKey {
		t.Fatal("creds do not hand out the current minted key")
	}
	assertNoWAL(t, r.testEnv)

	// rotate with nothing staged mints too, and a delete takes the
	// accounts with the key.
	r.mustOK(logical.UpdateOperation, "keys/minted/rotate", nil)
	r.assertVersion("minted", 6)
	r.mustOK(logical.DeleteOperation, "keys/minted", nil)
	if live, _ := r.accounts("minted"); len(live) != 0 {
		t.Fatalf("deleting the key left service accounts: %+v", live)
	}
}

// A process that dies between the mint and the push leaves an account
// nobody references. The rollback, on a new backend that never saw the
// account's id, finds it by the name chosen before the create, puts the
// stored secret back on the platform first, and deletes it.
func TestMint_CrashBetweenMintAndPushLeavesNoAccount(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createMinted("crash", nil)
	first := r.openAISecret("crash")
	// Every push fails: the one that would deliver the minted key, and the
	// immediate undo's push of the stored one.
	r.emu.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Status: 503, Count: 2 * platform.MaxAttempts})
	r.mustServerError(logical.UpdateOperation, "keys/crash/rotate", nil, "Vault's periodic rollback retries it")
	live, _ := r.accounts("crash")
	if len(live) != 2 {
		t.Fatalf("setup: want the account minted for v2 left behind, have %+v", live)
	}
	if walCount(t, r.testEnv) != 1 || r.openAISecret("crash") != first {
		t.Fatal("setup: want one WAL entry and the stored secret on the platform")
	}

	r.restart()
	rollbackNow(t, r.testEnv)
	live, deleted := r.accounts("crash")
	if len(live) != 1 || live[0].APIKey != first || len(deleted) != 1 || deleted[0].Name != "vault-crash-v2" {
		t.Fatalf("after rollback: live %+v, deleted %+v", live, deleted)
	}
	if r.openAISecret("crash") != first {
		t.Fatal("rollback left the platform on another secret")
	}
	assertNoWAL(t, r.testEnv)
	r.assertVersion("crash", 1)

	// A create whose answer is lost: the account exists, its id is
	// unknown; the undo finds it by name at once.
	r.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/openai/v1/organization/projects/", Mode: "drop"})
	r.mustServerError(logical.UpdateOperation, "keys/crash/rotate", nil)
	if live, _ := r.accounts("crash"); len(live) != 1 || live[0].APIKey != first {
		t.Fatalf("a mint whose answer was lost left an account: %+v", live)
	}
	assertSettlesOnRollback(t, r.testEnv)

	// And the next rotation works, under the same account name.
	r.mustOK(logical.UpdateOperation, "keys/crash/rotate", nil)
	r.assertVersion("crash", 2)
	if live, _ := r.accounts("crash"); len(live) != 2 {
		t.Fatalf("after a good rotation: %+v", live)
	}
}

// A rollback never deletes an account a stored version references: after
// a completed mint, an old WAL entry for the same name changes nothing.
func TestMint_RollbackSparesReferencedAccounts(t *testing.T) {
	r := newZeroTouchEnv(t)
	got := r.createMinted("spared", nil)
	uuid := got["uuid"].(string)
	w := &mintWAL{walHeader: walHeader{Provider: platform.OpenAI, Created: time.Now()}, Name: "spared", UUID: uuid, Version: 0,
		ProjectID: emulator.DefaultOpenAIProjectID, AccountName: "vault-spared-v1"}
	if err := w.undo(t.Context(), r.b, r.storage); err != nil {
		t.Fatal(err)
	}
	if live, _ := r.accounts("spared"); len(live) != 1 || r.openAISecret("spared") != live[0].APIKey {
		t.Fatalf("rollback touched a referenced account: %+v", live)
	}
}

// An admin key the provider rejects: during a scheduled rotation the
// current key stays, in Vault and on the platform, and status says why.
func TestMint_RejectedAdminKeyKeepsTheCurrentKey(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createMinted("held", map[string]any{"rotation_period": "1h"})
	first := r.openAISecret("held")
	r.emu.Revoke(testOpenAIAdminKey)

	r.tickAt(t0.Add(time.Hour))
	r.assertVersion("held", 1)
	if r.openAISecret("held") != first {
		t.Fatal("the platform key changed")
	}
	got := r.read("held")
	if got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "rejected openai_admin_key (HTTP 401)") {
		t.Fatalf("read: %v", got)
	}
	if status := r.mustOK(logical.ReadOperation, "status", nil).Data; status["failed"] != 1 {
		t.Fatalf("status: %v", status)
	}
	if live, _ := r.accounts("held"); len(live) != 1 {
		t.Fatalf("accounts: %+v", live)
	}
	// On request, the same refusal is the caller's to fix: a 400.
	r.mustBadRequest(logical.UpdateOperation, "keys/held/rotate", nil, "rejected openai_admin_key (HTTP 401)")
	assertNoWAL(t, r.testEnv)
}

// What keys/<name> refuses about zero-touch settings.
func TestMint_SettingsAreChecked(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createKey("anth", anthropicKey("zt1"), nil)
	r.mustOK(logical.CreateOperation, "keys/given", map[string]any{"provider": "openai", "api_key": openAIKey("zt2")})
	cases := map[string]struct {
		path      string
		op        logical.Operation
		data      map[string]any
		fragments []string
	}{
		"minted anthropic": {"keys/m1", logical.CreateOperation, map[string]any{"provider": "anthropic", "source": "openai-service-account", "openai_project_id": "proj_default"}, []string{"mints OpenAI keys"}},
		"no project":       {"keys/m2", logical.CreateOperation, map[string]any{"provider": "openai", "source": "openai-service-account"}, []string{"needs openai_project_id"}},
		"unknown project":  {"keys/m3", logical.CreateOperation, map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_nope"}, []string{`no project "proj_nope"`}},
		"bad project id":   {"keys/m4", logical.CreateOperation, map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj/../x"}, []string{"openai_project_id must be"}},
		"minted no retire": {"keys/m5", logical.CreateOperation, map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_default", "retire_previous": false}, []string{"always true for minted keys"}},
		"retire openai":    {"keys/given", logical.UpdateOperation, map[string]any{"retire_previous": true}, []string{"only with source=openai-service-account"}},
		"negative grace":   {"keys/anth", logical.UpdateOperation, map[string]any{"grace_period": -5}, []string{"grace_period"}},
		"bad source":       {"keys/anth", logical.UpdateOperation, map[string]any{"source": "magic"}, []string{"source"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r.mustBadRequest(tc.op, tc.path, tc.data, tc.fragments...)
		})
	}
	if live, _ := r.accounts("m"); len(live) != 0 || len(r.emu.ProviderState().OpenAIServiceAccounts) != 0 {
		t.Fatal("a refused write minted something")
	}
	// A staged OpenAI key can become a minted one; its next secret is minted.
	r.mustOK(logical.UpdateOperation, "keys/given", map[string]any{"source": "openai-service-account", "openai_project_id": "proj_default"})
	r.mustOK(logical.UpdateOperation, "keys/given/rotate", nil)
	if live, _ := r.accounts("given"); len(live) != 1 || r.openAISecret("given") != live[0].APIKey {
		t.Fatalf("switching to minting: %+v", live)
	}
}

// Deleting a minted key deletes its service accounts, the one in use and
// those waiting for retirement, once the platform key is gone. If deleting
// an account fails then, the entry keeps the accounts (creds/ still reads
// it, its platform key gone): deleting again finishes, as does the rollback.
func TestMint_DeleteTakesTheServiceAccounts(t *testing.T) {
	for _, finish := range []string{"delete again", "rollback"} {
		t.Run(finish, func(t *testing.T) {
			r := newZeroTouchEnv(t)
			r.createMinted("gone", nil)
			r.mustOK(logical.UpdateOperation, "keys/gone/rotate", nil) // v1's account waits for its grace period
			if live, _ := r.accounts("gone"); len(live) != 2 {
				t.Fatalf("setup: %+v", live)
			}
			r.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/openai/v1/organization/projects/", Status: 503, Count: 2 * platform.MaxAttempts})
			r.mustServerError(logical.DeleteOperation, "keys/gone", nil, "the platform key is deleted", "delete again to finish")
			r.emu.ClearFaults()
			if r.platformKeyNamed(platform.OpenAI, "gone") != nil || len(r.listKeys()) != 1 {
				t.Fatal("want the platform key gone and the entry kept with its accounts")
			}
			if live, _ := r.accounts("gone"); len(live) != 2 {
				t.Fatalf("accounts lost: %+v", live)
			}
			if finish == "rollback" {
				assertSettlesOnRollback(t, r.testEnv)
			} else {
				r.mustOK(logical.DeleteOperation, "keys/gone", nil)
			}
			if live, _ := r.accounts("gone"); len(live) != 0 || r.platformKeyNamed(platform.OpenAI, "gone") != nil || len(r.listKeys()) != 0 {
				t.Fatalf("after the %s: accounts %+v", finish, live)
			}
		})
	}
}

// A platform delete that fails (refused, or its answer lost with the key
// still there) deletes no service account: creds/ keeps serving a key that
// works, and the error says the key was not deleted.
func TestMint_FailedPlatformDeleteKeepsTheServiceAccounts(t *testing.T) {
	for name, status := range map[string]int{"refused": 422, "5xx": 503} {
		t.Run(name, func(t *testing.T) {
			r := newZeroTouchEnv(t)
			r.createMinted("kept", nil)
			r.mustOK(logical.UpdateOperation, "keys/kept/rotate", nil)
			r.emu.InjectFault(emulator.Fault{Method: "DELETE", Path: "/v2/gen-ai/openai/keys/", Status: status, Count: platform.MaxAttempts})
			resp, err := r.request(logical.DeleteOperation, "keys/kept", nil)
			msg, failed := answerError(resp, err)
			if !failed {
				t.Fatalf("the delete succeeded: %v", resp)
			}
			if !strings.Contains(msg, "was not deleted") {
				t.Errorf("the error does not say the key was not deleted: %s", msg)
			}
			r.emu.ClearFaults()
			if live, _ := r.accounts("kept"); len(live) != 2 {
				t.Fatalf("service accounts deleted before the platform key: live %+v", live)
			}
			creds := r.mustOK(logical.ReadOperation, "creds/kept", nil).Data["api_key"]
			if creds != r.openAISecret("kept") {
				t.Fatal("creds/ serves a secret the platform key does not hold")
			}
			live, _ := r.accounts("kept")
			if !slices.ContainsFunc(live, func(a emulator.OpenAIServiceAccountState) bool { return a.APIKey == creds }) {
				t.Fatal("creds/ serves the key of a deleted service account")
			}
			rollbackNow(t, r.testEnv)
			if live, _ := r.accounts("kept"); len(live) != 2 || len(r.listKeys()) != 1 {
				t.Fatalf("after the rollback: accounts %+v, keys %v", live, r.listKeys())
			}
		})
	}
}

// A first mint whose platform create is refused leaves no account behind
// and stores nothing.
func TestMint_RefusedCreateDeletesTheFirstAccount(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.createMinted("primer", nil) // fills the name cache
	r.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/openai/keys", Status: 400})
	r.mustBadRequest(logical.CreateOperation, "keys/refused", map[string]any{
		"provider": "openai", "source": "openai-service-account", "openai_project_id": emulator.DefaultOpenAIProjectID,
	}, "the platform refused")
	live, deleted := r.accounts("refused")
	if len(live) != 0 || len(deleted) != 1 {
		t.Fatalf("live %+v, deleted %+v", live, deleted)
	}
	if len(r.listKeys()) != 1 || r.platformKeyNamed(platform.OpenAI, "refused") != nil {
		t.Fatal("a refused create stored something")
	}
	assertSettlesOnRollback(t, r.testEnv)
}

// Config's openai_project_ids bounds where keys mint (issue 16, item 1):
// a key naming another project is a 400 naming the field and the config
// list, and changes nothing; narrowing the list later stops the mints of a
// key whose project it no longer lists, on request and on schedule, and the
// current key stays. Empty, any project the admin key reaches is allowed.
func TestMint_ProjectsLimitedByConfig(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.emu.AddOpenAIProject("proj_team_a", "team A")
	r.emu.AddOpenAIProject("proj_team_b", "team B")
	r.mustBadRequest(logical.UpdateOperation, "config", map[string]any{"openai_project_ids": "proj_team_a,proj/../x"}, "openai_project_ids must be")
	r.mustOK(logical.UpdateOperation, "config", map[string]any{"openai_project_ids": " proj_team_a , proj_team_a,"})
	if got := r.mustOK(logical.ReadOperation, "config", nil).Data["openai_project_ids"]; !reflect.DeepEqual(got, []string{"proj_team_a"}) {
		t.Fatalf("openai_project_ids = %#v", got)
	}
	r.mustOK(logical.CreateOperation, "keys/staged", map[string]any{"provider": "openai", "api_key": openAIKey("proj1")})

	before := r.state()
	refused := map[string]struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		"create minting in team B's project": {logical.CreateOperation, "keys/team-a-x", map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_team_b"}},
		"switch a key to minting there":      {logical.UpdateOperation, "keys/staged", map[string]any{"source": "openai-service-account", "openai_project_id": "proj_team_b"}},
		"name the project on a staged key":   {logical.UpdateOperation, "keys/staged", map[string]any{"openai_project_id": "proj_team_b"}},
	}
	for label, c := range refused {
		t.Run(label, func(t *testing.T) {
			r.mustBadRequest(c.op, c.path, c.data, `openai_project_id "proj_team_b" is not in config's openai_project_ids`)
		})
	}
	if !reflect.DeepEqual(r.state(), before) || len(r.emu.ProviderState().OpenAIServiceAccounts) != 0 {
		t.Fatal("a refused write changed the platform or minted an account")
	}
	if got := r.read("staged"); got["source"] != sourceStaged || got["openai_project_id"] != "" {
		t.Fatalf("the refused update changed the key: %v", got)
	}
	if names := r.listKeys(); !reflect.DeepEqual(names, []string{"staged"}) {
		t.Fatalf("keys: %v", names)
	}

	// The team's own project works.
	r.mustOK(logical.CreateOperation, "keys/team-a-x", map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_team_a", "rotation_period": "1h"})
	first := r.openAISecret("team-a-x")

	// The list narrows: the next mint is refused, on request and on
	// schedule; nothing is minted and the current key stays.
	r.mustOK(logical.UpdateOperation, "config", map[string]any{"openai_project_ids": emulator.DefaultOpenAIProjectID})
	r.mustBadRequest(logical.UpdateOperation, "keys/team-a-x/rotate", nil, `mints into OpenAI project "proj_team_a", which config's openai_project_ids no longer lists`)
	r.tickAt(t0.Add(time.Hour))
	r.assertVersion("team-a-x", 1)
	if got := r.read("team-a-x"); got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "no longer lists") {
		t.Fatalf("after the scheduled rotation: %v", got)
	}
	if live, _ := r.accounts("team-a-x"); len(live) != 1 || r.openAISecret("team-a-x") != first {
		t.Fatalf("a refused mint changed something: %+v", live)
	}
	assertNoWAL(t, r.testEnv)

	// Cleared, any project is allowed again.
	r.mustOK(logical.UpdateOperation, "config", map[string]any{"openai_project_ids": ""})
	if got := r.mustOK(logical.ReadOperation, "config", nil).Data["openai_project_ids"]; !reflect.DeepEqual(got, []string{}) {
		t.Fatalf("openai_project_ids after clearing = %#v", got)
	}
	r.mustOK(logical.UpdateOperation, "keys/team-a-x/rotate", nil)
	r.assertVersion("team-a-x", 2)
}

// An archived OpenAI project still answers its GET (status "archived") but
// refuses service accounts (issue 16, item 15). A key write naming one (on
// create, switching a key to minting, naming it on a minting key) is a 400
// that says so and how to fix it, and changes nothing. A mint into a project
// archived after the key was written, on request or on schedule, is refused
// the same way: rotation_error says why, nothing is minted, the current key
// stays, and the scheduler waits for the next period instead of retrying.
func TestMint_ArchivedProject(t *testing.T) {
	r := newZeroTouchEnv(t)
	r.emu.AddOpenAIProject("proj_old", "old")
	r.emu.ArchiveOpenAIProject("proj_old")
	r.mustOK(logical.CreateOperation, "keys/staged", map[string]any{"provider": "openai", "api_key": openAIKey("archived1")})
	r.createMinted("minting", map[string]any{"rotation_period": "1h"})
	stagedBefore, mintingBefore := r.read("staged"), r.read("minting")
	before, accountsBefore := r.state(), r.emu.ProviderState().OpenAIServiceAccounts

	refused := map[string]struct {
		op   logical.Operation
		path string
		data map[string]any
	}{
		"create minting there":           {logical.CreateOperation, "keys/new", map[string]any{"provider": "openai", "source": "openai-service-account", "openai_project_id": "proj_old"}},
		"switch a staged key to minting": {logical.UpdateOperation, "keys/staged", map[string]any{"source": "openai-service-account", "openai_project_id": "proj_old"}},
		"move a minting key there":       {logical.UpdateOperation, "keys/minting", map[string]any{"openai_project_id": "proj_old"}},
	}
	for label, c := range refused {
		t.Run(label, func(t *testing.T) {
			r.mustBadRequest(c.op, c.path, c.data, `OpenAI project "proj_old" is archived`, "set openai_project_id to an active project", "nothing was changed")
		})
	}
	if !reflect.DeepEqual(r.state(), before) || !reflect.DeepEqual(r.emu.ProviderState().OpenAIServiceAccounts, accountsBefore) {
		t.Fatal("a refused write changed the platform or the service accounts")
	}
	if !reflect.DeepEqual(r.read("staged"), stagedBefore) || !reflect.DeepEqual(r.read("minting"), mintingBefore) {
		t.Fatal("a refused write changed a key")
	}
	if names := r.listKeys(); !reflect.DeepEqual(names, []string{"minting", "staged"}) {
		t.Fatalf("keys: %v", names)
	}

	// The minting key's project is archived later: its next mint is
	// refused on request and on schedule, and the current key stays.
	first := r.openAISecret("minting")
	r.emu.ArchiveOpenAIProject(emulator.DefaultOpenAIProjectID)
	r.mustBadRequest(logical.UpdateOperation, "keys/minting/rotate", nil,
		`key "minting" mints into OpenAI project "`+emulator.DefaultOpenAIProjectID+`", which is archived`, "the current key stays", "active project")
	r.tickAt(t0.Add(time.Hour))
	r.assertVersion("minting", 1)
	got := r.read("minting")
	if got["rotation_status"] != rotationFailed || !strings.Contains(got["rotation_error"].(string), "which is archived") ||
		!strings.Contains(got["rotation_error"].(string), "next attempt at the next scheduled time") {
		t.Fatalf("after the scheduled rotation: %v", got)
	}
	if live, _ := r.accounts("minting"); len(live) != 1 || r.openAISecret("minting") != first || got["service_account_id"] != live[0].ID {
		t.Fatalf("a refused mint changed something: %+v", live)
	}
	if creds := r.mustOK(logical.ReadOperation, "creds/minting", nil).Data["api_key"]; creds != first {
		t.Fatal("creds/ no longer serves the current key")
	}
	assertNoWAL(t, r.testEnv)
}
