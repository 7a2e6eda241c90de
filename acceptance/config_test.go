//go:build acceptance

package acceptance

import (
	"strings"
	"testing"
)

// TestConfig covers gradient/config: unconfigured read, a token the platform
// rejects, bad URLs, the token never readable, partial updates, delete.
func TestConfig(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "cfg", nil)
	cfg := mount + "/config"
	urls := []string{"api_url=" + e.url, "anthropic_url=" + e.url + "/anthropic", "openai_url=" + e.url + "/openai"}

	t.Run("unconfigured read is 404", func(t *testing.T) {
		assertNotFound(t, f.v.vault(t, as(f.root), "read", cfg))
	})

	t.Run("token is required on the first write", func(t *testing.T) {
		r := f.v.vault(t, as(f.root), append([]string{"write", cfg}, urls...)...)
		assertCode(t, r, 400, "token")
		assertNotFound(t, f.v.vault(t, as(f.root), "read", cfg))
	})

	t.Run("token the platform rejects is refused and nothing is saved", func(t *testing.T) {
		bad := mustNotLeak("do-wrong-" + randomString(alnum, 32))
		before := e.State()
		r := f.v.vault(t, as(f.root).withStdin(bad), append([]string{"write", cfg, "token=-"}, urls...)...)
		assertCode(t, r, 400, "token")
		if !strings.Contains(strings.ToLower(r.Stderr), "reject") {
			t.Errorf("expected the message to say the token was rejected:\n%s", r)
		}
		assertNotFound(t, f.v.vault(t, as(f.root), "read", cfg))
		if after := e.State(); len(after.AnthropicKeys)+len(after.OpenAIKeys) != len(before.AnthropicKeys)+len(before.OpenAIKeys) {
			t.Errorf("the platform changed: %+v", after)
		}
	})

	for _, bad := range []string{"api_url=ftp://127.0.0.1/x", "anthropic_url=file:///etc/passwd", "openai_url=not a url"} {
		t.Run("bad URL "+bad, func(t *testing.T) {
			args := []string{"write", cfg, "token=-", bad}
			for _, u := range urls {
				if strings.SplitN(u, "=", 2)[0] != strings.SplitN(bad, "=", 2)[0] {
					args = append(args, u)
				}
			}
			r := f.v.vault(t, as(f.root).withStdin(e.token), args...)
			assertCode(t, r, 400, strings.SplitN(bad, "=", 2)[0])
			assertNotFound(t, f.v.vault(t, as(f.root), "read", cfg))
		})
	}

	t.Run("write, then read without the token", func(t *testing.T) {
		f.v.vault(t, as(f.root).withStdin(e.token).ok(), append([]string{"write", cfg, "token=-"}, urls...)...)
		out := f.v.vault(t, as(f.root).ok(), "read", "-format=json", cfg).Stdout
		if strings.Contains(out, e.token) {
			t.Fatalf("config read shows the token:\n%s", out)
		}
		d := decodeData(t, out)
		if _, ok := d["token"]; ok {
			t.Errorf("config read has a token field: %v", d)
		}
		if d["token_set"] != true {
			t.Errorf("token_set = %v, want true", d["token_set"])
		}
		for k, want := range map[string]string{"api_url": e.url, "anthropic_url": e.url + "/anthropic", "openai_url": e.url + "/openai"} {
			if got := str(d, k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if d["verify_keys"] != true {
			t.Errorf("verify_keys = %v, want true by default", d["verify_keys"])
		}
		for _, k := range []string{"request_timeout", "name_cache_ttl"} {
			if _, ok := d[k]; !ok {
				t.Errorf("config read lacks %s: %v", k, d)
			}
		}
		// The table output and -field=token do not show it either.
		if out := f.v.vault(t, as(f.root).ok(), "read", cfg).Stdout; strings.Contains(out, e.token) {
			t.Errorf("config read (table) shows the token:\n%s", out)
		}
		r := f.v.vault(t, as(f.root), "read", "-field=token", cfg)
		if r.Code == 0 || strings.Contains(r.Stdout, e.token) {
			t.Errorf("read -field=token returned something:\n%s", r)
		}
	})

	t.Run("update without the token keeps it", func(t *testing.T) {
		f.v.vault(t, as(f.root).ok(), "write", cfg, "verify_keys=false", "request_timeout=45s")
		d := f.v.readData(t, f.root, cfg)
		if d["verify_keys"] != false || d["token_set"] != true {
			t.Errorf("after update: %v", d)
		}
		// The stored token still works: a key write reaches the platform.
		name := uniqueName("cfg-key")
		k := newAnthropicKey()
		f.v.vault(t, as(f.root).ok(), "write", mount+"/keys/"+name, "provider=anthropic", "api_key="+k)
		if got := e.keysNamed(name); len(got) != 1 || got[0].Secret != k {
			t.Errorf("platform keys named %s: %+v", name, got)
		}
		f.v.vault(t, as(f.root).ok(), "write", cfg, "verify_keys=true")
	})

	t.Run("a new token is checked too", func(t *testing.T) {
		bad := mustNotLeak("do-wrong-" + randomString(alnum, 32))
		r := f.v.vault(t, as(f.root).withStdin(bad), "write", cfg, "token=-")
		assertCode(t, r, 400, "token")
		// The old, valid token is still in use.
		d := f.v.readData(t, f.root, cfg)
		if d["token_set"] != true {
			t.Errorf("token_set = %v after a refused token", d["token_set"])
		}
		name := uniqueName("cfg-key")
		f.v.vault(t, as(f.root).ok(), "write", mount+"/keys/"+name, "provider=openai", "api_key="+newOpenAIKey())
	})

	t.Run("delete", func(t *testing.T) {
		f.v.vault(t, as(f.root).ok(), "delete", cfg)
		assertNotFound(t, f.v.vault(t, as(f.root), "read", cfg))
	})
}
