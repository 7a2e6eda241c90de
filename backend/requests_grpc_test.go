package backend

import (
	"net/http"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin/pb"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Found by the chaos run: through a real Vault, a rotate of a key that does
// not exist answered 500, and so did every rate-limit refusal, because the
// wrapped sentinels (logical.ErrNotFound, logical.ErrUpstreamRateLimited)
// lose their identity on the gRPC hop between the plugin and Vault. The
// errors are sent here through the same translation the plugin's gRPC
// server and Vault's client apply.
func TestErrorsKeepTheirStatusAcrossGRPC(t *testing.T) {
	e := newTestEnv(t, nil)
	e.mustOK(logical.CreateOperation, "keys/limited", map[string]any{"provider": platform.OpenAI, "api_key": openAIKey("limited")})
	cases := map[string]struct {
		setup  func()
		path   string
		data   map[string]any
		status int
	}{
		"rotate of a missing key": {path: "keys/missing/rotate", data: map[string]any{"api_key": openAIKey("missing")}, status: http.StatusNotFound},
		"platform rate limit": {
			setup: func() {
				e.emu.InjectFault(emulator.Fault{Method: http.MethodPut, Path: "/v2/gen-ai/openai/keys/", Count: platform.MaxAttempts, Mode: "status", Status: http.StatusTooManyRequests})
			},
			path: "keys/limited", data: map[string]any{"api_key": openAIKey("limited-2")}, status: http.StatusBadGateway,
		},
	}
	for label, c := range cases {
		t.Run(label, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			req := &logical.Request{Operation: logical.UpdateOperation, Path: c.path, Data: c.data, Storage: e.storage, MountPoint: "gradient/"}
			resp, err := e.b.HandleRequest(t.Context(), req)
			if err == nil {
				t.Fatalf("want an error, got %#v", resp)
			}
			// The plugin's gRPC server, Vault's gRPC client, then Vault's
			// HTTP layer: RespondErrorCommon and AdjustErrorStatusCode.
			wire := pb.ProtoErrToErr(pb.ErrToProtoErr(err))
			status, answer := logical.RespondErrorCommon(req, nil, wire)
			logical.AdjustErrorStatusCode(&status, answer)
			if status != c.status {
				t.Fatalf("after gRPC: HTTP %d, want %d: %v", status, c.status, wire)
			}
		})
	}
}
