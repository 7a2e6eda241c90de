package backend

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// Vault calls the existence check before a write reaches its handler, on
// storage that refuses any path with ".." in it (logical.StorageView does
// the same). A name with ".." is the caller's mistake: a 400 that quotes the
// rule, never the 500 a storage error would make.
func TestKeyExistenceCheck_RefusedNamesAre400(t *testing.T) {
	e := newTestEnv(t, nil)
	storage := logical.NewStorageView(e.storage, "")
	for _, name := range []string{"a..b", "..", "../config", "a/../../config"} {
		t.Run(name, func(t *testing.T) {
			req := &logical.Request{Operation: logical.CreateOperation, Path: "keys/" + name, Storage: storage, MountPoint: "gradient/",
				Data: map[string]any{"provider": platform.Anthropic, "api_key": anthropicKey("dotdot")}}
			checkFound, exists, err := e.b.HandleExistenceCheck(context.Background(), req)
			if err != nil || !checkFound || exists {
				t.Fatalf("existence check: found=%v exists=%v err=%v; want a check that finds nothing", checkFound, exists, err)
			}
			resp, err := e.b.HandleRequest(context.Background(), req)
			status, _ := logical.RespondErrorCommon(req, resp, err)
			if status != http.StatusBadRequest || resp == nil || !strings.Contains(resp.Error().Error(), nameRule) {
				t.Fatalf("create %q: HTTP %d, err=%v resp=%v; want a 400 quoting the rule", name, status, err, resp)
			}
		})
	}
	if n := len(e.platformKeys(platform.Anthropic)); n != 0 {
		t.Fatalf("%d keys reached the platform", n)
	}
}
