package backend

import (
	"fmt"
	"testing"

	"github.com/digitalocean/godo"

	"github.com/hashicorp/vault/sdk/logical"
)

// Benchmarks for `make bench`. They go through HandleRequest like the tests;
// the create benchmarks include the loopback round trips to the in-process
// emulator (verification, the create, and the cached name check).

func BenchmarkKeyRead(b *testing.B) {
	e := newTestEnv(b, nil)
	e.mustOK(logical.CreateOperation, "keys/bench", map[string]any{"provider": "anthropic", "api_key": anthropicKey("bench")})
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.b.HandleRequest(b.Context(), &logical.Request{Operation: logical.ReadOperation, Path: "keys/bench", Storage: e.storage}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCredsRead(b *testing.B) {
	e := newTestEnv(b, nil)
	e.mustOK(logical.CreateOperation, "keys/bench", map[string]any{"provider": "openai", "api_key": openAIKey("bench")})
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.b.HandleRequest(b.Context(), &logical.Request{Operation: logical.ReadOperation, Path: "creds/bench", Storage: e.storage}); err != nil {
			b.Fatal(err)
		}
	}
}

// seededKeys is how many keys the platform holds before a create benchmark
// starts, so the duplicate-name listing has a known size.
const seededKeys = 1000

func benchmarkCreate(b *testing.B, cacheTTL string) {
	e := newTestEnv(b, map[string]any{"name_cache_ttl": cacheTTL})
	e.emu.SetRateLimits(1<<30, 1<<30)
	for i := range seededKeys {
		if _, _, err := e.do.AgentPlatform.CreateAnthropicAPIKey(b.Context(), &godo.AnthropicAPIKeyCreateRequest{
			Name: fmt.Sprintf("seeded-%d", i), ApiKey: anthropicKey(fmt.Sprintf("seed%d", i)),
		}); err != nil {
			b.Fatal(err)
		}
	}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		resp, err := e.b.HandleRequest(b.Context(), &logical.Request{
			Operation: logical.CreateOperation, Path: fmt.Sprintf("keys/bench-%d", i), Storage: e.storage,
			Data: map[string]any{"provider": "anthropic", "api_key": anthropicKey(fmt.Sprintf("b%d", i))},
		})
		if err != nil || resp.IsError() {
			b.Fatalf("create: %v %v", err, resp)
		}
	}
}

// With the name cache, a create costs a verification and a platform create.
func BenchmarkKeyCreateCachedNames(b *testing.B) { benchmarkCreate(b, "1h") }

// Without it, every create also lists every key of the provider (here at
// least seededKeys, in pages of 200): what the cache saves a bulk import.
// Run it with a fixed count (make bench does) so the list stays near size.
func BenchmarkKeyCreateUncachedNames(b *testing.B) { benchmarkCreate(b, "0") }
