package main

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// profileRun is -profile DIR: with the plugin built by
// bench/cmd/gradient-plugin-pprof, it runs each Gradient operation at
// concurrency 8 for a while and writes the plugin's CPU profile for it, and
// Vault's own, into DIR (plugin-<op>.pprof, vault-<op>.pprof).
func (b *bench) profileRun(dir string, pprofAddrs [2]string, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dir, _ = filepath.Abs(dir)
	// Keys to read and update.
	const n = 200
	r := measure("seed", 8, n, 0, func(i int) error {
		name := fmt.Sprintf("p-%05d", i)
		return b.write("gradient/keys/"+name, map[string]any{"provider": "anthropic", "api_key": apiKey(name)})
	})
	if r.errors > 0 {
		return r.firstErr
	}
	var created atomic.Int64
	ops := []struct {
		name string
		op   func(i int) error
	}{
		{"keys-read", func(i int) error { return b.read(fmt.Sprintf("gradient/keys/p-%05d", i%n)) }},
		{"creds-read", func(i int) error { return b.read(fmt.Sprintf("gradient/creds/p-%05d", i%n)) }},
		{"create", func(int) error {
			name := fmt.Sprintf("q-%06d", created.Add(1))
			return b.write("gradient/keys/"+name, map[string]any{"provider": "anthropic", "api_key": apiKey(name)})
		}},
		{"floor-leased", func(i int) error { return b.read(fmt.Sprintf("floor/leased/k%d", i%1000)) }},
		{"floor-plain", func(i int) error { return b.read(fmt.Sprintf("floor/plain/k%d", i%1000)) }},
		{"floor-stored", func(i int) error { return b.read(fmt.Sprintf("floor/stored/k%d", i%1000)) }},
	}
	for _, o := range ops {
		pprofAddr := pprofAddrs[0]
		if strings.HasPrefix(o.name, "floor") {
			pprofAddr = pprofAddrs[1]
		}
		if err := post(pprofAddr, "/cpu/start?file="+url.QueryEscape(filepath.Join(dir, "plugin-"+o.name+".pprof"))); err != nil {
			return fmt.Errorf("starting the plugin's profile: %w", err)
		}
		var wg sync.WaitGroup
		var vaultErr error
		wg.Add(1)
		go func() {
			defer wg.Done()
			vaultErr = b.vaultProfile(filepath.Join(dir, "vault-"+o.name+".pprof"), d)
		}()
		var count atomic.Int64
		pids := map[string]int{"vault": b.v.cmd.Process.Pid, "gradient plugin": b.v.pluginPID(b.plugin), "floor plugin": b.v.pluginPID(b.floor)}
		cpuBefore := map[string]time.Duration{}
		for who, pid := range pids {
			st, _ := readProcStat(pid)
			cpuBefore[who] = st.cpu
		}
		stop := time.Now().Add(d)
		var workers sync.WaitGroup
		for w := 0; w < 8; w++ {
			workers.Add(1)
			go func() {
				defer workers.Done()
				for time.Now().Before(stop) {
					_ = o.op(int(count.Add(1)))
				}
			}()
		}
		workers.Wait()
		wg.Wait()
		if err := post(pprofAddr, "/cpu/stop"); err != nil {
			return err
		}
		if vaultErr != nil {
			return vaultErr
		}
		var per []string
		for _, who := range []string{"vault", "gradient plugin", "floor plugin"} {
			st, _ := readProcStat(pids[who])
			per = append(per, fmt.Sprintf("%s %.0f µs", who, float64((st.cpu-cpuBefore[who]).Microseconds())/float64(count.Load())))
		}
		progress("profiled %s: %d ops in %s; CPU per op (/proc): %s", o.name, count.Load(), d, strings.Join(per, ", "))
	}
	return b.routeTimes()
}

// routeTimes reads keys/<name> and the floor's stored read one after the
// other at concurrency 1 for two of Vault's 10 s metrics intervals and
// prints Vault's own timing of each route (vault.route.read.<mount>: from
// the router into the plugin and back, storage calls included) beside
// the whole request (vault.core.handle_request).
func (b *bench) routeTimes() error {
	stop := time.Now().Add(21 * time.Second)
	var g, f []time.Duration
	for i := 0; time.Now().Before(stop); i++ {
		t := time.Now()
		_ = b.read(fmt.Sprintf("gradient/keys/p-%05d", i%200))
		g = append(g, time.Since(t))
		t = time.Now()
		_ = b.read(fmt.Sprintf("floor/stored/k%d", i%1000))
		f = append(f, time.Since(t))
	}
	progress("client p50, alternating: keys/<name> read %s ms, floor read + 1 storage get %s ms", ms(percentile(g, 0.5)), ms(percentile(f, 0.5)))
	s, err := b.c.Logical().Read("sys/metrics")
	if err != nil {
		return err
	}
	samples, _ := s.Data["Samples"].([]any)
	for _, x := range samples {
		m, _ := x.(map[string]any)
		name, _ := m["Name"].(string)
		if strings.Contains(name, "route.read") || strings.Contains(name, "handle_request") || strings.Contains(name, "storage") && strings.Contains(name, "get") {
			progress("metric %s: count %v, mean %v ms", name, m["Count"], m["Mean"])
		}
	}
	return nil
}

func post(addr, path string) error {
	resp, err := http.Post("http://"+addr+path, "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// vaultProfile fetches Vault's CPU profile over d (sys/pprof needs the root token).
func (b *bench) vaultProfile(path string, d time.Duration) error {
	req := b.c.NewRequest(http.MethodGet, "/v1/sys/pprof/profile")
	req.Params.Set("seconds", fmt.Sprint(int(d.Seconds())))
	resp, err := b.c.RawRequest(req) //nolint:staticcheck // the raw body is the profile
	if err != nil {
		return fmt.Errorf("vault profile: %w", err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.ReadFrom(resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
