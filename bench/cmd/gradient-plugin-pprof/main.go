// Command gradient-plugin-pprof is the Gradient plugin with a CPU profiler
// the benchmark can switch on and off: gradient-bench -profile registers it
// with GRADIENT_BENCH_PPROF=127.0.0.1:PORT. It is never released.
//
//	POST /cpu/start?file=PATH   starts runtime/pprof's CPU profile into PATH
//	POST /cpu/stop              stops it
//	/debug/pprof/...            the standard handlers
package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime/pprof"
	"sync"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/backend"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if addr := os.Getenv("GRADIENT_BENCH_PPROF"); addr != "" {
		go serveProfiler(addr)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: backend.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

func serveProfiler(addr string) {
	var mu sync.Mutex
	var f *os.File
	http.HandleFunc("POST /cpu/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		out, err := os.Create(r.URL.Query().Get("file"))
		if err == nil {
			if err = pprof.StartCPUProfile(out); err != nil {
				out.Close()
			}
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f = out
	})
	http.HandleFunc("POST /cpu/stop", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		pprof.StopCPUProfile()
		if f != nil {
			_ = f.Close()
			f = nil
		}
		fmt.Fprintln(w, "stopped")
	})
	_ = http.ListenAndServe(addr, nil)
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
