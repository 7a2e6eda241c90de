//go:build acceptance

package acceptance

import (
	"os"
	"strings"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// TestSecretHygiene drives the flows where a secret is most likely to slip
// into a message (rejected tokens and keys, malformed keys, provider errors
// that echo key fragments, faults) and then checks that no API key or token
// used so far appears in the audit log, the server log or the CLI's error
// output. It may run at any point of the suite: the audit device and debug
// logging are on throughout, and TestMain (runSuite) scans every log again
// after the last test, over every secret the suite used, and fails the run
// on a leak.
func TestSecretHygiene(t *testing.T) {
	f := sharedFixture(t)

	// A token the platform rejects.
	e := newEmulator(t)
	mount := f.newMount(t, "hygiene", nil)
	bad := mustNotLeak("do-hygiene-" + randomString(alnum, 32))
	r := f.v.vault(t, as(f.root).withStdin(bad), "write", mount+"/config", "token=-", "api_url="+e.url,
		"anthropic_url="+e.url+"/anthropic", "openai_url="+e.url+"/openai")
	assertCode(t, r, 400)
	f.v.vault(t, as(f.root).withStdin(e.token).ok(), "write", mount+"/config", "token=-", "api_url="+e.url,
		"anthropic_url="+e.url+"/anthropic", "openai_url="+e.url+"/openai")

	// Keys the providers reject: OpenAI's 401 echoes a masked fragment.
	for _, p := range []string{"openai", "anthropic"} {
		k := newKey(p)
		e.Revoke(k)
		assertCode(t, f.v.vault(t, as(f.root), "write", mount+"/keys/"+uniqueName("hyg-revoked"), "provider="+p, "api_key="+k), 400)
	}
	// Malformed and admin keys.
	for _, k := range []string{
		mustNotLeak("sk-ant-admin01-" + randomString(alnum, 40)),
		mustNotLeak("sk-ant-api03-" + randomString(alnum, 20) + " " + randomString(alnum, 20)),
		mustNotLeak("sk-proj-" + randomString(alnum, 20) + "\x1b[31m" + randomString(alnum, 20)),
	} {
		assertCode(t, f.v.vault(t, as(f.root).withStdin(k), "write", mount+"/keys/"+uniqueName("hyg-bad"), "provider=anthropic", "api_key=-"), 400)
	}
	// Good keys through every path: create, update, creds, rename, delete.
	name := uniqueName("hyg-good")
	f.writeKey(t, mount, name, "openai", newOpenAIKey())
	f.v.vault(t, as(f.root).ok(), "write", mount+"/keys/"+name, "api_key="+newOpenAIKey())
	f.v.readData(t, f.root, mount+"/creds/"+name)
	renamed := uniqueName("hyg-renamed")
	f.v.vault(t, as(f.root).ok(), "write", mount+"/rename/"+name, "new_name="+renamed)
	// A platform failure after the key was verified.
	e.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Count: 1000, Mode: "status", Status: 500})
	assert5xx(t, f.v.vault(t, as(f.root), "write", mount+"/keys/"+renamed, "api_key="+newOpenAIKey()))
	f.v.vault(t, as(f.root).ok(), "delete", mount+"/keys/"+renamed)

	// The logs are live: the audit device recorded these requests and the
	// server logs at debug level.
	audit, err := os.ReadFile(f.v.auditPath)
	if err != nil || !strings.Contains(string(audit), mount+"/keys/") {
		t.Fatalf("the audit log %s does not record the requests (err %v)", f.v.auditPath, err)
	}
	serverLog, err := os.ReadFile(f.v.logPath)
	if err != nil || !strings.Contains(string(serverLog), "[DEBUG]") {
		t.Fatalf("the server log %s has no debug lines (err %v)", f.v.logPath, err)
	}

	if leaks := scanForSecrets(); len(leaks) > 0 {
		t.Errorf("plaintext secrets found:\n  %s", strings.Join(leaks, "\n  "))
	}
}
