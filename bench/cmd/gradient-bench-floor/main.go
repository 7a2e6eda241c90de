// Command gradient-bench-floor is the benchmark's floor plugin
// (bench/floorplugin): an external secrets plugin that answers reads from
// memory. Only `make bench` starts it, through Vault. With
// GRADIENT_BENCH_PPROF set (gradient-bench -profile) it serves a CPU
// profiler too (bench/internal/pprofserver).
package main

import (
	"os"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/bench/floorplugin"
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
		BackendFactoryFunc: floorplugin.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("floor plugin shutting down", "error", err)
	os.Exit(1)
}
