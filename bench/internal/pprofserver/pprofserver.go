// Package pprofserver lets the benchmark switch a plugin's CPU profile on
// and off: the plugin builds in bench/cmd serve it when
// GRADIENT_BENCH_PPROF=127.0.0.1:PORT is in their environment.
//
//	POST /cpu/start?file=PATH   starts runtime/pprof's CPU profile into PATH
//	POST /cpu/stop              stops it
//	/debug/pprof/...            the standard handlers
package pprofserver

import (
	"fmt"
	"net/http"
	_ "net/http/pprof" // the standard handlers on the default mux
	"os"
	"runtime/pprof"
	"sync"
)

// EnvAddr names the variable that holds the address to listen on.
const EnvAddr = "GRADIENT_BENCH_PPROF"

// StartFromEnv serves the profiler in the background when EnvAddr is set.
func StartFromEnv() {
	if addr := os.Getenv(EnvAddr); addr != "" {
		go serve(addr)
	}
}

func serve(addr string) {
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
