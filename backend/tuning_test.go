package backend

import (
	"context"
	"testing"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// factoryForTuningTest builds a mount through Factory, as Vault does.
func factoryForTuningTest(t *testing.T) *gradientBackend {
	t.Helper()
	raw, err := Factory(context.Background(), &logical.BackendConfig{
		Logger: hclog.NewNullLogger(), System: logical.TestSystemView(), StorageView: &logical.InmemStorage{},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw.(*gradientBackend)
}
