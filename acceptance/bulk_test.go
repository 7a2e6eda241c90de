//go:build acceptance

package acceptance

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBulkImport imports keys through the vault CLI, from 8 clients at once,
// into a mount whose emulator enforces the platform's limits for real (the
// rest of the suite raises them): rate_limit_per_minute on both sides and
// 5,000 an hour. The mount's budget paces the platform requests, so not one
// is refused with 429, and the import takes about as long as the budget
// allows and no longer.
//
// By default it is the scaled-down run CI makes: 60 keys at 60 a minute (a
// minimum of one minute). `make bulk-import` runs the real one: 1,000 keys at
// 250 a minute, a minimum of four minutes. GRADIENT_BULK_KEYS,
// GRADIENT_BULK_RATE and GRADIENT_BULK_CLIENTS change it.
func TestBulkImport(t *testing.T) {
	keys := envInt(t, "GRADIENT_BULK_KEYS", 60)
	perMinute := envInt(t, "GRADIENT_BULK_RATE", 60)
	clients := envInt(t, "GRADIENT_BULK_CLIENTS", 8)
	const perHour = 5000

	f := sharedFixture(t)
	e := newEmulator(t)
	e.SetRateLimits(perMinute, perHour)
	mount := f.newMount(t, "bulk", e)
	f.v.vault(t, as(f.root).ok(), "write", mount+"/config",
		"rate_limit_per_minute="+strconv.Itoa(perMinute), "rate_limit_per_hour="+strconv.Itoa(perHour))
	before := platformRequests(e)

	var (
		next      atomic.Int64
		failed    atomic.Int64
		mu        sync.Mutex
		failures  []string
		providers = []string{"anthropic", "openai"}
		wg        sync.WaitGroup
	)
	prefix := uniqueName("bulk")
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= keys {
					return
				}
				provider := providers[i%2]
				r := f.v.vault(nil, as(f.root), "write", fmt.Sprintf("%s/keys/%s-%04d", mount, prefix, i),
					"provider="+provider, "api_key="+newKey(provider))
				if r.Code != 0 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, fmt.Sprintf("key %d: %s", i, tailFile2(r.Stderr, 3)))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)

	requests := platformRequests(e) - before
	statuses := e.Statuses()
	minimum := time.Duration(float64(keys) / float64(perMinute) * float64(time.Minute))
	requestMinimum := time.Duration(float64(requests) / float64(perMinute) * float64(time.Minute))
	report := fmt.Sprintf("bulk import: %d keys from %d CLI clients at rate_limit_per_minute=%d (emulator limits %d/min, %d/h): "+
		"%s elapsed; the budget's minimum for %d creates is %s (elapsed/minimum %.2f); %d platform requests (%.2f per key, %.1f/min on average; "+
		"their minimum %s); 429s seen: %d; failed creates: %d; platform answers by status: %v",
		keys, clients, perMinute, perMinute, perHour, took.Round(100*time.Millisecond), keys, minimum,
		float64(took)/float64(minimum), requests, float64(requests)/float64(keys), float64(requests)/took.Minutes(),
		requestMinimum.Round(100*time.Millisecond), statuses[http.StatusTooManyRequests], failed.Load(), statuses)
	t.Log(report)
	if path := os.Getenv("GRADIENT_BULK_REPORT"); path != "" {
		_ = os.WriteFile(path, []byte(report+"\n"), 0o600)
	}

	if n := statuses[http.StatusTooManyRequests]; n > 0 {
		t.Errorf("the platform answered 429 %d times: the budget let more through than the limit", n)
	}
	if len(failures) > 0 {
		t.Errorf("%d creates failed:\n  %s", len(failures), strings.Join(failures[:min(len(failures), 10)], "\n  "))
	}
	if got := len(f.v.list(t, f.root, mount+"/keys")); got != keys {
		t.Errorf("Vault lists %d keys, want %d", got, keys)
	}
	if got := len(e.keys("anthropic")) + len(e.keys("openai")); got != keys {
		t.Errorf("the platform has %d keys, want %d", got, keys)
	}
	// Paced at 95% of the limit, never faster than the limit allows; and
	// not much slower than the pace, or the budget wastes the limit.
	if took < requestMinimum*9/10 {
		t.Errorf("%d platform requests in %s: faster than %d a minute allows", requests, took, perMinute)
	}
	if slowest := requestMinimum*100/95 + 30*time.Second; took > slowest {
		t.Errorf("the import took %s; the budget's pace allows it in %s", took, slowest)
	}
}

// tailFile2 is the last n lines of s.
func tailFile2(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
