package floorplugin

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func TestReads(t *testing.T) {
	ctx := context.Background()
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	b, err := Factory(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ leased bool }{
		"plain/x":         {},
		"stored/x":        {},
		"leased/x":        {leased: true},
		"leased-get/x":    {leased: true},
		"leased-ttl/x":    {leased: true},
		"leased-stored/x": {leased: true},
		"plain-wide/x":    {},
	}
	for path, tc := range cases {
		t.Run(path, func(t *testing.T) {
			resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: path, Storage: conf.StorageView})
			if err != nil || resp == nil || resp.IsError() {
				t.Fatalf("read %s: %v %v", path, resp, err)
			}
			if resp.Data["name"] != "x" {
				t.Errorf("name = %v", resp.Data["name"])
			}
			if (resp.Secret != nil) != tc.leased {
				t.Errorf("leased = %v, want %v", resp.Secret != nil, tc.leased)
			}
		})
	}
	resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.RenewOperation, Path: "leased/x", Storage: conf.StorageView,
		Secret: &logical.Secret{LeaseOptions: logical.LeaseOptions{TTL: leaseTTL}, InternalData: map[string]any{"secret_type": secretType}}})
	if err != nil || resp == nil || resp.Secret == nil {
		t.Fatalf("renew: %v %v", resp, err)
	}
}

func TestCreateAgainstTheEmulator(t *testing.T) {
	e := emulator.New(emulator.Config{})
	srv := httptest.NewServer(e)
	defer srv.Close()
	ctx := context.Background()
	conf := logical.TestBackendConfig()
	storage := &logical.InmemStorage{}
	conf.StorageView = storage
	b, err := Factory(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "create/k1", Storage: storage,
		Data: map[string]any{"url": srv.URL, "token": "emulator-token", "api_key": "sk-ant-api03-FLOORFLOORFLOOR-0123456789"}})
	if err != nil || resp.IsError() {
		t.Fatalf("create: %v %v", resp, err)
	}
	if got := e.Counts()["POST /v2/gen-ai/anthropic/keys"]; got != 1 {
		t.Errorf("platform creates = %d", got)
	}
	keys, _ := storage.List(ctx, "keys/")
	wal, _ := storage.List(ctx, "wal/")
	if len(keys) != 1 || len(wal) != 0 {
		t.Errorf("keys %v, wal %v", keys, wal)
	}
}
