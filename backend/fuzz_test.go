package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Fuzz targets for what callers send: names, keys and whole requests. The
// seed corpus lives in testdata/fuzz/<target>/ (committed; `go test` runs
// it as ordinary tests) plus the f.Add lines below. `make fuzz-ci` runs each
// target for 30,000 inputs (5 to 10 s here), `make fuzz` for FUZZTIME (30 s
// by default).
//
// The properties: nothing panics; a name or key is accepted only when it
// follows the rule; a refusal is a caller error (a 400) whose text never
// quotes the name or key that was refused; and a request through
// HandleRequest is never answered with a 5xx, whatever its fields hold.

// acceptedName is the naming rule, written independently of validateName.
var acceptedName = regexp.MustCompile(`^[a-z0-9.-]{1,64}$`)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"claude-prod", "a", "a.b", "a..b", "sk-ant-x", "Upper", "with space", "../etc", "a/b",
		"%2f", "na\x00me", "ünï", strings.Repeat("a", 65), "gpt-4o.team-a", "-", ".", "..", "sk-", "team-a", "sk-x", "é", ""} {
		f.Add(s)
	}
	known := refusalTexts(func(s string) error { return validateName(s) },
		"", strings.Repeat("a", 70), "A", "a/b", "a_b", "a b", "é", "a\x00", "sk-x", "a..b", ".")
	f.Fuzz(func(t *testing.T, name string) {
		err := validateName(name)
		want := acceptedName.MatchString(name) && !strings.HasPrefix(name, "sk-") && !strings.Contains(name, "..") && name != "."
		if (err == nil) != want {
			t.Fatalf("validateName(%q) = %v; the rule says accepted=%v", name, err, want)
		}
		if err != nil {
			assertCallerError(t, err)
			assertNotQuoted(t, err.Error(), name, known)
		}
	})
}

func FuzzNormalizeAPIKey(f *testing.F) {
	for _, c := range [][2]string{
		{platform.Anthropic, "sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{platform.Anthropic, "  sk-ant-api03-AAAAAAAAAAAAAAAAAAAA\n"},
		{platform.Anthropic, "sk-ant-admin01-AAAAAAAAAAAAAAAAAAAA"},
		{platform.Anthropic, "sk-ant-api03-AAAA\x00AAAA"},
		{platform.Anthropic, "sk-ant-api03-AAAA\nAAAA"},
		{platform.OpenAI, "sk-proj-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"},
		{platform.OpenAI, "sk-admin-BBBBBBBBBBBBBBBB"},
		{platform.OpenAI, "sk-ant-api03-BBBBBBBBBBBBBBBBBBBB"},
		{platform.OpenAI, "not-a-key"},
		{"mistral", "sk-xyz"},
		{"", ""},
		{platform.OpenAI, " sk-proj-x\n"},
		{platform.Anthropic, "sk-ant-api03-abc"},
	} {
		f.Add(c[0], c[1])
	}
	known := refusalTexts(func(s string) error { _, err := normalizeAPIKey(platform.OpenAI, s); return err },
		"", "sk-"+strings.Repeat("a", 1100), "sk-a b", "sk-admin-x", "sk-ant-x", "x")
	known += refusalTexts(func(s string) error { _, err := normalizeAPIKey(platform.Anthropic, s); return err },
		"sk-ant-admin01-x", "sk-x")
	known += refusalTexts(func(s string) error { _, err := normalizeAPIKey("other", s); return err }, "sk-x")
	known += refusalTexts(func(s string) error { _, err := normalizeAPIKey("", s); return err }, "sk-x")
	f.Fuzz(func(t *testing.T, provider, raw string) {
		key, err := normalizeAPIKey(provider, raw)
		if err != nil {
			assertCallerError(t, err)
			assertNotQuoted(t, err.Error(), strings.TrimSpace(raw), known)
			return
		}
		switch {
		case provider != platform.Anthropic && provider != platform.OpenAI:
			t.Fatalf("accepted a key for provider %q", provider)
		case key != strings.TrimSpace(raw):
			t.Fatalf("accepted key %q is not the trimmed input %q", key, raw)
		case key == "" || len(key) > maxKeyLength:
			t.Fatalf("accepted a key of length %d", len(key))
		case strings.IndexFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			t.Fatalf("accepted a key with white space or control characters: %q", key)
		case !strings.HasPrefix(key, "sk-"):
			t.Fatalf("accepted a key without the sk- prefix: %q", key)
		case provider == platform.Anthropic && (!strings.HasPrefix(key, "sk-ant-") || strings.HasPrefix(key, "sk-ant-admin")):
			t.Fatalf("accepted %q as an Anthropic model key", key)
		case provider == platform.OpenAI && (strings.HasPrefix(key, "sk-ant-") || strings.HasPrefix(key, "sk-admin-")):
			t.Fatalf("accepted %q as an OpenAI model key", key)
		}
		if err := validateNameAgainstKey("a-"+key, key); err == nil {
			t.Fatalf("a name containing the key was accepted")
		}
	})
}

// fuzzPaths are the request paths FuzzKeyRequest sends a name to; the
// operation is picked the same way, modulo the list.
var (
	fuzzPaths = []string{"keys/%s", "keys/%s/reassign", "rename/%s", "keys/%s/rotate", "keys/%s/agents", "creds/%s"}
	fuzzOps   = []logical.Operation{logical.CreateOperation, logical.UpdateOperation, logical.ReadOperation, logical.DeleteOperation}
)

// FuzzKeyRequest sends arbitrary field maps (JSON objects, decoded the way
// Vault's HTTP layer decodes a body) to keys/<name> and the paths below it
// and to rename/<name>, through b.HandleRequest, against the emulator. A
// couple of keys exist, so updates, renames and reassigns reach their
// handlers.
func FuzzKeyRequest(f *testing.F) {
	e := newFuzzEnv(f)
	e.mustOK(logical.CreateOperation, "keys/fuzz-a", map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("fuzz-a")})
	e.mustOK(logical.CreateOperation, "keys/fuzz-b", map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("fuzz-b")})
	for _, c := range []struct {
		path, op uint8
		name     string
		body     string
	}{
		{0, 0, "fuzz-c", `{"provider":"anthropic","api_key":"sk-ant-api03-CCCCCCCCCCCCCCCCCCCC"}`},
		{0, 1, "fuzz-a", `{"api_key":["sk-ant-api03-x"],"description":7}`},
		{0, 1, "fuzz-a", `{"rotation_period":"-1h","next_api_key":"sk-ant-api03-DDDDDDDDDDDDDDDD"}`},
		{0, 0, "..", `{"provider":"openai","api_key":"sk-proj-x"}`},
		{0, 0, "a%2fb", `{"provider":"openai","api_key":"sk-proj-EEEEEEEEEEEEEEEEEEEE","uuid":"../../v2"}`},
		{0, 3, "fuzz-b", `{"force":"maybe"}`},
		{1, 1, "fuzz-a", `{"to":"fuzz-b"}`},
		{2, 1, "fuzz-b", `{"new_name":"fuzz-a"}`},
		{3, 1, "fuzz-a", `{"api_key":"sk-ant-api03-FFFF\u0000FFFF"}`},
		{0, 1, "fuzz-a", `{"unknown_field":1,"api_key":{"nested":true}}`},
	} {
		f.Add(c.path, c.op, c.name, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, pathSel, opSel uint8, name string, body []byte) {
		data, ok := decodeBody(body)
		if !ok {
			return
		}
		path := strings.Replace(fuzzPaths[int(pathSel)%len(fuzzPaths)], "%s", name, 1)
		e.check(t, fuzzOps[int(opSel)%len(fuzzOps)], path, data)
	})
}

// FuzzConfigRequest sends arbitrary field maps to config. The token check
// always goes to the emulator (whatever api_url says, the URL was parsed and
// validated by then) so that the target never waits on the network.
func FuzzConfigRequest(f *testing.F) {
	e := newFuzzEnv(f)
	for _, body := range []string{
		`{"token":"emulator-token","api_url":"http://127.0.0.1:1"}`,
		`{"api_url":"file:///etc/passwd"}`,
		`{"api_url":"ftp://example.com"}`,
		`{"api_url":"javascript:alert(1)"}`,
		`{"api_url":"http://user:pw@example.com"}`,
		`{"api_url":"https://example.com/v2?x=1"}`,
		`{"request_timeout":"forever","rate_limit_per_minute":-5}`,
		`{"rate_limit_per_hour":1e30,"verify_keys":"perhaps"}`,
		`{"token":"bad token\n"}`,
		`{"creds_ttl":[1,2],"name_cache_ttl":{"a":1}}`,
		`{"openai_url":"http://[::1"}`,
	} {
		f.Add(uint8(1), []byte(body))
	}
	ops := []logical.Operation{logical.UpdateOperation, logical.CreateOperation, logical.ReadOperation}
	f.Fuzz(func(t *testing.T, opSel uint8, body []byte) {
		data, ok := decodeBody(body)
		if !ok {
			return
		}
		e.check(t, ops[int(opSel)%len(ops)], "config", data)
		// A fuzzed config that was accepted stays only until the next
		// input: the good one goes back, so every input starts alike.
		e.restoreConfig(t)
	})
}

// fuzzEnv is a testEnv whose requests the fuzz functions send themselves:
// testEnv's helpers fail the outer *testing.F, which a fuzz function must
// not touch.
type fuzzEnv struct {
	*testEnv
	config map[string]any
}

func newFuzzEnv(f *testing.F) *fuzzEnv {
	e := newTestEnv(f, map[string]any{"request_timeout": 5})
	// Fuzzing sends thousands of requests a second: lift the emulator's
	// limits along with the mount's (newTestEnv's budget is unlimited).
	e.emu.SetRateLimits(1<<30, 1<<30)
	// The token check of a config write goes to the emulator, with its
	// own unlimited budget, whatever URLs and limits the input set: the
	// input is parsed and validated before this runs.
	srvURL := e.srv.URL
	e.b.buildClients = func(cfg *gradientConfig) (*clients, error) {
		c := *cfg
		c.APIURL, c.AnthropicURL, c.OpenAIURL = srvURL, srvURL+"/anthropic", srvURL+"/openai"
		c.RequestTimeout = min(max(c.RequestTimeout, 1), defaultRequestTimeout)
		return newClients(&c, platform.NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase, nil)
	}
	return &fuzzEnv{testEnv: e, config: map[string]any{
		"token": testToken, "api_url": srvURL, "anthropic_url": srvURL + "/anthropic", "openai_url": srvURL + "/openai",
		"verify_keys": true, "request_timeout": 5, "name_cache_ttl": 0, "creds_ttl": 3600,
		"rate_limit_per_minute": unlimited["rate_limit_per_minute"], "rate_limit_per_hour": unlimited["rate_limit_per_hour"],
	}}
}

// check sends one request and holds its answer to the rules.
func (e *fuzzEnv) check(t *testing.T, op logical.Operation, path string, data map[string]any) {
	t.Helper()
	// Storage as Vault's: a path with ".." in it is refused.
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: logical.NewStorageView(e.storage, ""), MountPoint: "gradient/"}
	// As Vault does for a write: the existence check first, which picks
	// create or update.
	var resp *logical.Response
	var err error
	if op == logical.CreateOperation || op == logical.UpdateOperation {
		found, exists, checkErr := e.b.HandleExistenceCheck(context.Background(), req)
		var userErr errutil.UserError
		switch {
		case checkErr == nil && found && exists:
			req.Operation = logical.UpdateOperation
		case checkErr == nil && found:
			req.Operation = logical.CreateOperation
		case checkErr == nil, errors.Is(checkErr, logical.ErrUnsupportedPath):
		case errors.As(checkErr, &userErr):
			resp = logical.ErrorResponse(checkErr.Error())
		default:
			t.Fatalf("%s %s %v: the existence check failed, a 500: %v", op, path, printable(data), checkErr)
		}
	}
	if resp == nil {
		resp, err = e.b.HandleRequest(context.Background(), req)
	}
	// Vault's HTTP layer: RespondErrorCommon, then coded errors' own status.
	status, answer := logical.RespondErrorCommon(req, resp, err)
	logical.AdjustErrorStatusCode(&status, answer)
	switch {
	case status >= 500:
		t.Fatalf("%s %s %v: HTTP %d: err=%v resp=%v", op, path, printable(data), status, err, resp)
	case resp != nil && resp.IsError() && status != http.StatusBadRequest:
		t.Fatalf("%s %s %v: a refusal answered %d, want 400: %v", op, path, printable(data), status, resp.Error())
	case err != nil && status != http.StatusNotFound && status != http.StatusMethodNotAllowed && status != http.StatusBadRequest:
		t.Fatalf("%s %s %v: HTTP %d: %v", op, path, printable(data), status, err)
	}
	var msg string
	if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	} else if err != nil {
		msg = err.Error()
	}
	if msg == "" {
		return
	}
	// No secret the request carried comes back in the message, unless the
	// same text came in elsewhere (the path, another field) where it was
	// not a secret.
	for _, field := range []string{"api_key", "next_api_key", "token"} {
		s, _ := data[field].(string)
		s = strings.TrimSpace(s)
		if len(s) < 16 || strings.Contains(path, s) || quotedElsewhere(data, field, s) {
			continue
		}
		if strings.Contains(msg, s) {
			t.Fatalf("%s %s: the message quotes %s: %q", op, path, field, msg)
		}
	}
}

func (e *fuzzEnv) restoreConfig(t *testing.T) {
	t.Helper()
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "config", Data: e.config, Storage: e.storage, MountPoint: "gradient/"}
	if resp, err := e.b.HandleRequest(context.Background(), req); err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("restoring the config: err=%v resp=%v", err, resp)
	}
}

func (e *fuzzEnv) mustOK(op logical.Operation, path string, data map[string]any) {
	e.testEnv.mustOK(op, path, data)
}

// decodeBody decodes a JSON object the way Vault's HTTP handler does (numbers
// as json.Number); anything else is not a request body.
func decodeBody(body []byte) (map[string]any, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil || data == nil {
		return nil, false
	}
	return data, true
}

func quotedElsewhere(data map[string]any, field, s string) bool {
	for k, v := range data {
		if k == field {
			continue
		}
		if strings.Contains(k, s) {
			return true
		}
		if b, err := json.Marshal(v); err == nil && strings.Contains(string(b), s) {
			return true
		}
	}
	return false
}

// printable shows a request's data with secret fields masked, for failure
// messages.
func printable(data map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range data {
		if k == "api_key" || k == "next_api_key" || k == "token" {
			v = "[secret]"
		}
		out[k] = v
	}
	return out
}

func assertCallerError(t *testing.T, err error) {
	t.Helper()
	var ce *callerError
	if !errors.As(err, &ce) {
		t.Fatalf("refusal %q is not a caller error (it would be a 500)", err)
	}
}

// refusalTexts collects the messages of refusals of the inputs, to tell the
// rule's own words from an echo of the input.
func refusalTexts(check func(string) error, inputs ...string) string {
	var b strings.Builder
	for _, in := range inputs {
		if err := check(in); err != nil {
			b.WriteString(err.Error())
			b.WriteString("\n")
		}
	}
	return b.String()
}

// assertNotQuoted fails when msg contains input (long enough to matter) in a
// way that none of the rule's own messages do.
func assertNotQuoted(t *testing.T, msg, input, known string) {
	t.Helper()
	if len(input) >= 8 && strings.Contains(msg, input) && !strings.Contains(known, input) {
		t.Fatalf("the refusal quotes its input %q: %s", url.QueryEscape(input), msg)
	}
}
