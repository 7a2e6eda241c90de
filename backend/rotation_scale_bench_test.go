package backend

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// BenchmarkRotationAtScale times the scheduler's own work with 10,000 keys
// that all rotate by period, on in-memory storage (no gRPC): rebuilding the
// queue, and a tick with nothing due. make bench measures the same through
// a real Vault, where each storage read is a round trip to Vault.
//
// A rebuild takes a quarter of a second, so `make bench-backend` (500
// iterations, three times) skips it unless asked:
//
//	GRADIENT_BENCH_SCALE=1 go test -run '^$' -bench RotationAtScale -benchtime 20x ./backend/
func BenchmarkRotationAtScale(b *testing.B) {
	if os.Getenv("GRADIENT_BENCH_SCALE") == "" {
		b.Skip("set GRADIENT_BENCH_SCALE=1 to run it")
	}
	const keys = 10000
	ctx := context.Background()
	be := newBackend(testTuning())
	be.tuning.rotationTick = 0 // ticks by hand
	storage := &logical.InmemStorage{}
	conf := logical.TestBackendConfig()
	conf.StorageView = storage
	conf.Logger = hclog.NewNullLogger()
	if err := be.Setup(ctx, conf); err != nil {
		b.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for i := range keys {
		k := &keyEntry{
			Name: fmt.Sprintf("key-%05d", i), Provider: platform.Anthropic, UUID: fmt.Sprintf("uuid-%05d", i),
			APIKey: anthropicKey(fmt.Sprint(i)), Version: 1, CreatedAt: now, UpdatedAt: now,
			rotationFields: rotationFields{RotationPeriod: 24 * time.Hour, RotationSetAt: now, NextVaultRotation: now.Add(24 * time.Hour)},
		}
		if err := putKey(ctx, storage, k); err != nil {
			b.Fatal(err)
		}
	}
	if err := be.initializeRotation(ctx, &logical.InitializationRequest{Storage: storage}); err != nil {
		b.Fatal(err)
	}
	s := be.rotation

	b.Run("rebuild", func(b *testing.B) {
		for b.Loop() {
			s.mu.Lock()
			s.built = false
			s.mu.Unlock()
			s.runTick(ctx)
		}
		if _, _, queued := s.status(); queued != keys {
			b.Fatalf("queued %d, want %d", queued, keys)
		}
	})
	b.Run("idle-tick", func(b *testing.B) {
		for b.Loop() {
			s.runTick(ctx)
		}
	})
}

// BenchmarkRotationIdleTick measures a tick with nothing due, with 10,000
// keys queued: it should not depend on the number of keys.
func BenchmarkRotationIdleTick(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			be := newBackend(testTuning())
			clock := &fakeClock{now: t0}
			be.clock = clock.Now
			be.rotation.storage = &logical.InmemStorage{}
			be.rotation.built = true
			if err := be.Setup(context.Background(), &logical.BackendConfig{Logger: hclog.NewNullLogger(), System: logical.TestSystemView()}); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				be.rotation.schedule(fmt.Sprintf("key-%05d", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				be.rotation.runTick(ctx)
			}
		})
	}
}
