// Command gradient-bench measures the Gradient plugin through a real Vault,
// side by side with Vault's KV v2 engine and a minimal external plugin
// (bench/floorplugin), with one client. It starts its own Vault dev server
// and a zero-latency emulator on 127.0.0.1, prints a table and writes it to
// -out. `make bench` runs it at full size, `make bench-smoke` small.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

const (
	gradientPlugin = "vault-plugin-secrets-gradient"
	floorPlugin    = "gradient-bench-floor"
	benchToken     = "bench-token"
	rotationToken  = "bench-rotation-token"
	// Raised limits while measuring and seeding: at the platform's default
	// 250 a minute the budget, not the plugin, would set every create's pace.
	raisedPerMinute = 10_000_000
	raisedPerHour   = 1_000_000_000
)

// sizes is one run's scale.
type sizes struct {
	ops       int // timed reads per measurement
	creates   int // timed creates (and updates) per concurrency; also the small list
	listOps   int // timed lists per measurement
	large     int // keys of the scale mount: the large list and rotation at scale
	due       int // keys coming due at once
	duePeriod time.Duration
	rotLimit  int // platform per-minute limit during the rotation burst
	idleWatch time.Duration
	// profileDir, when set, makes the run write CPU profiles instead of the table.
	profileDir string
}

var presets = map[string]sizes{
	"full":  {ops: 3000, creates: 1000, listOps: 300, large: 10000, due: 1000, duePeriod: 20 * time.Second, rotLimit: 3000, idleWatch: 30 * time.Second},
	"smoke": {ops: 200, creates: 100, listOps: 20, large: 1000, due: 50, duePeriod: 5 * time.Second, rotLimit: 3000, idleWatch: 3 * time.Second},
}

func main() {
	var (
		vaultBin  = flag.String("vault", "", "path of the vault binary (scripts/get-vault.sh prints one)")
		pluginBin = flag.String("plugin", "bin/plugins-test/"+gradientPlugin, "the Gradient plugin binary, a test build (-tags gradienttest, make build-test): the bench passes it the GRADIENT_TEST_* tuning")
		floorBin  = flag.String("floor", "bin/bench/"+floorPlugin, "the floor plugin binary")
		size      = flag.String("size", "full", "full or smoke")
		out       = flag.String("out", "bench/results/latest.md", "where the table is written")
		keep      = flag.Bool("keep", false, "keep the work directory (Vault's log)")
		profile   = flag.String("profile", "", "instead of the table: CPU profiles of the plugin and Vault into this directory; -plugin must be a build of bench/cmd/gradient-plugin-pprof with -tags gradienttest")
		large     = flag.Int("large", 0, "override the size's number of keys at scale")
		due       = flag.Int("due", 0, "override the size's number of keys due at once")
	)
	flag.Parse()
	sz, ok := presets[*size]
	if !ok || *vaultBin == "" {
		fmt.Fprintln(os.Stderr, "usage: gradient-bench -vault PATH [-size full|smoke] [-out FILE]")
		os.Exit(2)
	}
	if *large > 0 {
		sz.large = *large
	}
	if *due > 0 {
		sz.due = *due
	}
	sz.profileDir = *profile
	if err := run(*vaultBin, *pluginBin, *floorBin, *size, sz, *out, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "gradient-bench:", err)
		os.Exit(1)
	}
}

// bench is one run's shared state.
type bench struct {
	sz     sizes
	v      *vaultDev
	c      *api.Client
	emu    *emulator.Emulator
	emuURL string
	// floorEmu serves the floor plugin's creates.
	floorEmu    *emulator.Emulator
	floorEmuURL string
	plugin      string // the plugin's path in the plugin directory
	floor       string // the floor plugin's
	results     []result
	notes       []string // extra sections of the report
	// loadStart is the load average when the run started.
	loadStart string
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s bench: %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func run(vaultBin, pluginBin, floorBin, size string, sz sizes, out string, keep bool) error {
	started := time.Now()
	dir, err := os.MkdirTemp("", "gradient-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	} else {
		progress("work directory %s", dir)
	}
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return err
	}
	sums := map[string]string{}
	for name, src := range map[string]string{gradientPlugin: pluginBin, floorPlugin: floorBin} {
		if sums[name], err = copyExecutable(src, filepath.Join(pluginDir, name)); err != nil {
			return err
		}
	}

	// The emulator, in this process, at zero latency.
	emu := emulator.New(emulator.Config{Tokens: []string{benchToken, rotationToken}, PerMinuteLimit: raisedPerMinute, PerHourLimit: raisedPerHour})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: emu}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	// The floor's creates go to an emulator of their own, so that each
	// emulator's counters belong to one plugin.
	floorEmu := emulator.New(emulator.Config{Tokens: []string{benchToken}, PerMinuteLimit: raisedPerMinute, PerHourLimit: raisedPerHour})
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	floorSrv := &http.Server{Handler: floorEmu}
	go func() { _ = floorSrv.Serve(fl) }()
	defer floorSrv.Close()

	v, err := startVault(vaultBin, dir, pluginDir, 8)
	if err != nil {
		return err
	}
	defer v.stop()
	b := &bench{loadStart: loadAvg(), sz: sz, v: v, c: v.client, emu: emu, emuURL: "http://" + l.Addr().String(), floorEmu: floorEmu, floorEmuURL: "http://" + fl.Addr().String(), plugin: filepath.Join(pluginDir, gradientPlugin), floor: filepath.Join(pluginDir, floorPlugin)}
	var pprofAddrs [2]string // the Gradient plugin's, the floor's
	if sz.profileDir != "" {
		for i := range pprofAddrs {
			port, err := freePort()
			if err != nil {
				return err
			}
			pprofAddrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
		}
	}
	if err := b.setup(sums, pprofAddrs); err != nil {
		return err
	}
	progress("Vault %s, emulator %s, size %s", v.addr, b.emuURL, size)
	if sz.profileDir != "" {
		return b.profileRun(sz.profileDir, pprofAddrs, 10*time.Second)
	}

	steps := []struct {
		name string
		fn   func() error
	}{
		{"small", b.benchSmall},
		{"agent keys", b.benchAgentKeys},
		{"scale", b.benchScale},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	report := b.report(size, vaultBin, time.Since(started))
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
		return err
	}
	progress("written to %s in %s", out, time.Since(started).Round(time.Second))
	return nil
}

func copyExecutable(src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("%w (run make build first)", err)
	}
	defer in.Close()
	o, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(o, h), in); err != nil {
		o.Close()
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), o.Close()
}

// setup registers both plugins (the Gradient one with the scheduler's
// test tuning: a one-second tick and periods as short as a second) and
// mounts the three engines.
func (b *bench) setup(sums map[string]string, pprofAddrs [2]string) error {
	sys := b.c.Sys()
	env := []string{"GRADIENT_TEST_ROTATION_TICK=1s", "GRADIENT_TEST_MIN_ROTATION_PERIOD=1s"}
	var floorEnv []string
	if pprofAddrs[0] != "" {
		env = append(env, "GRADIENT_BENCH_PPROF="+pprofAddrs[0])
		floorEnv = append(floorEnv, "GRADIENT_BENCH_PPROF="+pprofAddrs[1])
	}
	if err := sys.RegisterPlugin(&api.RegisterPluginInput{Name: gradientPlugin, Type: api.PluginTypeSecrets, Command: gradientPlugin, SHA256: sums[gradientPlugin],
		Env: env}); err != nil {
		return fmt.Errorf("registering %s: %w", gradientPlugin, err)
	}
	if err := sys.RegisterPlugin(&api.RegisterPluginInput{Name: floorPlugin, Type: api.PluginTypeSecrets, Command: floorPlugin, SHA256: sums[floorPlugin], Env: floorEnv}); err != nil {
		return fmt.Errorf("registering %s: %w", floorPlugin, err)
	}
	mounts := map[string]*api.MountInput{
		"gradient": {Type: gradientPlugin},
		"floor":    {Type: floorPlugin},
		"kv":       {Type: "kv", Options: map[string]string{"version": "2"}},
	}
	for path, in := range mounts {
		if err := sys.Mount(path, in); err != nil {
			return fmt.Errorf("mounting %s: %w", path, err)
		}
	}
	return b.configure("gradient", benchToken, raisedPerMinute, raisedPerHour)
}

func (b *bench) configure(mount, token string, perMinute, perHour int) error {
	_, err := b.c.Logical().Write(mount+"/config", map[string]any{
		"token": token, "api_url": b.emuURL,
		"anthropic_url": b.emuURL + "/anthropic", "openai_url": b.emuURL + "/openai",
		"rate_limit_per_minute": perMinute, "rate_limit_per_hour": perHour,
	})
	return err
}

// apiKey is a well-formed Anthropic key, distinct for every tag.
func apiKey(tag string) string {
	return "sk-ant-api03-BENCHBENCH" + strings.ReplaceAll(tag, "-", "x") + "-0123456789abcdefXYZ"
}

// benchOp is one operation to measure: op gets 0..n-1, each index once.
type benchOp struct {
	name, group string
	// counter is the emulator whose calls this op makes (nil: none); ops
	// measured together never share one, so its counts are theirs.
	counter *emulator.Emulator
	// routes, when set, counts only the counter's routes that start with
	// it (a method and a space: "POST "), for ops that share an emulator.
	routes string
	warmup bool // untimed calls first
	op     func(i int) error
}

// interleaved measures ops at concurrency conc, n operations each. The
// operations compared with each other take turns request by request: each
// worker runs every op for one index (in an order that turns with the
// index) before taking the next, so that whatever else the machine does
// falls on all of them alike. ops/s per op is conc / mean latency.
func (b *bench) interleaved(conc, n int, ops ...benchOp) {
	warmup := 0
	for _, o := range ops {
		if o.warmup {
			warmup = warm(n)
		}
	}
	for i := 0; i < warmup; i++ {
		for _, o := range ops {
			_ = o.op(n + i)
		}
	}
	before := map[*emulator.Emulator]map[string]int{}
	for _, o := range ops {
		if o.counter != nil {
			before[o.counter] = o.counter.Counts()
		}
	}
	lat := make([][][]time.Duration, conc) // worker, op
	errs := make([][]int, conc)
	firstErr := make([]error, len(ops))
	var errMu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		lat[w] = make([][]time.Duration, len(ops))
		errs[w] = make([]int, len(ops))
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				for k := range ops {
					idx := (k + i) % len(ops)
					t := time.Now()
					err := ops[idx].op(i)
					lat[w][idx] = append(lat[w][idx], time.Since(t))
					if err != nil {
						errs[w][idx]++
						errMu.Lock()
						if firstErr[idx] == nil {
							firstErr[idx] = err
						}
						errMu.Unlock()
					}
				}
			}
		}(w)
	}
	wg.Wait()
	for idx, o := range ops {
		r := result{name: o.name, group: o.group, concurrency: conc, ops: n, firstErr: firstErr[idx], upstream: o.counter != nil}
		var sum time.Duration
		for w := range lat {
			r.samples = append(r.samples, lat[w][idx]...)
			r.errors += errs[w][idx]
		}
		for _, d := range r.samples {
			sum += d
		}
		r.wall = sum / time.Duration(conc)
		r.p50, r.p99 = percentile(r.samples, 0.50), percentile(r.samples, 0.99)
		if o.counter != nil {
			// The counts are taken after the warmup: they are the n
			// timed operations'.
			platform, provider, _ := callDelta(countsOf(before[o.counter], o.routes), countsOf(o.counter.Counts(), o.routes))
			r.platform = float64(platform) / float64(n)
			r.provider = float64(provider) / float64(n)
		}
		b.results = append(b.results, r)
		progress("%-50s c=%d %6d ops %7.0f ops/s p50 %s ms p99 %s ms errors %d", r.name, conc, r.ops, r.opsPerSec(), ms(r.p50), ms(r.p99), r.errors)
		if r.firstErr != nil {
			progress("  first error: %v", r.firstErr)
		}
	}
}

func (b *bench) read(path string) error {
	s, err := b.c.Logical().ReadWithContext(context.Background(), path)
	if err == nil && s == nil {
		err = fmt.Errorf("%s: not found", path)
	}
	return err
}

func (b *bench) list(path string, want int) error {
	s, err := b.c.Logical().ListWithContext(context.Background(), path)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("%s: empty", path)
	}
	if keys, _ := s.Data["keys"].([]any); len(keys) != want {
		return fmt.Errorf("%s: %d keys, want %d", path, len(keys), want)
	}
	return nil
}

func (b *bench) write(path string, data map[string]any) error {
	_, err := b.c.Logical().WriteWithContext(context.Background(), path, data)
	return err
}

var concurrencies = []int{1, 8}

func warm(n int) int { return min(50, n/10) }

func (b *bench) keyWrite(mount, name string) error {
	return b.write(mount+"/keys/"+name, map[string]any{"provider": "anthropic", "api_key": apiKey(name)})
}

// benchSmall measures everything but the scale mount: creates, the small
// list, updates and reads, each beside its KV v2 and floor counterparts.
func (b *bench) benchSmall() error {
	n := b.sz.creates
	for _, size := range []int{n, b.sz.large} {
		if err := b.seedKV(fmt.Sprintf("l%d", size), size); err != nil {
			return err
		}
	}
	// Bulk import: the concurrency-1 creates are n creates in a row,
	// counted call by call.
	before := b.emu.Counts()
	for _, conc := range concurrencies {
		prefix := fmt.Sprintf("c%d", conc)
		b.interleaved(conc, n,
			benchOp{name: "gradient keys/<name> create", group: "kv put|floor create", counter: b.emu,
				op: func(i int) error { return b.keyWrite("gradient", fmt.Sprintf("%s-%05d", prefix, i)) }},
			benchOp{name: "kv put", op: func(i int) error {
				return b.write(fmt.Sprintf("kv/data/%s-%05d", prefix, i), map[string]any{"data": map[string]any{"api_key": apiKey(fmt.Sprint(i))}})
			}},
			benchOp{name: "floor create (WAL, verify, platform create, store)", group: "kv put", counter: b.floorEmu, op: func(i int) error {
				name := fmt.Sprintf("floor-%s-%05d", prefix, i)
				return b.write("floor/create/"+name, map[string]any{"url": b.floorEmuURL, "token": benchToken, "api_key": apiKey(name)})
			}},
		)
		if conc == 1 {
			platform, provider, detail := callDelta(before, b.emu.Counts())
			b.notes = append(b.notes, fmt.Sprintf("### Bulk import: %d creates in a row (concurrency 1, name_cache_ttl 10s)\n\n"+
				"%d platform and %d provider calls: %s.\n", n, platform, provider, formatDetail(detail)))
			for _, conc := range concurrencies {
				b.interleaved(conc, b.sz.listOps,
					benchOp{name: fmt.Sprintf("gradient keys/ list (%d)", n), group: fmt.Sprintf("kv list (%d)", n), counter: b.emu, warmup: true,
						op: func(int) error { return b.list("gradient/keys", n) }},
					benchOp{name: fmt.Sprintf("kv list (%d)", n), warmup: true,
						op: func(int) error { return b.list(fmt.Sprintf("kv/metadata/l%d", n), n) }},
				)
			}
		}
	}
	for round, conc := range concurrencies {
		b.interleaved(conc, n,
			benchOp{name: "gradient keys/<name> update (secret)", group: "kv put (update)", counter: b.emu, op: func(i int) error {
				name := fmt.Sprintf("c1-%05d", i%n)
				return b.write("gradient/keys/"+name, map[string]any{"api_key": apiKey(fmt.Sprintf("%sr%d", name, round))})
			}},
			benchOp{name: "kv put (update)", op: func(i int) error {
				return b.write(fmt.Sprintf("kv/data/c1-%05d", i%n), map[string]any{"data": map[string]any{"api_key": apiKey(fmt.Sprintf("%dr%d", i, round))}})
			}},
		)
	}
	read := func(name, group string, upstream bool, path string) benchOp {
		var counter *emulator.Emulator
		if upstream {
			counter = b.emu
		}
		return benchOp{name: name, group: group, counter: counter, warmup: true, op: func(i int) error {
			return b.read(fmt.Sprintf(path, i%n))
		}}
	}
	// Reads are measured in steady state: every key read once through both
	// paths, so the key cache holds them all, as it does once a mount has
	// served its consumers. The first read of a key after a change costs
	// one storage get more: the floor's "+ 1 storage get" rows.
	for i := range n {
		if err := b.read(fmt.Sprintf("gradient/keys/c1-%05d", i)); err != nil {
			return err
		}
		if err := b.read(fmt.Sprintf("gradient/creds/c1-%05d", i)); err != nil {
			return err
		}
	}
	for _, conc := range concurrencies {
		b.interleaved(conc, b.sz.ops,
			read("gradient keys/<name> read", "kv get|floor plain|floor plain-wide", true, "gradient/keys/c1-%05d"),
			// Counted together with keys/<name> read (one emulator): the
			// platform/op shown for both is the pair's.
			read("gradient creds/<name> read", "kv get|floor leased", true, "gradient/creds/c1-%05d"),
			read("kv get", "", false, "kv/data/c1-%05d"),
			read("kv metadata get", "", false, "kv/metadata/c1-%05d"),
			read("floor plain read", "kv get", false, "floor/plain/k%d"),
			read("floor plain read, keys/<name>-sized answer", "kv get|floor plain", false, "floor/plain-wide/k%d"),
			read("floor plain read + 1 storage get", "kv get|floor plain", false, "floor/stored/k%d"),
			read("floor leased read", "kv get|floor plain", false, "floor/leased/k%d"),
			read("floor leased read + 1 storage get", "kv get|floor leased", false, "floor/leased-get/k%d"),
			read("floor leased read + MaxLeaseTTL", "kv get|floor leased", false, "floor/leased-ttl/k%d"),
			read("floor leased read + 2 storage gets + MaxLeaseTTL", "kv get|floor leased", false, "floor/leased-stored/k%d"),
		)
	}
	return nil
}

func (b *bench) seedKV(folder string, n int) error {
	r := measure("seed", 16, n, 0, func(i int) error {
		return b.write(fmt.Sprintf("kv/data/%s/k%05d", folder, i), map[string]any{"data": map[string]any{"v": i}})
	})
	if r.errors > 0 {
		return fmt.Errorf("seeding kv/%s: %w", folder, r.firstErr)
	}
	return nil
}
