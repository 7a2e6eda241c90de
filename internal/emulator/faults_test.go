package emulator_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/digitalocean/godo"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestFaultStatus(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	e.emu.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/anthropic/keys", Count: 2, Status: http.StatusServiceUnavailable})

	// Other methods and paths pass.
	_, _, err := c.AgentPlatform.ListAnthropicAPIKeys(ctx, nil)
	mustOK(t, err)
	_, _, err = openAIProvider.create(ctx, c, "o", openAIKey())
	mustOK(t, err)

	for range 2 {
		_, _, err := anthropicProvider.create(ctx, c, "a", anthropicKey())
		apiError(t, err, http.StatusServiceUnavailable)
	}
	if n := len(e.emu.State().AnthropicKeys); n != 0 {
		t.Fatalf("a status fault changed state: %d keys", n)
	}
	_, _, err = anthropicProvider.create(ctx, c, "a", anthropicKey())
	mustOK(t, err)
}

func TestFaultDefaultsAndFIFO(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{})                                       // any request, once, 500
	e.emu.InjectFault(emulator.Fault{Path: "/v2/gen-ai/agents", Status: 502}) // queued behind it

	r := e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	if m := r.json(t); r.status != 500 || m["id"] != "server_error" || m["request_id"] != r.header.Get("x-request-id") {
		t.Errorf("first = %d %s", r.status, r.body)
	}
	if r := e.platform(t, "GET", "/v2/gen-ai/agents/x", nil); r.status != 502 {
		t.Errorf("second = %d %s (path is a prefix)", r.status, r.body)
	}
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.status != 200 {
		t.Errorf("third = %d %s", r.status, r.body)
	}
}

func TestFaultDelay(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Status: 504, Delay: 200 * time.Millisecond})
	start := time.Now()
	r := e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	if elapsed := time.Since(start); r.status != 504 || elapsed < 200*time.Millisecond {
		t.Errorf("got %d after %v", r.status, elapsed)
	}
}

func TestFaultHang(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Mode: "hang", Path: "/v2/gen-ai/openai/keys"})
	c := e.godoClient(t, testToken, 300*time.Millisecond)

	start := time.Now()
	_, _, err := openAIProvider.create(context.Background(), c, "o", openAIKey())
	var er *godo.ErrorResponse
	if err == nil || errors.As(err, &er) || !os.IsTimeout(err) {
		t.Fatalf("want a client timeout, got %v", err)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond || elapsed > 5*time.Second {
		t.Errorf("hung for %v", elapsed)
	}
	if n := len(e.emu.State().OpenAIKeys); n != 0 {
		t.Errorf("a hung request changed state")
	}
	_, _, err = openAIProvider.create(context.Background(), c, "o", openAIKey())
	mustOK(t, err)
}

// Reset frees requests stuck in a hang, so a test server can close.
func TestResetReleasesHang(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Mode: "hang"})
	done := make(chan rawResponse)
	go func() { done <- e.platform(t, "GET", "/v2/gen-ai/agents", nil) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.emu.Counts()["GET /v2/gen-ai/agents"] == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let it reach the hang
	e.emu.Reset()
	select {
	case r := <-done:
		if r.status != http.StatusServiceUnavailable {
			t.Errorf("released with %d", r.status)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Reset did not release the hung request")
	}
}

func TestFaultDropAppliesTheChange(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	c := e.client(t)
	ctx := context.Background()
	id, _ := e.createKey(t, anthropicProvider, "keep")

	tests := map[string]struct {
		fault emulator.Fault
		call  func() error
		check func(s emulator.State) bool
	}{
		"create": {
			emulator.Fault{Mode: "drop", Method: "POST", Path: "/v2/gen-ai/openai/keys"},
			func() error { _, _, err := openAIProvider.create(ctx, c, "dropped", openAIKey()); return err },
			func(s emulator.State) bool { return len(s.OpenAIKeys) == 1 && s.OpenAIKeys[0].Name == "dropped" },
		},
		"update": {
			emulator.Fault{Mode: "drop", Method: "PUT"},
			func() error { _, _, err := anthropicProvider.update(ctx, c, id, "renamed", ""); return err },
			func(s emulator.State) bool { return s.AnthropicKeys[0].Name == "renamed" },
		},
		"delete": {
			emulator.Fault{Mode: "drop", Method: "DELETE"},
			func() error { _, _, err := anthropicProvider.delete(ctx, c, id); return err },
			func(s emulator.State) bool { return len(s.AnthropicKeys) == 0 },
		},
	}
	for _, name := range []string{"create", "update", "delete"} {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			e.emu.InjectFault(tc.fault)
			err := tc.call()
			var er *godo.ErrorResponse
			if err == nil || errors.As(err, &er) {
				t.Fatalf("want a transport error, got %v", err)
			}
			if s := e.emu.State(); !tc.check(s) {
				t.Errorf("change not applied: %+v", s)
			}
		})
	}
}

func TestInjectFaultRejectsNonsense(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	for name, f := range map[string]emulator.Fault{
		"unknown mode":   {Mode: "explode"},
		"success status": {Status: 200},
		"negative count": {Count: -1},
		"negative delay": {Delay: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("InjectFault accepted it")
				}
			}()
			e.emu.InjectFault(f)
		})
	}
}

func TestLatency(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.SetLatency(150 * time.Millisecond)
	for _, path := range []string{"/v2/gen-ai/agents", "/openai/v1/models"} {
		start := time.Now()
		e.platform(t, "GET", path, nil)
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("%s took %v", path, d)
		}
	}
	start := time.Now()
	e.do(t, "GET", "/_emulator/state", nil)
	if d := time.Since(start); d >= 150*time.Millisecond {
		t.Errorf("control API delayed by %v", d)
	}
	// A client that gives up is let go and the state lock is not held meanwhile.
	c := e.godoClient(t, testToken, 50*time.Millisecond)
	if _, _, err := c.AgentPlatform.ListAgents(context.Background(), nil); !os.IsTimeout(err) {
		t.Errorf("want timeout, got %v", err)
	}
	_ = e.emu.State()
}

// A late fault applies the change after the client gave up on it.
func TestFaultLateAppliesAfterTheClientGaveUp(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.InjectFault(emulator.Fault{Mode: "late", Method: "POST", Path: "/v2/gen-ai/openai/keys", Delay: 400 * time.Millisecond})
	c := e.godoClient(t, testToken, 100*time.Millisecond)
	_, _, err := openAIProvider.create(context.Background(), c, "late", openAIKey())
	if err == nil || !os.IsTimeout(err) {
		t.Fatalf("want a client timeout, got %v", err)
	}
	if n := len(e.emu.State().OpenAIKeys); n != 0 {
		t.Fatalf("the late create landed before its delay: %d keys", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(e.emu.State().OpenAIKeys) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if keys := e.emu.State().OpenAIKeys; len(keys) != 1 || keys[0].Name != "late" {
		t.Fatalf("the late create never landed: %+v", keys)
	}
}

// The platform's clock can be set apart from this machine's: timestamps and
// the Date header follow it.
func TestClockSkew(t *testing.T) {
	e := newEnv(t, emulator.Config{})
	e.emu.SetClockSkew(-3 * time.Hour)
	r := e.platform(t, "GET", "/v2/gen-ai/agents", nil)
	date, err := http.ParseTime(r.header.Get("Date"))
	if err != nil {
		t.Fatal(err)
	}
	if off := time.Until(date); off > -3*time.Hour+time.Minute || off < -3*time.Hour-time.Minute {
		t.Fatalf("Date is %v from now, want about -3h", off)
	}
	e.createKey(t, anthropicProvider, "skewed")
	k := e.emu.State().AnthropicKeys[0]
	if off := time.Until(k.CreatedAt); off > -3*time.Hour+time.Minute {
		t.Fatalf("created_at is %v from now, want about -3h", off)
	}
	e.emu.Reset()
	if r := e.platform(t, "GET", "/v2/gen-ai/agents", nil); r.header.Get("Date") == "" {
		t.Fatal("no Date header")
	} else if d, _ := http.ParseTime(r.header.Get("Date")); time.Since(d) > time.Minute {
		t.Fatal("Reset kept the skew")
	}
}
