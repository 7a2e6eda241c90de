package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// benchScale fills a mount with sz.large keys that all have rotation
// settings, then measures the large list, a create with that many keys
// stored, the plugin's start (first answer, queue rebuild), an idle tick,
// its memory, and sz.due keys coming due at once under a scaled-up budget.
func (b *bench) benchScale() error {
	// Only the scale mount stays on the plugin, so its start is measured alone.
	if err := b.c.Sys().Unmount("gradient"); err != nil {
		return err
	}
	if err := b.c.Sys().Mount("scale", &api.MountInput{Type: gradientPlugin}); err != nil {
		return err
	}
	if err := b.configure("scale", benchToken, raisedPerMinute, raisedPerHour); err != nil {
		return err
	}
	n := b.sz.large
	progress("seeding %d keys with rotation_period=24h (rate limits raised to %d/min, %d/h)", n, raisedPerMinute, raisedPerHour)
	seedStart := time.Now()
	r := measure("seed", 16, n, 0, func(i int) error {
		name := fmt.Sprintf("s-%05d", i)
		return b.write("scale/keys/"+name, map[string]any{"provider": "anthropic", "api_key": apiKey(name), "rotation_period": "24h"})
	})
	if r.errors > 0 {
		return fmt.Errorf("seeding: %d errors, first: %w", r.errors, r.firstErr)
	}
	b.notes = append(b.notes, fmt.Sprintf("Seeding the scale mount: %d creates with rotation_period=24h at concurrency 16 in %s (%.0f/s), with rate_limit_per_minute=%d and rate_limit_per_hour=%d on the mount and the emulator.\n",
		n, time.Since(seedStart).Round(time.Millisecond), float64(n)/time.Since(seedStart).Seconds(), raisedPerMinute, raisedPerHour))

	for _, conc := range concurrencies {
		b.interleaved(conc, b.sz.listOps,
			benchOp{name: fmt.Sprintf("gradient keys/ list (%d)", n), group: fmt.Sprintf("kv list (%d)", n), counter: b.emu, warmup: true,
				op: func(int) error { return b.list("scale/keys", n) }},
			benchOp{name: fmt.Sprintf("kv list (%d)", n), warmup: true,
				op: func(int) error { return b.list(fmt.Sprintf("kv/metadata/l%d", n), n) }},
		)
	}
	extra := max(50, b.sz.creates/10)
	b.interleaved(1, extra,
		benchOp{name: fmt.Sprintf("gradient keys/<name> create, %d stored", n), group: "kv put", counter: b.emu,
			op: func(i int) error { return b.keyWrite("scale", fmt.Sprintf("x-%05d", i)) }},
	)
	total := n + extra

	if err := b.startup(total); err != nil {
		return err
	}
	b.idle(total)
	return b.dueAtOnce()
}

// startup reloads the plugin and times its first answer and the queue
// rebuild, reading keys all along to see whether the mount waits.
func (b *bench) startup(stored int) error {
	// A reload alone may keep the multiplexed plugin process: stop it
	// first, so that the reload launches a new one.
	oldPID := b.v.pluginPID(b.plugin)
	if oldPID != 0 {
		_ = syscall.Kill(oldPID, syscall.SIGKILL)
		for i := 0; i < 500 && processExists(oldPID); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	off := fileSize(b.v.logPath)
	t0 := time.Now()
	if _, err := b.c.Sys().ReloadPluginWithContext(context.Background(), &api.ReloadPluginInput{Plugin: gradientPlugin}); err != nil {
		return fmt.Errorf("reloading the plugin: %w", err)
	}
	reloaded := time.Now()
	var firstOK time.Time
	for time.Since(reloaded) < 30*time.Second {
		if err := b.read("scale/keys/s-00001"); err == nil {
			firstOK = time.Now()
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if firstOK.IsZero() {
		return fmt.Errorf("no answer within 30 s of the reload")
	}
	// Reads while the queue rebuilds.
	var lats []time.Duration
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		t := time.Now()
		if err := b.read(fmt.Sprintf("scale/keys/s-%05d", i%stored%b.sz.large)); err != nil {
			return err
		}
		lats = append(lats, time.Since(t))
	}
	maxLat := time.Duration(0)
	for _, l := range lats {
		maxLat = max(maxLat, l)
	}
	p50 := percentile(lats, 0.5)
	pid := b.v.pluginPID(b.plugin)
	if pid == 0 || pid == oldPID {
		return fmt.Errorf("no new plugin process after the reload (old %d, now %d)", oldPID, pid)
	}
	st, err := readProcStat(pid)
	if err != nil {
		return err
	}
	var built time.Time
	for wait := time.Now().Add(30 * time.Second); time.Now().Before(wait); time.Sleep(100 * time.Millisecond) {
		if t, ok := logTime(b.v.logPath, off, "rotation queue built from storage"); ok {
			built = t
			break
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "### Start with %d keys stored (plugin process killed, then `vault plugin reload`)\n\n", stored)
	fmt.Fprintf(&sb, "| what | time |\n|---|---|\n")
	fmt.Fprintf(&sb, "| reload call returned (Vault remounts, plugin launched) | %s after the call |\n", reloaded.Sub(t0).Round(time.Millisecond))
	fmt.Fprintf(&sb, "| plugin process started (/proc, 10 ms resolution) | %s after the call |\n", st.started.Sub(t0).Round(10*time.Millisecond))
	fmt.Fprintf(&sb, "| **first request answered** (keys/<name> read) | **%s after launch**, %s after the call |\n",
		firstOK.Sub(st.started).Round(time.Millisecond), firstOK.Sub(t0).Round(time.Millisecond))
	if built.IsZero() {
		fmt.Fprintf(&sb, "| rotation queue built | not seen in Vault's log within 30 s |\n")
	} else {
		fmt.Fprintf(&sb, "| **rotation queue rebuilt** (Vault log, ms resolution) | **%s after launch** |\n", built.Sub(st.started).Round(time.Millisecond))
	}
	fmt.Fprintf(&sb, "| keys/<name> reads during the first 3 s after the first answer | %d reads, p50 %s ms, max %s ms |\n", len(lats), ms(p50), ms(maxLat))
	b.notes = append(b.notes, sb.String())
	progress("start: first answer %s after launch, queue built %s after launch", firstOK.Sub(st.started).Round(time.Millisecond), built.Sub(st.started).Round(time.Millisecond))
	return nil
}

// idle measures the plugin's CPU over idle ticks (nothing due) and its memory.
func (b *bench) idle(stored int) {
	pid := b.v.pluginPID(b.plugin)
	before, _ := readProcStat(pid)
	t := time.Now()
	time.Sleep(b.sz.idleWatch)
	after, _ := readProcStat(pid)
	ticks := time.Since(t).Seconds() // one tick a second
	rss, peak := rssMiB(pid)
	perTick := (after.cpu - before.cpu) / time.Duration(ticks)
	b.notes = append(b.notes, fmt.Sprintf("### Idle, %d keys queued, nothing due (tick 1 s)\n\n"+
		"Plugin CPU over %s idle: %s in total, **%s per tick** at most (the process's whole CPU time, 10 ms resolution: an upper bound on the tick, which also carries Go's and gRPC's background work). "+
		"Plugin memory: **RSS %.1f MiB**, peak %.1f MiB (after seeding, the reload and the reads above).\n",
		stored, b.sz.idleWatch, after.cpu-before.cpu, perTick, rss, peak))
	progress("idle: %s CPU per tick, RSS %.1f MiB (peak %.1f)", perTick, rss, peak)
}

// dueAtOnce makes sz.due keys due within a second or two of each other,
// with a staged key each, under a per-minute limit of sz.rotLimit on both
// the emulator and the mount, and watches the platform's PUTs.
func (b *bench) dueAtOnce() error {
	limit, perHour := b.sz.rotLimit, 1_000_000
	b.emu.SetRateLimits(limit, perHour)
	// A fresh token: the platform counts per token, and the seeding's
	// requests must not be in the window.
	if err := b.configure("scale", rotationToken, limit, perHour); err != nil {
		return err
	}
	statuses := b.emu.Statuses()
	before := b.emu.Counts()
	period := b.sz.duePeriod
	r := measure("stage", 8, b.sz.due, 0, func(i int) error {
		name := fmt.Sprintf("s-%05d", i)
		return b.write("scale/keys/"+name, map[string]any{"rotation_period": fmt.Sprintf("%ds", int(period.Seconds())), "next_api_key": apiKey(name + "next")})
	})
	if r.errors > 0 {
		return fmt.Errorf("staging: %d errors, first: %w", r.errors, r.firstErr)
	}
	staged := time.Now()
	progress("%d keys due %s from now, %.1f s apart at most", b.sz.due, period, r.wall.Seconds())

	budget := 0.95 * float64(limit) / 60
	expect := time.Duration(float64(b.sz.due)/budget*float64(time.Second)) + period
	var first, last time.Time
	var timeline []string
	var mu sync.Mutex
	puts := func() int {
		n := 0
		for k, v := range b.emu.Counts() {
			if strings.HasPrefix(k, "PUT /v2/gen-ai/") {
				n += v - before[k]
			}
		}
		return n
	}
	lastSecond, lastCount := staged, 0
	for deadline := staged.Add(2*expect + 30*time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c := puts()
		now := time.Now()
		if c > 0 && first.IsZero() {
			first = now
		}
		if now.Sub(lastSecond) >= time.Second {
			mu.Lock()
			timeline = append(timeline, fmt.Sprint(c-lastCount))
			mu.Unlock()
			lastSecond, lastCount = now, c
		}
		if c >= b.sz.due {
			last = now
			break
		}
	}
	if last.IsZero() {
		return fmt.Errorf("only %d of %d rotations within %s", puts(), b.sz.due, 2*expect+30*time.Second)
	}
	platform, provider, detail := callDelta(before, b.emu.Counts())
	tooMany := b.emu.Statuses()[429] - statuses[429]
	// The first PUT's time is known to 20 ms; rate over the due-1 spaces between PUTs.
	achieved := float64(b.sz.due-1) / last.Sub(first).Seconds()
	var sb strings.Builder
	fmt.Fprintf(&sb, "### %d keys due at once (of %d), rate_limit_per_minute=%d (emulator the same, fresh token)\n\n", b.sz.due, b.sz.large+max(50, b.sz.creates/10), limit)
	fmt.Fprintf(&sb, "The mount's budget is 95%% of the limit: %.2f requests/s. ", budget)
	fmt.Fprintf(&sb, "%d rotations took %s from the first platform PUT to the last: **%.2f/s, %.1f%% of the budget** (%.1f%% of the configured limit); **%d answers 429**.\n\n",
		b.sz.due, last.Sub(first).Round(time.Millisecond), achieved, 100*achieved/budget, 100*achieved/(float64(limit)/60), tooMany)
	fmt.Fprintf(&sb, "Calls (staging included: it verifies each next_api_key with the provider): %d platform, %d provider: %s.\n\n", platform, provider, formatDetail(detail))
	fmt.Fprintf(&sb, "Pacing, platform PUTs per second from staging on: %s\n", strings.Join(timeline, " "))
	b.notes = append(b.notes, sb.String())
	progress("due at once: %.2f/s = %.1f%% of budget, %d x 429", achieved, 100*achieved/budget, tooMany)
	return nil
}
