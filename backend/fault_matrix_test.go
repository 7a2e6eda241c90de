package backend

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The fault matrix: every mutating operation, with each step of its road
// made to fail, then rollback; the answer must be a success or a clear
// error, and the mount at rest must keep the invariant (assertInvariant).
// Faults stay on through the immediate undo, so the periodic rollback is
// what settles it once they clear.

// matrixOp is one mutating operation: the platform call its faults aim at,
// a setup, and the request (its answer, or for a scheduled rotation the
// error it recorded).
type matrixOp struct {
	method, path string
	// noStorageWrite: the operation writes nothing to storage (reassign).
	noStorageWrite bool
	setup          func(r *rotEnv) (foreign []string)
	run            func(r *rotEnv) (*logical.Response, error)
}

var matrixKeys = map[string]string{}

func matrixKey(tag string) string { return anthropicKey("matrix-" + tag) }

func matrixOps() map[string]matrixOp {
	put := "/v2/gen-ai/anthropic/keys/"
	create := func(r *rotEnv, name string, extra map[string]any) {
		data := map[string]any{"provider": "anthropic", "api_key": matrixKey(name + "-1")}
		for k, v := range extra {
			data[k] = v
		}
		r.mustOK(logical.CreateOperation, "keys/"+name, data)
	}
	return map[string]matrixOp{
		"create": {method: "POST", path: "/v2/gen-ai/anthropic/keys",
			setup: func(r *rotEnv) []string { return nil },
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.CreateOperation, "keys/m", map[string]any{"provider": "anthropic", "api_key": matrixKey("create")})
			}},
		"adopt": {method: "PUT", path: put,
			setup: func(r *rotEnv) []string {
				k, _, err := r.do.AgentPlatform.CreateAnthropicAPIKey(context.Background(), &godo.AnthropicAPIKeyCreateRequest{Name: "hand-made", ApiKey: matrixKey("hand")})
				if err != nil {
					r.t.Fatal(err)
				}
				matrixKeys["adopt"] = k.Uuid
				return []string{k.Uuid} // foreign until adopted
			},
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.CreateOperation, "keys/m", map[string]any{"provider": "anthropic", "api_key": matrixKey("adopt"), "uuid": matrixKeys["adopt"]})
			}},
		"update": {method: "PUT", path: put,
			setup: func(r *rotEnv) []string { create(r, "m", nil); return nil },
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.UpdateOperation, "keys/m", map[string]any{"api_key": matrixKey("update")})
			}},
		"rotate": {method: "PUT", path: put,
			setup: func(r *rotEnv) []string {
				create(r, "m", nil)
				r.stage("m", matrixKey("staged"))
				return nil
			},
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.UpdateOperation, "keys/m/rotate", nil)
			}},
		"scheduled rotation": {method: "PUT", path: put,
			setup: func(r *rotEnv) []string {
				create(r, "m", map[string]any{"rotation_period": "24h"})
				r.stage("m", matrixKey("scheduled"))
				return nil
			},
			run: func(r *rotEnv) (*logical.Response, error) {
				r.tickAt(t0.Add(24 * time.Hour))
				read := r.mustOK(logical.ReadOperation, "keys/m", nil)
				if msg, _ := read.Data["rotation_error"].(string); msg != "" {
					return logical.ErrorResponse(msg), nil
				}
				return read, nil
			}},
		"rename": {method: "PUT", path: put,
			setup: func(r *rotEnv) []string { create(r, "m", nil); return nil },
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.UpdateOperation, "rename/m", map[string]any{"new_name": "m-renamed"})
			}},
		"reassign": {method: "PUT", path: "/v2/gen-ai/agents/",
			setup: func(r *rotEnv) []string {
				create(r, "m", nil)
				create(r, "m-to", nil)
				from := r.platformKeyNamed(platform.Anthropic, "m").UUID
				r.createAgent("m-agent-1", platform.Anthropic, from)
				r.createAgent("m-agent-2", platform.Anthropic, from)
				return nil
			},
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.UpdateOperation, "keys/m/reassign", map[string]any{"to": "m-to"})
			}},
		"delete": {method: "DELETE", path: put,
			setup: func(r *rotEnv) []string { create(r, "m", nil); return nil },
			run: func(r *rotEnv) (*logical.Response, error) {
				return r.request(logical.DeleteOperation, "keys/m", nil)
			}},
	}
}

// matrixSteps makes one step of an operation's road fail. Faults on the
// platform are plentiful, so that retries and the immediate undo fail too.
var matrixSteps = map[string]func(r *rotEnv, op matrixOp){
	"WAL write fails": func(r *rotEnv, _ matrixOp) { r.storage.failUnder("wal/") },
	"platform fails (5xx)": func(r *rotEnv, op matrixOp) {
		r.emu.InjectFault(emulator.Fault{Method: op.method, Path: op.path, Status: 503, Count: 100})
	},
	"platform refuses (4xx)": func(r *rotEnv, op matrixOp) {
		r.emu.InjectFault(emulator.Fault{Method: op.method, Path: op.path, Status: 422, Count: 100})
	},
	"applied but answer lost": dropThenFail,
	"storage write fails":     func(r *rotEnv, _ matrixOp) { r.storage.failUnder("keys/") },
	"WAL delete fails":        func(r *rotEnv, _ matrixOp) { r.storage.failDeletesUnder("wal/") },
	"answer lost, then works": func(r *rotEnv, op matrixOp) {
		r.emu.InjectFault(emulator.Fault{Method: op.method, Path: op.path, Mode: "drop"})
	},
}

func dropThenFail(r *rotEnv, op matrixOp) {
	r.emu.InjectFault(emulator.Fault{Method: op.method, Path: op.path, Mode: "drop"})
	r.emu.InjectFault(emulator.Fault{Method: op.method, Path: op.path, Status: 503, Count: 100})
}

func TestFaultMatrix(t *testing.T) {
	cells := 0
	for opName, op := range matrixOps() {
		for stepName, inject := range matrixSteps {
			if op.noStorageWrite && stepName == "storage write fails" {
				continue // reassign keeps nothing in storage
			}
			cells++
			t.Run(opName+"/"+stepName, func(t *testing.T) {
				r := newRotationEnv(t, nil)
				foreign := op.setup(r)
				inject(r, op)
				resp, err := op.run(r)
				r.storage.failUnder("")
				r.storage.failDeletesUnder("")
				r.emu.ClearFaults()
				assertClearAnswer(t, r.testEnv, resp, err)

				rollbackNow(t, r.testEnv)
				if opName == "adopt" && resp != nil && !resp.IsError() && err == nil {
					foreign = nil // adopted: Vault holds it now
				}
				assertInvariant(t, r.testEnv, foreign...)
			})
		}
	}
	t.Logf("fault matrix: %d cells (%d operations x %d steps, less the steps an operation does not have)", cells, len(matrixOps()), len(matrixSteps))
}

// assertClearAnswer: a success, or an error that says what failed and holds
// no secret.
func assertClearAnswer(t *testing.T, e *testEnv, resp *logical.Response, err error) {
	t.Helper()
	msg, failed := answerError(resp, err)
	if !failed {
		return
	}
	if len(msg) < 20 || !strings.ContainsAny(msg, " ") {
		t.Errorf("unclear error: %q", msg)
	}
	known := []string{"platform", "storing", "write-ahead log", "injected storage failure", "HTTP", "deleting key", "rolled back", "undo"}
	found := false
	for _, k := range known {
		found = found || strings.Contains(msg, k)
	}
	if !found {
		t.Errorf("the error does not say what failed: %q", msg)
	}
	e.assertSecretFree("error", msg)
}
