//go:build acceptance

package acceptance

import (
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// Zero-touch rotation through the real vault CLI: a rejected admin key is a
// 400 naming the field; with a good one, a key created without api_key is
// minted, rotates on schedule to freshly minted keys, and the replaced
// service accounts are deleted (grace_period=0: at the next tick), so that
// in the end exactly the account behind the platform's secret lives.
func TestMint_ZeroTouchRotationThroughTheCLI(t *testing.T) {
	v, e, mount, admin := mintingMount(t)
	root := v.rootToken

	for path, field := range map[string]string{"config": "openai_admin_key", "keys/example": "source"} {
		if out := v.vault(t, as(root).ok(), "path-help", mount+"/"+path).Stdout; !strings.Contains(out, "\n    "+field+" (") {
			t.Errorf("path-help %s does not document %s", path, field)
		}
	}

	rejected := mustNotLeak("sk-admin-" + randomString(alnum, 40))
	r := v.vault(t, as(root).withStdin(rejected), "write", mount+"/config", "openai_admin_key=-")
	if r.Code == 0 || !strings.Contains(r.Stderr, "rejected openai_admin_key (HTTP 401)") {
		t.Fatalf("a rejected admin key: %s", r)
	}
	v.vault(t, as(root).withStdin(admin).ok(), "write", mount+"/config", "openai_admin_key=-")
	if cfg := v.readData(t, root, mount+"/config"); cfg["openai_admin_key_set"] != true {
		t.Fatalf("config: %v", cfg)
	}

	name := uniqueName("mint")
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "provider=openai", "source=openai-service-account",
		"openai_project_id="+emulator.DefaultOpenAIProjectID, "grace_period=0")
	read := v.readData(t, root, mount+"/keys/"+name)
	uuid := str(read, "uuid")
	if num(read, "version") != 1 || str(read, "source") != "openai-service-account" || str(read, "service_account_id") == "" {
		t.Fatalf("after create: %v", read)
	}
	platformSecret := func() string {
		if k := e.key("openai", uuid); k != nil {
			return k.Secret
		}
		return ""
	}
	live := func() (accounts []emulator.OpenAIServiceAccountState) {
		for _, a := range e.ProviderState().OpenAIServiceAccounts {
			if strings.HasPrefix(a.Name, "vault-"+name+"-v") && !a.Deleted {
				accounts = append(accounts, a)
			}
		}
		return accounts
	}
	if l := live(); len(l) != 1 || l[0].APIKey != platformSecret() || !strings.HasPrefix(l[0].APIKey, "sk-svcacct-") {
		t.Fatalf("the first minted key is not on the platform: %+v", l)
	}

	// Rotate every 3 s; no key is ever staged.
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=3s")
	eventually(t, 40*time.Second, "three minted rotations", func() bool {
		return num(v.readData(t, root, mount+"/keys/"+name), "version") >= 4
	})
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "rotation_period=0")
	eventually(t, 20*time.Second, "the replaced service accounts deleted", func() bool {
		l := live()
		return len(l) == 1 && l[0].APIKey == platformSecret()
	})
	read = v.readData(t, root, mount+"/keys/"+name)
	if str(read, "retire_status") != "retired" || num(read, "retirements_pending") != 0 || str(read, "rotation_error") != "" {
		t.Fatalf("after the rotations: %v", read)
	}
	if all := e.ProviderState().OpenAIServiceAccounts; len(all) != num(read, "version") {
		t.Fatalf("%d service accounts for %d versions: one was minted and not used", len(all), num(read, "version"))
	}
	status := v.readData(t, root, mount+"/status")
	if num(status, "retirements_pending") != 0 || num(status, "retirements_retrying") != 0 || num(status, "failed") != 0 {
		t.Fatalf("status: %v", status)
	}

	// Deleting the key takes its service account with it.
	v.vault(t, as(root).ok(), "delete", mount+"/keys/"+name)
	if l := live(); len(l) != 0 {
		t.Fatalf("deleting the key left service accounts: %+v", l)
	}
}

// An archived OpenAI project through the real vault CLI (issue 16, item 15):
// a key naming one is refused with a 400 that says it is archived and to
// pick an active project, and nothing is created; a minting key whose
// project is archived later keeps its current key when a rotation is
// asked for, and the error says why.
func TestMint_ArchivedProjectThroughTheCLI(t *testing.T) {
	v, e, mount, admin := mintingMount(t)
	root := v.rootToken
	v.vault(t, as(root).withStdin(admin).ok(), "write", mount+"/config", "openai_admin_key=-")
	archived := e.AddOpenAIProject("", "archived")
	e.ArchiveOpenAIProject(archived)

	refused := uniqueName("archived")
	r := v.vault(t, as(root), "write", mount+"/keys/"+refused, "provider=openai", "source=openai-service-account", "openai_project_id="+archived)
	assertCode(t, r, 400, `OpenAI project "`+archived+`" is archived`, "set openai_project_id to an active project")
	assertNotFound(t, v.vault(t, as(root), "read", mount+"/keys/"+refused))
	if n := len(e.ProviderState().OpenAIServiceAccounts); n != 0 {
		t.Fatalf("%d service accounts after a refused write", n)
	}

	name := uniqueName("mint")
	v.vault(t, as(root).ok(), "write", mount+"/keys/"+name, "provider=openai", "source=openai-service-account",
		"openai_project_id="+emulator.DefaultOpenAIProjectID)
	uuid := str(v.readData(t, root, mount+"/keys/"+name), "uuid")
	first := e.key("openai", uuid).Secret
	e.ArchiveOpenAIProject(emulator.DefaultOpenAIProjectID)
	r = v.vault(t, as(root), "write", "-force", mount+"/keys/"+name+"/rotate")
	assertCode(t, r, 400, "which is archived", "the current key stays")
	if read := v.readData(t, root, mount+"/keys/"+name); num(read, "version") != 1 || e.key("openai", uuid).Secret != first {
		t.Fatalf("a refused mint changed the key: %v", read)
	}
	if n := len(e.ProviderState().OpenAIServiceAccounts); n != 1 {
		t.Fatalf("%d service accounts, want the first one only", n)
	}
}

// mintingMount is a rotation mount whose emulated OpenAI accepts the admin
// key it returns (not yet written to config). Every key the emulated
// OpenAI mints counts as a secret for the suite's leak checks.
func mintingMount(t *testing.T) (v *vaultServer, e *emu, mount, admin string) {
	t.Helper()
	v = rotationVault(t)
	e = newEmulator(t)
	mount = rotationMount(t, v, e)
	admin = mustNotLeak("sk-admin-" + randomString(alnum, 40))
	e.AddAdminKey(emulator.ProviderOpenAI, admin)
	t.Cleanup(func() {
		for _, a := range e.ProviderState().OpenAIServiceAccounts {
			mustNotLeak(a.APIKey)
		}
	})
	return v, e, mount, admin
}
