// Command gradient-plugin-pprof is the Gradient plugin with a CPU profiler
// the benchmark can switch on and off (bench/internal/pprofserver):
// gradient-bench -profile registers it with GRADIENT_BENCH_PPROF set, and
// with the GRADIENT_TEST_* tuning, which only a build with -tags gradienttest
// reads. It is never released.
package main

import (
	"os"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/backend"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/bench/internal/pprofserver"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	pprofserver.StartFromEnv()
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
