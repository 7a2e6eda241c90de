package emulator_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// The request log shows who called (User-Agent), what and how it ended; the
// secret-change counts see a rotation once, however often it is pushed.
func TestRequestLogAndSecretChanges(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{testToken}})
	id, _ := e.createKey(t, anthropicProvider, "logged")
	path := "/v2/gen-ai/anthropic/keys/" + id
	ua := "vault-plugin-secrets-gradient/v9.9.9 (pid 4242)"
	put := func(body map[string]string) rawResponse {
		return e.do(t, "PUT", path, body, "Authorization", "Bearer "+testToken, "User-Agent", ua)
	}
	second := anthropicKey()
	if r := put(map[string]string{"api_key": second}); r.status != http.StatusOK {
		t.Fatalf("PUT: %d %s", r.status, r.body)
	}
	put(map[string]string{"api_key": second})    // the same secret again: no change
	put(map[string]string{"name": "logged-new"}) // a rename: no secret change
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: path, Mode: "drop"})
	req, _ := http.NewRequest("PUT", e.srv.URL+path, strings.NewReader(`{"api_key":"`+anthropicKey()+`"}`))
	req.Header.Set("Authorization", "Bearer "+testToken)
	if _, err := e.srv.Client().Do(req); err == nil {
		t.Fatal("the dropped PUT got an answer")
	}
	e.do(t, "GET", "/_emulator/state", nil) // control: not logged

	reqs := settled(t, e)
	if got := e.emu.SecretChanges(); len(got) != 1 || got[id] != 2 {
		t.Errorf("SecretChanges = %v, want {%s: 2} (one rotation, one dropped but applied)", got, id)
	}
	if len(reqs) != 5 {
		t.Fatalf("%d requests logged, want 5: %+v", len(reqs), reqs)
	}
	for i, r := range reqs {
		if r.Seq != i+1 || r.Pending || r.Time.IsZero() {
			t.Errorf("request %d: %+v", i, r)
		}
	}
	if r := reqs[0]; r.Method != "POST" || r.Path != "/v2/gen-ai/anthropic/keys" || r.Status != 200 {
		t.Errorf("create: %+v", r)
	}
	for _, r := range reqs[1:4] {
		if r.Method != "PUT" || r.Path != path || r.Status != 200 || r.UserAgent != ua {
			t.Errorf("update: %+v", r)
		}
	}
	if r := reqs[4]; r.Status != 0 || !r.Dropped {
		t.Errorf("dropped PUT: %+v", r)
	}

	// The control API shows the same, as JSON.
	var fromAPI []emulator.RequestRecord
	if err := json.Unmarshal(e.do(t, "GET", "/_emulator/requests", nil).body, &fromAPI); err != nil || len(fromAPI) != 5 || fromAPI[1].UserAgent != ua {
		t.Errorf("GET /_emulator/requests: %v %+v", err, fromAPI)
	}
	var changes map[string]int
	if err := json.Unmarshal(e.do(t, "GET", "/_emulator/secret-changes", nil).body, &changes); err != nil || changes[id] != 2 {
		t.Errorf("GET /_emulator/secret-changes: %v %v", err, changes)
	}

	e.emu.Reset()
	if n, c := len(e.emu.Requests()), len(e.emu.SecretChanges()); n != 0 || c != 0 {
		t.Errorf("after Reset: %d requests, %d secret changes", n, c)
	}
}

// A request held by a late fault is in the log, pending, before it is
// applied: a test can act while a change is in flight.
func TestRequestLogShowsPendingRequests(t *testing.T) {
	e := newEnv(t, emulator.Config{Tokens: []string{testToken}})
	id, _ := e.createKey(t, openAIProvider, "held")
	path := "/v2/gen-ai/openai/keys/" + id
	e.emu.InjectFault(emulator.Fault{Method: "PUT", Path: path, Mode: "late", Delay: 300 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("PUT", e.srv.URL+path, strings.NewReader(`{"api_key":"`+openAIKey()+`"}`))
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reqs := e.emu.Requests()
		if last := reqs[len(reqs)-1]; last.Path == path && last.Pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held PUT never showed as pending: %+v", e.emu.Requests())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := e.emu.SecretChanges()[id]; got != 0 {
		t.Errorf("the held PUT changed the secret before its delay: %d", got)
	}
	<-done
	reqs := settled(t, e)
	if last := reqs[len(reqs)-1]; last.Pending || !last.Dropped || e.emu.SecretChanges()[id] != 1 {
		t.Errorf("after the late PUT landed: %+v, changes %v", last, e.emu.SecretChanges())
	}
}

// settled waits until no logged request is pending (a client sees a dropped
// connection before the emulator's handler returns) and returns the log.
func settled(t *testing.T, e *env) []emulator.RequestRecord {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reqs := e.emu.Requests()
		pending := false
		for _, r := range reqs {
			pending = pending || r.Pending
		}
		if !pending {
			return reqs
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests still pending after 5s: %+v", reqs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
