package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// The fault matrix of static roles, as TestFaultMatrix is for keys: each
// operation with each step of its road made to fail, then the periodic
// rollback; the answer is a success or a clear error, and the mount at rest
// keeps the static invariant (assertStaticInvariant).

type staticMatrixOp struct {
	method, path string
	// setup returns the agent and the uuids of platform keys made outside
	// Vault (foreign until adopted).
	setup func(r *rotEnv) (agent string, foreign []string)
	run   func(r *rotEnv, agent string, foreign []string) (*logical.Response, error)
}

func staticMatrixOps() map[string]staticMatrixOp {
	role := func(r *rotEnv, agent string, extra map[string]any) {
		data := map[string]any{"agent_uuid": agent}
		for k, v := range extra {
			data[k] = v
		}
		r.mustOK(logical.CreateOperation, "agent-static-roles/m", data)
	}
	plain := func(r *rotEnv) (string, []string) {
		agent := r.staticAgent("m")
		role(r, agent, nil)
		return agent, nil
	}
	return map[string]staticMatrixOp{
		"create": {method: http.MethodPost, path: agentKeysPath,
			setup: func(r *rotEnv) (string, []string) { return r.staticAgent("m"), nil },
			run: func(r *rotEnv, agent string, _ []string) (*logical.Response, error) {
				return r.request(logical.CreateOperation, "agent-static-roles/m", map[string]any{"agent_uuid": agent})
			}},
		"adopt": {method: http.MethodPut, path: regeneratePath,
			setup: func(r *rotEnv) (string, []string) {
				agent := r.staticAgent("m")
				k, _, err := r.do.AgentPlatform.CreateAgentAPIKey(context.Background(), agent, &godo.AgentAPIKeyCreateRequest{AgentUuid: agent, Name: "hand-made"})
				if err != nil {
					r.t.Fatal(err)
				}
				return agent, []string{k.Uuid}
			},
			run: func(r *rotEnv, agent string, foreign []string) (*logical.Response, error) {
				return r.request(logical.CreateOperation, "agent-static-roles/m", map[string]any{"agent_uuid": agent, "api_key_uuid": foreign[0]})
			}},
		"rotate now": {method: http.MethodPut, path: regeneratePath, setup: plain,
			run: func(r *rotEnv, _ string, _ []string) (*logical.Response, error) {
				return r.request(logical.UpdateOperation, "agent-static-roles/m/rotate", nil)
			}},
		"scheduled rotation": {method: http.MethodPut, path: regeneratePath,
			setup: func(r *rotEnv) (string, []string) {
				agent := r.staticAgent("m")
				role(r, agent, map[string]any{"rotation_period": "24h"})
				return agent, nil
			},
			run: func(r *rotEnv, _ string, _ []string) (*logical.Response, error) {
				r.tickAt(t0.Add(24 * time.Hour))
				read := r.mustOK(logical.ReadOperation, "agent-static-roles/m", nil)
				if msg, _ := read.Data["rotation_error"].(string); msg != "" {
					return logical.ErrorResponse(msg), nil
				}
				return read, nil
			}},
		"delete": {method: http.MethodDelete, path: agentKeysPath, setup: plain,
			run: func(r *rotEnv, _ string, _ []string) (*logical.Response, error) {
				return r.request(logical.DeleteOperation, "agent-static-roles/m", nil)
			}},
	}
}

var staticMatrixSteps = map[string]func(r *rotEnv, method, path string){
	"WAL write fails": func(r *rotEnv, _, _ string) { r.storage.failUnder("wal/") },
	"platform fails (5xx)": func(r *rotEnv, method, path string) {
		r.emu.InjectFault(emulator.Fault{Method: method, Path: path, Status: 503, Count: 100})
	},
	"platform refuses (4xx)": func(r *rotEnv, method, path string) {
		r.emu.InjectFault(emulator.Fault{Method: method, Path: path, Status: 422, Count: 100})
	},
	"applied but answer lost": func(r *rotEnv, method, path string) {
		r.emu.InjectFault(emulator.Fault{Method: method, Path: path, Mode: "drop"})
		r.emu.InjectFault(emulator.Fault{Method: method, Path: path, Status: 503, Count: 100})
	},
	"storage write fails": func(r *rotEnv, _, _ string) { r.storage.failUnder(agentStaticStoragePrefix) },
	"WAL delete fails":    func(r *rotEnv, _, _ string) { r.storage.failDeletesUnder("wal/") },
	"answer lost, then works": func(r *rotEnv, method, path string) {
		r.emu.InjectFault(emulator.Fault{Method: method, Path: path, Mode: "drop"})
	},
}

func TestAgentStatic_FaultMatrix(t *testing.T) {
	cells := 0
	for opName, op := range staticMatrixOps() {
		for stepName, inject := range staticMatrixSteps {
			cells++
			t.Run(opName+"/"+stepName, func(t *testing.T) {
				r := newRotationEnv(t, nil)
				agent, foreign := op.setup(r)
				inject(r, op.method, op.path)
				resp, err := op.run(r, agent, foreign)
				r.storage.failUnder("")
				r.storage.failDeletesUnder("")
				r.emu.ClearFaults()
				if msg, failed := answerError(resp, err); failed {
					if len(msg) < 20 {
						t.Errorf("unclear error: %q", msg)
					}
					r.assertSecretFree("error", msg)
				}

				rollbackNow(t, r.testEnv)
				if opName == "adopt" && err == nil && (resp == nil || !resp.IsError()) {
					foreign = nil // adopted: Vault holds it now
				}
				r.assertStaticInvariant(foreign...)
			})
		}
	}
	t.Logf("static fault matrix: %d cells", cells)
}

// assertStaticInvariant: every stored role's key is on the platform and
// the secret Vault holds for it works at the agent; every agent API key on
// the platform is a role's, unless named foreign; no write-ahead log entry
// is left.
func (e *testEnv) assertStaticInvariant(foreign ...string) {
	e.t.Helper()
	ctx := context.Background()
	onPlatform := map[string]string{}
	for _, k := range e.agentKeysOnPlatform() {
		onPlatform[strings.ToLower(k.UUID)] = k.AgentUUID
	}
	names, err := e.storage.List(ctx, agentStaticStoragePrefix)
	if err != nil {
		e.t.Fatal(err)
	}
	held := map[string]bool{}
	for _, name := range names {
		r, err := getAgentStatic(ctx, e.storage, name)
		if err != nil || r == nil {
			e.t.Fatalf("reading static role %q: %v", name, err)
		}
		uuid := strings.ToLower(r.KeyUUID)
		held[uuid] = true
		switch agent, ok := onPlatform[uuid]; {
		case !ok:
			e.t.Errorf("invariant: static role %q holds key %s, which the platform does not have", name, r.KeyUUID)
		case agent != r.AgentUUID:
			e.t.Errorf("invariant: static role %q's key is on agent %s, not %s", name, agent, r.AgentUUID)
		default:
			if got := e.agentEndpointStatus(r.AgentURL, r.Secret); got != http.StatusOK {
				e.t.Errorf("invariant: the secret Vault holds for %q answers %d at its agent", name, got)
			}
		}
	}
	isForeign := map[string]bool{}
	for _, f := range foreign {
		isForeign[strings.ToLower(f)] = true
	}
	for uuid := range onPlatform {
		if !held[uuid] && !isForeign[uuid] {
			e.t.Errorf("invariant: stray agent API key %s that no static role holds", uuid)
		}
	}
	if n := walCount(e.t.(*testing.T), e); n != 0 {
		e.t.Errorf("invariant: %d write-ahead log entries left after rollback", n)
	}
}

// FuzzAgentStaticRequest sends arbitrary field maps to agent-static-roles/
// <name>, its rotate path and agent-static-creds/<name>, through
// b.HandleRequest against the emulator: no panic, no 5xx, every refusal a
// 400 that quotes no secret. One agent and one role exist, so creates,
// updates, rotations and deletes reach their handlers.
func FuzzAgentStaticRequest(f *testing.F) {
	e := newFuzzEnv(f)
	agent := e.staticAgent("fuzz")
	e.mustOK(logical.CreateOperation, "agent-static-roles/fuzz-a", map[string]any{"agent_uuid": agent})
	paths := []string{"agent-static-roles/%s", "agent-static-roles/%s/rotate", "agent-static-creds/%s"}
	for _, c := range []struct {
		path, op uint8
		name     string
		body     string
	}{
		{0, 0, "fuzz-b", `{"agent_uuid":"` + agent + `","rotation_period":"1h"}`},
		{0, 0, "fuzz-c", `{"agent_uuid":"../../v2/gen-ai/agents"}`},
		{0, 0, "fuzz-d", `{"agent_uuid":"` + agent + `","api_key_uuid":"` + unknownUUID + `"}`},
		{0, 1, "fuzz-a", `{"rotation_schedule":"not cron","rotation_window":"-1"}`},
		{0, 1, "fuzz-a", `{"agent_uuid":["x"],"disable_automated_rotation":"maybe"}`},
		{0, 0, "..", `{"agent_uuid":"` + agent + `"}`},
		{1, 1, "fuzz-a", `{}`},
		{1, 1, "missing", `{"extra":1}`},
		{2, 2, "fuzz-a", `{}`},
		{0, 3, "fuzz-a", `{}`},
	} {
		f.Add(c.path, c.op, c.name, []byte(c.body))
	}
	f.Fuzz(func(t *testing.T, pathSel, opSel uint8, name string, body []byte) {
		data, ok := decodeBody(body)
		if !ok {
			return
		}
		path := strings.Replace(paths[int(pathSel)%len(paths)], "%s", name, 1)
		e.check(t, fuzzOps[int(opSel)%len(fuzzOps)], path, data)
	})
}
