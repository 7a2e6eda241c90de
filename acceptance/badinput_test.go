//go:build acceptance

package acceptance

import (
	"fmt"
	"strings"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// TestBadNames: every invalid name is a 400 that quotes the naming rule, and
// nothing changes on the platform or in Vault.
func TestBadNames(t *testing.T) {
	f := sharedFixture(t)
	// A key that is itself a valid name (lower case), to put inside a name.
	// It is not recorded as a secret: it travels in the request path, which
	// Vault writes to the audit log and the CLI repeats in its errors.
	inName := "sk-ant-api03-" + randomString(lowerAln, 32)
	cases := map[string]struct {
		name, provider, key string
	}{
		"upper case":        {name: "Team-A-Key"},
		"space":             {name: "team a key"},
		"underscore":        {name: "team_a_key"},
		"slash":             {name: "team-a/key"},
		"unicode":           {name: "clé-équipe"},
		"too long":          {name: strings.Repeat("a", 65)},
		"starts with sk-":   {name: "sk-team-a"},
		"contains the key":  {name: "copy." + inName, key: inName},
		"equal to the key":  {name: inName, key: inName},
		"colon":             {name: "team:a"},
		"openai key inside": {name: "sk-proj-" + randomString(lowerAln, 20), provider: "openai"},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			provider, key := c.provider, c.key
			if provider == "" {
				provider = "anthropic"
			}
			if key == "" {
				key = newKey(provider)
			}
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+c.name, "provider="+provider, "api_key="+key)
			assertCode(t, r, 400, "name")
			if !strings.Contains(r.Stderr, "lowercase") || !strings.Contains(r.Stderr, "64") {
				t.Errorf("the error does not quote the naming rule:\n%s", r)
			}
			f.assertUnchanged(t, before, f.mount, f.emu)
		})
	}

	// Vault's HTTP layer refuses a control character in the path before the
	// plugin sees it; the caller still gets a 400 and nothing changes.
	t.Run("tab", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/team\ta", "provider=anthropic", "api_key="+newAnthropicKey())
		assertCode(t, r, 400)
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	t.Run("64 characters is fine", func(t *testing.T) {
		name := strings.Repeat("b", 58) + randomString(lowerAln, 6)
		f.writeKey(t, f.mount, name, "anthropic", newAnthropicKey())
		f.v.vault(t, as(f.root).ok(), "delete", f.mount+"/keys/"+name)
	})
}

// TestBadKeys: each invalid key class is a 400 with a clear message that
// never repeats the key, and nothing changes.
func TestBadKeys(t *testing.T) {
	f := sharedFixture(t)
	good := newAnthropicKey()
	type badKey struct {
		provider string
		key      string // sent on stdin (api_key=-) so control characters survive
		args     []string
		want     string
	}
	cases := map[string]badKey{
		"openai key as anthropic":   {provider: "anthropic", key: newOpenAIKey(), want: "Anthropic"},
		"anthropic key as openai":   {provider: "openai", key: newAnthropicKey(), want: "api_key"},
		"not a key at all (openai)": {provider: "openai", key: mustNotLeak("pk-" + randomString(alnum, 40)), want: "api_key"},
		"anthropic admin key":       {provider: "anthropic", key: mustNotLeak("sk-ant-admin01-" + randomString(alnum, 40)), want: "admin"},
		"openai admin key":          {provider: "openai", key: mustNotLeak("sk-admin-" + randomString(alnum, 40)), want: "admin"},
		"inner space":               {provider: "anthropic", key: mustNotLeak("sk-ant-api03-" + randomString(alnum, 20) + " " + randomString(alnum, 20)), want: "api_key"},
		"inner newline":             {provider: "openai", key: mustNotLeak("sk-proj-" + randomString(alnum, 20) + "\n" + randomString(alnum, 20)), want: "api_key"},
		"control character":         {provider: "anthropic", key: mustNotLeak("sk-ant-api03-" + randomString(alnum, 20) + "\x07" + randomString(alnum, 20)), want: "api_key"},
		"longer than 1024":          {provider: "anthropic", key: mustNotLeak("sk-ant-api03-" + randomString(alnum, 1100)), want: "1024"},
		"empty key":                 {provider: "anthropic", args: []string{"api_key="}, want: "api_key"},
		"white space only":          {provider: "openai", key: "   \t  ", want: "api_key"},
		"missing api_key":           {provider: "anthropic", args: []string{}, want: "api_key"},
		"missing provider":          {args: []string{"api_key=" + good}, want: "provider"},
		"unknown provider":          {provider: "google", args: []string{"api_key=" + good}, want: "provider"},
		"provider in capitals":      {provider: "Anthropic", args: []string{"api_key=" + good}, want: "provider"},
		"only the prefix":           {provider: "anthropic", key: "sk-ant-", want: "key"},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			name := uniqueName("bad-key")
			args := []string{"write", f.mount + "/keys/" + name}
			if c.provider != "" {
				args = append(args, "provider="+c.provider)
			}
			stdin := ""
			if c.args != nil {
				args = append(args, c.args...)
			} else {
				args = append(args, "api_key=-")
				stdin = c.key
			}
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root).withStdin(stdin), args...)
			assertCode(t, r, 400, c.want)
			f.assertUnchanged(t, before, f.mount, f.emu)
		})
	}

	t.Run("update with a bad key keeps the old one", func(t *testing.T) {
		name := uniqueName("bad-update")
		k := newOpenAIKey()
		d := f.writeKey(t, f.mount, name, "openai", k)
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+name, "api_key="+mustNotLeak("sk-admin-"+randomString(alnum, 40)))
		assertCode(t, r, 400, "admin")
		f.assertUnchanged(t, before, f.mount, f.emu)
		if d2 := f.v.readData(t, f.root, f.mount+"/keys/"+name); num(d2, "version") != num(d, "version") || str(d2, "key_hint") != str(d, "key_hint") {
			t.Errorf("key changed: %v -> %v", d, d2)
		}
		if c := f.v.readData(t, f.root, f.mount+"/creds/"+name); str(c, "api_key") != k {
			t.Errorf("creds no longer return the stored key")
		}
	})
}

// TestProviderRejectsKey: a key the provider answers 401 for is a 400 saying
// so; on create nothing is pushed, on update the old secret stays.
func TestProviderRejectsKey(t *testing.T) {
	f := sharedFixture(t)
	for _, provider := range []string{"anthropic", "openai"} {
		t.Run(provider, func(t *testing.T) {
			revoked := newKey(provider)
			f.emu.Revoke(revoked)
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+uniqueName("rejected"), "provider="+provider, "api_key="+revoked)
			assertCode(t, r, 400, "rejected by the provider (HTTP 401)")
			f.assertUnchanged(t, before, f.mount, f.emu)

			name := uniqueName("rejected-update")
			k := newKey(provider)
			d := f.writeKey(t, f.mount, name, provider, k)
			before = f.snapshot(t, f.mount, f.emu)
			r = f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+name, "api_key="+revoked)
			assertCode(t, r, 400, "rejected by the provider (HTTP 401)")
			f.assertUnchanged(t, before, f.mount, f.emu)
			if d2 := f.v.readData(t, f.root, f.mount+"/keys/"+name); num(d2, "version") != num(d, "version") {
				t.Errorf("version moved after a rejected update: %v", d2)
			}
			if c := f.v.readData(t, f.root, f.mount+"/creds/"+name); str(c, "api_key") != k {
				t.Errorf("creds no longer return the stored key")
			}
		})
	}
}

// faultMount gives a test its own emulator and mount, so faults and broken
// URLs never touch the shared ones. overrides replace config fields.
func faultMount(t *testing.T, f *fixture, overrides ...string) (*emu, string) {
	t.Helper()
	e := newEmulator(t)
	mount := f.newMount(t, "fault", e)
	if len(overrides) > 0 {
		f.v.vault(t, as(f.root).ok(), append([]string{"write", mount + "/config"}, overrides...)...)
	}
	return e, mount
}

func closedURL(t *testing.T) string {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port)
}

// TestProviderUnavailable: a provider that is down, overloaded or rate
// limiting means the key "could not be verified": a 5xx, nothing pushed.
func TestProviderUnavailable(t *testing.T) {
	f := sharedFixture(t)
	type tc struct {
		provider string
		setup    func(t *testing.T, e *emu) []string // returns config overrides
	}
	cases := map[string]tc{
		"anthropic down": {provider: "anthropic", setup: func(t *testing.T, e *emu) []string {
			return []string{"anthropic_url=" + closedURL(t)}
		}},
		"openai down": {provider: "openai", setup: func(t *testing.T, e *emu) []string {
			return []string{"openai_url=" + closedURL(t)}
		}},
		"anthropic 529 overloaded": {provider: "anthropic", setup: func(t *testing.T, e *emu) []string {
			e.InjectFault(emulator.Fault{Path: "/anthropic/", Count: 1000, Mode: "status", Status: 529})
			return nil
		}},
		"openai 503": {provider: "openai", setup: func(t *testing.T, e *emu) []string {
			e.InjectFault(emulator.Fault{Path: "/openai/", Count: 1000, Mode: "status", Status: 503})
			return nil
		}},
		"anthropic 429": {provider: "anthropic", setup: func(t *testing.T, e *emu) []string {
			e.InjectFault(emulator.Fault{Path: "/anthropic/", Count: 1000, Mode: "status", Status: 429})
			return nil
		}},
		"openai drops the connection": {provider: "openai", setup: func(t *testing.T, e *emu) []string {
			e.InjectFault(emulator.Fault{Path: "/openai/", Count: 1000, Mode: "drop"})
			return nil
		}},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			e, mount := faultMount(t, f)
			if overrides := c.setup(t, e); len(overrides) > 0 {
				f.v.vault(t, as(f.root).ok(), append([]string{"write", mount + "/config"}, overrides...)...)
			}
			before := f.snapshot(t, mount, e)
			r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+uniqueName("unverified"), "provider="+c.provider, "api_key="+newKey(c.provider))
			assert5xx(t, r, "could not be verified")
			f.assertUnchanged(t, before, mount, e)
		})
	}
}

// TestPlatformFaults: the platform answering 500, or being unreachable, is a
// 5xx; nothing is stored, and an update keeps the old secret everywhere.
func TestPlatformFaults(t *testing.T) {
	f := sharedFixture(t)

	t.Run("create answered with 500", func(t *testing.T) {
		e, mount := faultMount(t, f)
		e.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Count: 1000, Mode: "status", Status: 500})
		before := f.snapshot(t, mount, e)
		r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+uniqueName("p500"), "provider=anthropic", "api_key="+newAnthropicKey())
		assert5xx(t, r, "500")
		f.assertUnchanged(t, before, mount, e)
	})

	t.Run("update answered with 500", func(t *testing.T) {
		e, mount := faultMount(t, f)
		name := uniqueName("p500-update")
		k := newOpenAIKey()
		d := f.writeKey(t, mount, name, "openai", k)
		e.InjectFault(emulator.Fault{Method: "PUT", Path: "/v2/gen-ai/openai/keys/", Count: 1000, Mode: "status", Status: 500})
		before := f.snapshot(t, mount, e)
		r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+name, "api_key="+newOpenAIKey())
		assert5xx(t, r, "500")
		f.assertUnchanged(t, before, mount, e)
		if d2 := f.v.readData(t, f.root, mount+"/keys/"+name); num(d2, "version") != num(d, "version") || str(d2, "key_hint") != str(d, "key_hint") {
			t.Errorf("key changed after a failed update: %v -> %v", d, d2)
		}
		if c := f.v.readData(t, f.root, mount+"/creds/"+name); str(c, "api_key") != k {
			t.Errorf("creds no longer return the stored key")
		}
	})

	t.Run("delete answered with 500", func(t *testing.T) {
		e, mount := faultMount(t, f)
		name := uniqueName("p500-delete")
		f.writeKey(t, mount, name, "anthropic", newAnthropicKey())
		e.InjectFault(emulator.Fault{Method: "DELETE", Path: "/v2/gen-ai/anthropic/keys/", Count: 1000, Mode: "status", Status: 500})
		before := f.snapshot(t, mount, e)
		r := f.v.vault(t, as(f.root), "delete", mount+"/keys/"+name)
		assert5xx(t, r, "500")
		f.assertUnchanged(t, before, mount, e)
	})

	t.Run("platform unreachable", func(t *testing.T) {
		e, mount := faultMount(t, f, "verify_keys=false")
		e.close()
		before := f.snapshot(t, mount, e)
		r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+uniqueName("unreachable"), "provider=openai", "api_key="+newOpenAIKey())
		assert5xx(t, r)
		f.assertUnchanged(t, before, mount, e)
	})

	t.Run("platform not answering within request_timeout", func(t *testing.T) {
		e, mount := faultMount(t, f, "request_timeout=2s")
		e.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Count: 1000, Mode: "hang"})
		before := f.snapshot(t, mount, e)
		r := f.v.vault(t, as(f.root), "write", mount+"/keys/"+uniqueName("slow"), "provider=anthropic", "api_key="+newAnthropicKey())
		assert5xx(t, r)
		f.assertUnchanged(t, before, mount, e)
	})
}

// TestFieldNameReachesTheCaller: a bad second name says which field was
// wrong, through the CLI, and changes nothing.
func TestFieldNameReachesTheCaller(t *testing.T) {
	f := sharedFixture(t)
	name := uniqueName("field")
	f.writeKey(t, f.mount, name, "anthropic", newKey("anthropic"))
	cases := map[string][]string{
		"reassign to": {"write", f.mount + "/keys/" + name + "/reassign", "to=Not_A_Name"},
		"rename to":   {"write", f.mount + "/rename/" + name, "new_name=Not_A_Name"},
	}
	for label, args := range cases {
		t.Run(label, func(t *testing.T) {
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), args...)
			field := strings.SplitN(args[2], "=", 2)[0]
			assertCode(t, r, 400, field+": invalid key name", "lowercase")
			f.assertUnchanged(t, before, f.mount, f.emu)
		})
	}
}
