package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

func vaultVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	// "Vault v1.21.0 ('<commit>'), built <date>": the version is enough.
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[0] + " " + f[1]
	}
	return strings.TrimSpace(string(out))
}

// find is the result named name at conc, or nil.
func (b *bench) find(name string, conc int) *result {
	for i := range b.results {
		if b.results[i].name == name && b.results[i].concurrency == conc {
			return &b.results[i]
		}
	}
	return nil
}

// ratio is "1.23x (counterpart)" of r's p50 to the counterpart's.
func (b *bench) ratio(r result, counterpart string) string {
	names := map[string]string{
		"floor plain": "floor plain read", "floor leased": "floor leased read",
		"floor plain-wide": "floor plain read, keys/<name>-sized answer",
		"floor create":     "floor create (WAL, verify, platform create, store)",
		"creds read":       credsBeside,
	}
	full := counterpart
	if n, ok := names[counterpart]; ok {
		full = n
	}
	o := b.find(full, r.concurrency)
	if o == nil || o.p50 == 0 {
		return ""
	}
	return fmt.Sprintf("%.2fx %s", float64(r.p50)/float64(o.p50), counterpart)
}

func (b *bench) report(size, vaultBin string, took time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "## gradient-bench, size %s, %s\n\n", size, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&sb, "Machine: %d CPUs (nproc), %s, %s/%s, %s; %s. Vault dev server (in-memory storage, no audit device), "+
		"the plugins, the emulator (zero latency) and the client (github.com/hashicorp/vault/api, keep-alive) share the machine. Run took %s.\n\n",
		runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH, runtime.Version(), vaultVersion(vaultBin), took.Round(time.Second))
	fmt.Fprintf(&sb, "Load average (1, 5, 15 min) at the start: %s; at the end: %s. Operations compared with each other take turns request by request, so that other load on the machine falls on all of them alike; ops/s is concurrency / mean latency.\n\n", b.loadStart, loadAvg())
	fmt.Fprintf(&sb, "| operation | conc | ops | ops/s | p50 ms | p99 ms | p50 vs KV v2 | p50 vs floor | platform/op | provider/op | errors |\n")
	fmt.Fprintf(&sb, "|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|\n")
	for _, r := range b.results {
		var kv, floor []string
		for _, g := range strings.Split(r.group, "|") {
			if g == "" {
				continue
			}
			if s := b.ratio(r, g); s != "" {
				if strings.HasPrefix(g, "floor") {
					floor = append(floor, s)
				} else {
					kv = append(kv, s)
				}
			}
		}
		upstream := func(v float64) string {
			if !r.upstream {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&sb, "| %s | %d | %d | %.0f | %s | %s | %s | %s | %s | %s | %d |\n",
			r.name, r.concurrency, r.ops, r.opsPerSec(), ms(r.p50), ms(r.p99), strings.Join(kv, ", "), strings.Join(floor, ", "),
			upstream(r.platform), upstream(r.provider), r.errors)
	}
	sb.WriteString("\n")
	for _, n := range b.notes {
		sb.WriteString(n)
		sb.WriteString("\n")
	}
	return sb.String()
}
