package main

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is one measured operation at one concurrency.
type result struct {
	name        string // e.g. "gradient keys/<name> read"
	group       string // what ratios compare: the KV counterpart's name, the floor's
	concurrency int
	ops         int
	wall        time.Duration
	p50, p99    time.Duration
	errors      int
	firstErr    error
	// upstream calls per operation, from the emulator's counters.
	platform, provider float64
	upstream           bool // whether upstream counts apply
	samples            []time.Duration
}

func (r result) opsPerSec() float64 { return float64(r.ops) / r.wall.Seconds() }

// measure runs op n times with concurrency workers (op gets 0..n-1) after
// warmup untimed calls, and reports the latency distribution.
func measure(name string, concurrency, n, warmup int, op func(i int) error) result {
	for i := 0; i < warmup; i++ {
		_ = op(n + i)
	}
	var next atomic.Int64
	lat := make([][]time.Duration, concurrency)
	errs := make([]int, concurrency)
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t := time.Now()
				err := op(i)
				lat[w] = append(lat[w], time.Since(t))
				if err != nil {
					errs[w]++
					errOnce.Do(func() { firstErr = err })
				}
			}
		}(w)
	}
	wg.Wait()
	r := result{name: name, concurrency: concurrency, ops: n, wall: time.Since(start), firstErr: firstErr}
	var all []time.Duration
	for w := range lat {
		all = append(all, lat[w]...)
		r.errors += errs[w]
	}
	r.samples = all
	r.p50, r.p99 = percentile(all, 0.50), percentile(all, 0.99)
	return r
}

// percentile is the nearest-rank percentile of d (sorted in place).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	rank := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(rank, len(d)-1))]
}

// callDelta is what the emulator counted between two snapshots, split into
// platform (/v2/...) and provider (/anthropic, /openai) requests.
func callDelta(before, after map[string]int) (platform, provider int, detail map[string]int) {
	detail = map[string]int{}
	for k, v := range after {
		d := v - before[k]
		if d == 0 {
			continue
		}
		detail[k] = d
		_, path, _ := strings.Cut(k, " ")
		if strings.HasPrefix(path, "/v2/") {
			platform += d
		} else {
			provider += d
		}
	}
	return platform, provider, detail
}

func formatDetail(detail map[string]int) string {
	keys := slices.Collect(maps.Keys(detail))
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, detail[k]))
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }
