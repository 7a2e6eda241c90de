package floorplugin

import (
	"context"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
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
