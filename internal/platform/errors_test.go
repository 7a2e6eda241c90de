package platform

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	secret := "sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX"
	cases := map[string]string{
		"Incorrect API key provided: sk-proj-*****UVWX. You can find your API key at https://platform.openai.com/account/api-keys.": "sk-proj",
		"key " + secret + " is bad":                  secret,
		"token dop_v1_0123456789abcdef was rejected": "dop_v1_0123",
		"oauth doo_v1_0123456789abcdef expired":      "doo_v1_0123",
		"refresh dor_v1_0123456789abcdef revoked":    "dor_v1_0123",
		"upper DOP_V1_0123456789ABCDEF":              "0123456789",
		"line\nbreak\x00":                            "\n",
		// Agent API key secrets have no prefix: found by the field's name.
		`answer {"secret_key":"Abc1Def2Ghi3Jkl4"}`:   "Abc1Def2",
		`escaped {\"secret_key\": \"Abc1Def2Ghi3\"}`: "Abc1Def2",
		"form secret_key=Abc1Def2Ghi3&name=n":        "Abc1Def2",
		"prose secretKey: Abc1Def2Ghi3":              "Abc1Def2",
	}
	for in, leaked := range cases {
		out := Redact(in, secret)
		if strings.Contains(out, leaked) {
			t.Errorf("Redact(%q) = %q still holds %q", in, out, leaked)
		}
	}
	if out := Redact(strings.Repeat("x", 1000)); len(out) > maxUpstreamText+3 {
		t.Errorf("redact did not bound the length: %d", len(out))
	}
	if out := Redact("name must be lowercase"); out != "name must be lowercase" {
		t.Errorf("redact changed harmless text: %q", out)
	}
}

// A platform whose error text echoes the key: the plugin shows the message
// without the key. Uses the real godo client against a stub server that
// answers like the platform.
func TestPlatformErrors_ClassifiedAndRedacted(t *testing.T) {
	secret := "sk-ant-api03-LEAKYLEAKYLEAKY0123456789"
	cases := map[string]struct {
		status int
		body   string
		check  func(t *testing.T, err error)
	}{
		"validation echoing the key": {422, `{"id":"invalid_argument","message":"key ` + secret + ` (sk-ant-***6789) rejected","request_id":"r1"}`, func(t *testing.T, err error) {
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "HTTP 422") {
				t.Fatalf("want a refusal, got %v", err)
			}
		}},
		"not found": {404, `{"id":"not_found","message":"no such key","request_id":"r2"}`, func(t *testing.T, err error) {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("want not found, got %v", err)
			}
		}},
		"unauthorized": {401, `{"id":"unauthorized","message":"Unable to authenticate you","request_id":"r3"}`, func(t *testing.T, err error) {
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("want unauthorized, got %v", err)
			}
		}},
		"rate limited": {429, `{"id":"too_many_requests","message":"API rate limit exceeded.","request_id":"r4"}`, func(t *testing.T, err error) {
			if !errors.Is(err, ErrRateLimited) || !strings.Contains(err.Error(), "retry after 7 s") {
				t.Fatalf("want rate limited with retry-after, got %v", err)
			}
		}},
		"server error": {500, `{"id":"server_error","message":"boom ` + secret + `","request_id":"r5"}`, func(t *testing.T, err error) {
			var pe *Error
			if !errors.As(err, &pe) || pe.Kind != Failed || !strings.Contains(err.Error(), "request id r5") {
				t.Fatalf("want a platform error with the request id, got %v", err)
			}
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			p, err := New(srv.URL+"/", "tok", "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.CreateKey(context.Background(), Anthropic, "name", secret)
			if err == nil {
				t.Fatal("want an error")
			}
			tc.check(t, err)
			if strings.Contains(err.Error(), "LEAKY") || strings.Contains(err.Error(), "***6789") {
				t.Fatalf("error leaks the key: %v", err)
			}
		})
	}
}

// The configured DigitalOcean token, whatever its shape, and anything shaped
// like a DigitalOcean token never come back in a platform error, on every
// path classify takes: a caller error (4xx), an upstream fault
// (5xx, with its request id) and a rate limit (Retry-After). Real godo
// client against a stub platform.
func TestGodoPlatform_RedactsTokenFromErrors(t *testing.T) {
	const token = "emulator-token-123456"
	hex := strings.Repeat("0123456789abcdef", 4)
	message := "token " + token + " denied; also doo_v1_" + hex + ", dor_v1_" + hex + " and dop_v1_" + hex
	ctx := context.Background()
	calls := map[string]func(p *GodoClient) error{
		"create": func(p *GodoClient) error {
			_, err := p.CreateKey(ctx, OpenAI, "n", "sk-proj-redacttoken-0123456789abcdef")
			return err
		},
		"get": func(p *GodoClient) error {
			_, err := p.GetKey(ctx, Anthropic, testKeyUUID)
			return err
		},
		"update": func(p *GodoClient) error {
			_, err := p.UpdateKey(ctx, Anthropic, testKeyUUID, KeyChange{Name: "n"})
			return err
		},
		"delete": func(p *GodoClient) error { return p.DeleteKey(ctx, OpenAI, testKeyUUID) },
		"list": func(p *GodoClient) error {
			_, err := p.ListKeys(ctx, Anthropic)
			return err
		},
		"list agents": func(p *GodoClient) error {
			_, err := p.ListAgentsByKey(ctx, OpenAI, testKeyUUID)
			return err
		},
		"set agent key": func(p *GodoClient) error {
			_, err := p.SetAgentKey(ctx, Anthropic, testAgentUUID, testKeyUUID)
			return err
		},
		"check token": func(p *GodoClient) error { return p.CheckToken(ctx) },
		"get agent": func(p *GodoClient) error {
			_, err := p.GetAgent(ctx, testAgentUUID)
			return err
		},
		"create agent key": func(p *GodoClient) error {
			_, err := p.CreateAgentKey(ctx, testAgentUUID, "n")
			return err
		},
		"list agent keys": func(p *GodoClient) error {
			_, err := p.ListAgentKeys(ctx, testAgentUUID)
			return err
		},
		"rename agent key": func(p *GodoClient) error {
			_, err := p.RenameAgentKey(ctx, testAgentUUID, testKeyUUID, "n")
			return err
		},
		"delete agent key": func(p *GodoClient) error { return p.DeleteAgentKey(ctx, testAgentUUID, testKeyUUID) },
		"regenerate agent key": func(p *GodoClient) error {
			_, err := p.RegenerateAgentKey(ctx, testAgentUUID, testKeyUUID)
			return err
		},
	}
	for _, status := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusInternalServerError, http.StatusTooManyRequests} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", token)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"id":"x","message":"` + message + `","request_id":"req-` + token + `"}`))
		}))
		p, err := New(srv.URL+"/", token, "test", 5*time.Second, NewBudget(6_000_000, 360_000_000, time.Now), testRetryBase)
		if err != nil {
			t.Fatal(err)
		}
		for name, call := range calls {
			err := call(p)
			if err == nil {
				t.Fatalf("%d %s: want an error", status, name)
			}
			for _, leak := range []string{token, "123456", "doo_v1", "dor_v1", "dop_v1", hex[:12]} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("%d %s: error shows %q: %v", status, name, leak, err)
				}
			}
			if status != http.StatusTooManyRequests && !strings.Contains(err.Error(), "denied") {
				t.Errorf("%d %s: the platform's message was lost: %v", status, name, err)
			}
		}
		srv.Close()
	}
}
