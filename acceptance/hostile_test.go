//go:build acceptance

package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHostileInput sends what an attacker or a broken script would through
// Vault's HTTP API and the vault CLI: oversized bodies, wrong JSON types,
// bodies that are not JSON objects, unknown fields, path traversal in names
// and in fields, names that are keys, keys with newlines and NULs inside,
// and base URLs with other schemes than http(s). Each is refused with a 400
// (Vault's own 413 for a body over its max_request_size) and a message that
// says what is wrong, and nothing changes: not the platform, not the key
// list, not the config, not the existing key. Every key sent is recorded
// for the suite's secret scan, and every HTTP answer goes to a log it scans.
func TestHostileInput(t *testing.T) {
	f := sharedFixture(t)
	e, mount := faultMount(t, f)
	existing := uniqueName("hostile-existing")
	other := uniqueName("hostile-other")
	existingKey := newAnthropicKey()
	f.writeKey(t, mount, existing, "anthropic", existingKey)
	f.writeKey(t, mount, other, "anthropic", newAnthropicKey())

	good := func() string { return newAnthropicKey() }
	obj := func(kv ...any) string {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	keyInName := "sk-ant-api03-" + randomString(lowerAln, 32) // travels in the path: not a secret (see TestBadNames)
	nul := mustNotLeak("sk-ant-api03-" + randomString(alnum, 20) + "\x00" + randomString(alnum, 20))
	newline := mustNotLeak("sk-proj-" + randomString(alnum, 20) + "\n" + randomString(alnum, 20))
	crlf := mustNotLeak("sk-ant-api03-" + randomString(alnum, 20) + "\r\n" + randomString(alnum, 20))
	// A key pasted as a field name: the plugin's answer does not repeat it,
	// but Vault's audit device writes field names in plain text (it HMACs
	// only the values), before any plugin runs; so it is not recorded as a
	// secret here, as keys in request paths are not (TestBadNames).
	keyAsField := "sk-ant-api03-" + randomString(alnum, 40)

	type httpCase struct {
		method, path, body string
		status             int
		want               []string
	}
	cases := map[string]httpCase{
		// Size.
		// 33 MB of white space before a valid body: over Vault's
		// max_request_size (32 MB), which Vault answers itself.
		"body over max_request_size": {method: "PUT", path: "keys/" + uniqueName("huge"),
			body: strings.Repeat(" ", 33<<20) + obj("provider", "anthropic", "api_key", good()), status: 413, want: []string{"too large"}},
		// Vault 1.21's listener refuses a JSON string longer than its
		// limit before any plugin sees it, and answers 500: Vault's own
		// behaviour, recorded here so that a change shows.
		"a string over Vault's JSON limit": {method: "PUT", path: "keys/" + uniqueName("big-desc"),
			body: obj("provider", "anthropic", "api_key", good(), "description", strings.Repeat("d", 2<<20)), status: 500, want: []string{"JSON string value exceeds allowed length"}},
		"description of 512 kB": {method: "PUT", path: "keys/" + uniqueName("big-desc"),
			body: obj("provider", "anthropic", "api_key", good(), "description", strings.Repeat("d", 512<<10)), status: 400, want: []string{"description is", "at most 1024"}},
		"api_key of 512 kB": {method: "PUT", path: "keys/" + uniqueName("big-key"),
			body: obj("provider", "anthropic", "api_key", mustNotLeak("sk-ant-api03-"+randomString(alnum, 512<<10))), status: 400, want: []string{"api_key is", "at most 1024"}},
		"name of 10 kB": {method: "PUT", path: "keys/" + strings.Repeat("n", 10<<10),
			body: obj("provider", "anthropic", "api_key", good()), status: 400, want: []string{"invalid key name (length 10240)"}},
		"next_api_key of 512 kB": {method: "PUT", path: "keys/" + existing,
			body: obj("next_api_key", mustNotLeak("sk-ant-api03-"+randomString(alnum, 512<<10))), status: 400, want: []string{"1024"}},

		// Wrong JSON types and bodies that are not objects.
		"provider as a list": {method: "PUT", path: "keys/" + uniqueName("types"),
			body: obj("provider", []string{"anthropic"}, "api_key", good()), status: 400, want: []string{"provider"}},
		"api_key as a number": {method: "PUT", path: "keys/" + uniqueName("types"),
			body: obj("provider", "anthropic", "api_key", 12345678901234), status: 400, want: []string{"api_key"}},
		"api_key as an object": {method: "PUT", path: "keys/" + uniqueName("types"),
			body: obj("provider", "anthropic", "api_key", map[string]any{"value": "x"}), status: 400, want: []string{"api_key"}},
		"force as a word on delete": {method: "DELETE", path: "keys/" + existing + "?force=maybe", status: 400, want: []string{"force"}},
		"rotation_period as a list": {method: "PUT", path: "keys/" + existing,
			body: obj("rotation_period", []int{1}), status: 400, want: []string{"rotation_period"}},
		"new_name as an object": {method: "PUT", path: "rename/" + existing,
			body: obj("new_name", map[string]any{"name": other}), status: 400, want: []string{"new_name"}},
		"api_key as a list holding a key": {method: "PUT", path: "keys/" + uniqueName("types"),
			body: obj("provider", "anthropic", "api_key", []string{newAnthropicKey()}), status: 400, want: []string{"api_key must be a string"}},
		"next_api_key as an object holding a key": {method: "PUT", path: "keys/" + existing,
			body: obj("next_api_key", map[string]string{"key": newAnthropicKey()}), status: 400, want: []string{"next_api_key must be a string"}},
		"token as a list holding a token": {method: "PUT", path: "config",
			body: obj("token", []string{mustNotLeak("do-token-" + randomString(alnum, 32))}), status: 400, want: []string{"token must be a string"}},
		"openai_admin_key as a list holding a key": {method: "PUT", path: "config",
			body: obj("openai_admin_key", []string{mustNotLeak("sk-admin-" + randomString(alnum, 40))}), status: 400, want: []string{"openai_admin_key must be a string"}},
		"anthropic_admin_key as an object holding a key": {method: "PUT", path: "config",
			body: obj("anthropic_admin_key", map[string]string{"key": mustNotLeak("sk-ant-admin01-" + randomString(alnum, 40))}), status: 400, want: []string{"anthropic_admin_key must be a string"}},
		"to as a list": {method: "PUT", path: "keys/" + existing + "/reassign",
			body: obj("to", []string{other}), status: 400, want: []string{"to"}},
		"request_timeout as a word": {method: "PUT", path: "config",
			body: obj("request_timeout", "forever"), status: 400, want: []string{"request_timeout"}},
		"verify_keys as a word": {method: "PUT", path: "config",
			body: obj("verify_keys", "perhaps"), status: 400, want: []string{"verify_keys"}},
		"rate_limit_per_minute as a word": {method: "PUT", path: "config",
			body: obj("rate_limit_per_minute", "many"), status: 400, want: []string{"rate_limit_per_minute"}},
		"body not JSON": {method: "PUT", path: "keys/" + uniqueName("notjson"),
			body: "provider=anthropic&api_key=" + good(), status: 400, want: []string{"JSON"}},
		"body a JSON list": {method: "PUT", path: "keys/" + uniqueName("list"),
			body: `["anthropic"]`, status: 400, want: []string{"JSON"}},

		// Unknown fields: named when they look like a field, never echoed
		// when they look like a key.
		"unknown field on create": {method: "PUT", path: "keys/" + uniqueName("unknown"),
			body: obj("provider", "anthropic", "api_key", good(), "api-key", "x"), status: 400, want: []string{`unknown field "api-key"`}},
		"unknown field on config": {method: "PUT", path: "config",
			body: obj("tokn", "x"), status: 400, want: []string{`unknown field "tokn"`}},
		"unknown field on rename": {method: "PUT", path: "rename/" + existing,
			body: obj("new_name", uniqueName("renamed"), "force", true), status: 400, want: []string{`unknown field "force"`}},
		"unknown field on reassign": {method: "PUT", path: "keys/" + existing + "/reassign",
			body: obj("to", other, "dry_run", true), status: 400, want: []string{`unknown field "dry_run"`}},
		"a key as a field name": {method: "PUT", path: "keys/" + existing,
			body: obj(keyAsField, "1"), status: 400, want: []string{"unknown field (not shown"}},

		// Path traversal, in the path and in fields.
		"%2f..%2f in the name": {method: "PUT", path: "keys/a%2f..%2f..%2fconfig",
			body: obj("provider", "anthropic", "api_key", good()), status: 400, want: []string{"invalid key name"}},
		"..%2f in the name": {method: "PUT", path: "keys/..%2fconfig",
			body: obj("provider", "anthropic", "api_key", good()), status: 400, want: []string{"invalid key name"}},
		"%2e%2e as the name": {method: "PUT", path: "keys/%2e%2e",
			body: obj("provider", "anthropic", "api_key", good()), status: 400, want: []string{"invalid key name"}},
		"a..b as the name": {method: "PUT", path: "keys/a..b",
			body: obj("provider", "anthropic", "api_key", good()), status: 400, want: []string{`contains ".."`}},
		"rename to ../config": {method: "PUT", path: "rename/" + existing,
			body: obj("new_name", "../config"), status: 400, want: []string{"new_name: invalid key name"}},
		"reassign to ../x": {method: "PUT", path: "keys/" + existing + "/reassign",
			body: obj("to", "../"+other), status: 400, want: []string{"to: invalid key name"}},
		"uuid with ../": {method: "PUT", path: "keys/" + uniqueName("adopt"),
			body: obj("provider", "anthropic", "api_key", good(), "uuid", "../../agents/x"), status: 400, want: []string{"uuid is not a platform key uuid"}},
		"%2f in a rename source": {method: "PUT", path: "rename/" + existing + "%2f..%2f" + other,
			body: obj("new_name", uniqueName("renamed")), status: 400, want: []string{"invalid key name"}},

		// Names that are keys.
		"a name that is a key": {method: "PUT", path: "keys/" + keyInName,
			body: obj("provider", "anthropic", "api_key", keyInName), status: 400, want: []string{"invalid key name"}},
		"a name that contains the key": {method: "PUT", path: "keys/copy." + keyInName,
			body: obj("provider", "anthropic", "api_key", keyInName), status: 400, want: []string{"contains the API key"}},

		// Keys with newlines and NULs inside, on every field that takes one.
		"api_key with a NUL": {method: "PUT", path: "keys/" + uniqueName("nul"),
			body: obj("provider", "anthropic", "api_key", nul), status: 400, want: []string{"control characters"}},
		"api_key with a newline": {method: "PUT", path: "keys/" + uniqueName("newline"),
			body: obj("provider", "openai", "api_key", newline), status: 400, want: []string{"white space"}},
		"update to a key with CR LF": {method: "PUT", path: "keys/" + existing,
			body: obj("api_key", crlf), status: 400, want: []string{"white space"}},
		"rotate to a key with a NUL": {method: "PUT", path: "keys/" + existing + "/rotate",
			body: obj("api_key", nul), status: 400, want: []string{"control characters"}},
		"staged key with a newline": {method: "PUT", path: "keys/" + existing,
			body: obj("next_api_key", mustNotLeak("sk-ant-api03-"+randomString(alnum, 10)+"\n"+randomString(alnum, 30))), status: 400, want: []string{"next_api_key"}},
		"token with a NUL": {method: "PUT", path: "config",
			body: obj("token", mustNotLeak("do-token-"+randomString(alnum, 20)+"\x00x")), status: 400, want: []string{"token must not contain"}},

		// Base URLs that are not http(s).
		"api_url file://":          {method: "PUT", path: "config", body: obj("api_url", "file:///etc/passwd"), status: 400, want: []string{"api_url must be an absolute http or https URL"}},
		"api_url gopher://":        {method: "PUT", path: "config", body: obj("api_url", "gopher://127.0.0.1:70/"), status: 400, want: []string{"api_url must be"}},
		"api_url javascript:":      {method: "PUT", path: "config", body: obj("api_url", "javascript:alert(1)"), status: 400, want: []string{"api_url must be"}},
		"api_url unix://":          {method: "PUT", path: "config", body: obj("api_url", "unix:///var/run/docker.sock"), status: 400, want: []string{"api_url must be"}},
		"anthropic_url ftp://":     {method: "PUT", path: "config", body: obj("anthropic_url", "ftp://example.com/"), status: 400, want: []string{"anthropic_url must be"}},
		"openai_url data:":         {method: "PUT", path: "config", body: obj("openai_url", "data:text/plain,hello"), status: 400, want: []string{"openai_url must be"}},
		"api_url without a scheme": {method: "PUT", path: "config", body: obj("api_url", "//api.digitalocean.com"), status: 400, want: []string{"api_url must be"}},
	}

	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			before := f.snapshot(t, mount, e)
			config := f.v.readData(t, f.root, mount+"/config")
			key := f.v.readData(t, f.root, mount+"/keys/"+existing)
			status, msg := f.api(t, c.method, mount+"/"+c.path, c.body)
			if status != c.status {
				t.Errorf("%s %s: HTTP %d, want %d: %s", c.method, c.path[:min(len(c.path), 80)], status, c.status, msg)
			}
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("the answer lacks %q: %s", w, msg)
				}
			}
			f.assertUnchanged(t, before, mount, e)
			if after := f.v.readData(t, f.root, mount+"/config"); !reflect.DeepEqual(config, after) {
				t.Errorf("the config changed:\nbefore %v\nafter  %v", config, after)
			}
			if after := f.v.readData(t, f.root, mount+"/keys/"+existing); !reflect.DeepEqual(key, after) {
				t.Errorf("%s changed:\nbefore %v\nafter  %v", existing, key, after)
			}
		})
	}
	if c := f.v.readData(t, f.root, mount+"/creds/"+existing); str(c, "api_key") != existingKey {
		t.Errorf("creds/%s no longer hands out the key it was written with", existing)
	}

	// The same through the CLI, as a person would type it.
	cli := map[string]struct {
		stdin string
		args  []string
		want  []string
	}{
		"misspelt field":         {args: []string{"write", mount + "/keys/" + uniqueName("cli"), "provider=anthropic", "api_key=" + good(), "descripton=typo"}, want: []string{`unknown field "descripton"`}},
		"key with a NUL (stdin)": {stdin: nul, args: []string{"write", mount + "/keys/" + uniqueName("cli"), "provider=anthropic", "api_key=-"}, want: []string{"control characters"}},
		"api_url file://":        {args: []string{"write", mount + "/config", "api_url=file:///etc/passwd"}, want: []string{"api_url must be an absolute http or https URL"}},
		"api_url ftp://":         {args: []string{"write", mount + "/config", "api_url=ftp://example.com"}, want: []string{"api_url must be"}},
		"a..b":                   {args: []string{"write", mount + "/keys/a..b", "provider=anthropic", "api_key=" + good()}, want: []string{`contains ".."`}},
		"rename to a key":        {args: []string{"write", mount + "/rename/" + existing, "new_name=" + keyInName}, want: []string{"new_name: invalid key name"}},
		"force=maybe":            {args: []string{"delete", mount + "/keys/" + existing, "force=maybe"}, want: []string{"force"}},
		// A JSON body on stdin, as a script would send it.
		"openai_admin_key as a list (stdin JSON)": {stdin: obj("openai_admin_key", []string{mustNotLeak("sk-admin-" + randomString(alnum, 40))}),
			args: []string{"write", mount + "/config", "-"}, want: []string{"openai_admin_key must be a string"}},
	}
	for label, c := range cli {
		t.Run("cli "+label, func(t *testing.T) {
			before := f.snapshot(t, mount, e)
			r := f.v.vault(t, as(f.root).withStdin(c.stdin), c.args...)
			assertCode(t, r, 400, c.want...)
			f.assertUnchanged(t, before, mount, e)
		})
	}
}

var hostileLog = struct {
	sync.Mutex
	f *os.File
}{}

// api sends one request to Vault's HTTP API as root and returns the status
// and the error messages (or the body); every answer is written to a log
// that the secret scan reads.
func (f *fixture) api(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.v.addr+"/v1/"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	// Keep %2f and %2e as sent: the URL's opaque form is the path verbatim.
	rawPath, _, _ := strings.Cut(path, "?")
	req.URL.Opaque = "//" + req.URL.Host + "/v1/" + rawPath
	req.Header.Set("X-Vault-Token", f.root)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path[:min(len(path), 80)], err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	hostileLog.Lock()
	if hostileLog.f == nil {
		logPath := filepath.Join(suiteDir, "hostile-http.log")
		if hostileLog.f, err = os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
			hostileLog.Unlock()
			t.Fatal(err)
		}
		registerLog(logPath)
	}
	fmt.Fprintf(hostileLog.f, "%s %.200s -> %d %s\n", method, path, resp.StatusCode, raw)
	hostileLog.Unlock()
	var answer struct {
		Errors []string `json:"errors"`
	}
	if json.Unmarshal(raw, &answer) == nil && len(answer.Errors) > 0 {
		return resp.StatusCode, strings.Join(answer.Errors, "; ")
	}
	return resp.StatusCode, string(bytes.TrimSpace(raw))
}
