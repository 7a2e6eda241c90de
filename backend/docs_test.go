package backend

import (
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// The docs state numbers that the code keeps in constants. A test that uses
// the constant passes whatever its value, so these tests tie each number the
// docs promise to the constant behind it: changing one without the other
// fails here, naming the page and the words to update.

// readDoc is a page of docs/ with its line breaks and runs of spaces made
// single spaces, so that a phrase matches across the page's wrapping.
func readDoc(t *testing.T, page string) string {
	t.Helper()
	b, err := os.ReadFile("../docs/" + page)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func TestDocs_NumbersMatchTheCode(t *testing.T) {
	hours := func(d time.Duration) string { return strconv.Itoa(int(d.Hours())) }
	minutes := func(d time.Duration) string { return strconv.Itoa(int(d.Minutes())) }
	seconds := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) }
	cases := []struct {
		page, phrase string
	}{
		// rotation.md
		{"rotation.md", "at least `" + minutes(defaultMinRotationPeriod) + "m`"},
		{"rotation.md", "(" + seconds(firstRetryDelay) + " s, doubling, at most " + hours(maxRetryDelay) + " h), at most " + strconv.Itoa(maxAttemptsPerPeriod) + " per period"},
		{"rotation.md", "default `" + hours(defaultGracePeriod) + "h`, at most `" + hours(maxGracePeriod) + "h`"},
		{"rotation.md", "at most " + strconv.Itoa(maxPendingRetirements) + " replaced keys waiting"},
		{"rotation.md", "retires at most " + strconv.Itoa(maxRetirementsPerTick) + " keys per tick"},
		{"rotation.md", "at most " + strconv.Itoa(maxRetirementsPerTick) + " keys per tick; ticks with nothing due"},
		{"rotation.md", "a ticker (every " + seconds(defaultTickInterval) + " s)"},
		// development.md: the test build's defaults are the release's values
		{"development.md", "(the scheduler's tick, a Go duration; default " + seconds(defaultTickInterval) + "s)"},
		{"development.md", "(the smallest `rotation_period` accepted; default " + minutes(defaultMinRotationPeriod) + "m)"},
		{"development.md", "the plugin; default " + minutes(walRollbackMinAge) + "m)"},
		// security.md
		{"security.md", "(entries older than " + minutes(walRollbackMinAge) + " minutes)"},
		{"security.md", "for at most " + hours(defaultWALMaxAge) + " hours"},
		// consuming-keys.md
		{"consuming-keys.md", "`creds_ttl` (default " + hours(defaultCredsTTL) + " h)"},
		{"consuming-keys.md", "already due gets " + minutes(dueLeaseTTL) + "-minute leases"},
		// keys.md
		{"keys.md", "**Names**: 1 to " + strconv.Itoa(maxNameLength) + " characters"},
		{"keys.md", "shortened to fit " + strconv.Itoa(maxNameLength) + " characters"},
		{"keys.md", "at most " + thousands(maxKeyLength) + " characters"},
		// configuration.md
		{"configuration.md", "(up to " + strconv.Itoa(platform.MaxAttempts) + " attempts"},
		{"configuration.md", "about 10 MiB at the default " + thousands(defaultKeyCacheSize) + ", whether the mount has " + thousands(defaultKeyCacheSize) + " keys or " + thousands(maxKeyCacheSize)},
		{"configuration.md", "the largest size, " + thousands(maxKeyCacheSize) + " ("},
		{"configuration.md", "at most " + strconv.Itoa(keyCacheMaxBytes>>20) + " MiB, whichever comes first"},
		{"configuration.md", "twice its stored size plus " + strconv.Itoa(entryOverhead) + " bytes"},
		{"configuration.md", "after more than " + thousands(maxDoubtfulNames) + " such keys"},
		{"configuration.md", "(a long description and " + strconv.Itoa(maxPendingRetirements) + " waiting retirements)"},
		{"configuration.md", "at most at " + strconv.Itoa(100-platform.DefaultSchedulerHeadroomPercent) + "% of the budget"},
		// agent-keys.md
		{"agent-keys.md", "| `ttl` | `" + hours(defaultAgentRoleTTL) + "h` |"},
		{"agent-keys.md", "| `max_ttl` | `" + hours(defaultAgentRoleMaxTTL) + "h` |"},
		{"agent-keys.md", "| `max_leases` | `" + strconv.Itoa(defaultAgentRoleMaxLeases) + "` |"},
		{"agent-keys.md", "(between 1 and " + thousands(maxAgentRoleMaxLeases) + ")"},
		{"agent-keys.md", "per agent (per " + strconv.Itoa(platform.MaxPageSize) + " keys)"},
		{"agent-keys.md", "200 for the defaults (`max_leases=" + strconv.Itoa(defaultAgentRoleMaxLeases) + "`, `ttl=" + hours(defaultAgentRoleTTL) + "h`)"},
		// (the page says it in words: any other value than an hour fails)
		{"agent-keys.md", "count until the rollback removes them (entries older than " + minutes(walRollbackMinAge) + " minutes"},
		{"agent-keys.md", "rather than waiting for the periodic rollback (entries older than " + minutes(walRollbackMinAge) + " minutes)"},
		{"agent-keys.md", "**" + hours(defaultAgentRoleTTL+agentLeaseGrace) + " hours** after the issue with the default `ttl` of " + hours(defaultAgentRoleTTL) + "h (`ttl` + " + hours(agentLeaseGrace) + " hour in general), then at most one `sync_interval` more (default " + minutes(defaultSyncInterval) + " minutes)"},
		{"agent-keys.md", "a record more than " + map[time.Duration]string{time.Hour: "an hour"}[agentLeaseGrace] + " past its `lease_ends` has no lease"},
		{"agent-keys.md", "more than " + map[time.Duration]string{time.Hour: "an hour"}[agentLeaseGrace] + " past their lease's end"},
		{"agent-keys.md", map[time.Duration]string{time.Hour: "an hour"}[agentLeaseGrace] + " past the issue plus `max_ttl`, " + hours(defaultAgentRoleMaxTTL+agentLeaseGrace) + " hours with the default `max_ttl` of " + hours(defaultAgentRoleMaxTTL) + "h"},
		// drift.md
		{"drift.md", "every `sync_interval` (default " + minutes(defaultSyncInterval) + " minutes)"},
		{"drift.md", strconv.Itoa(10000/platform.MaxPageSize) + " pages of " + strconv.Itoa(platform.MaxPageSize) + " per provider"},
	}
	for _, c := range cases {
		if !strings.Contains(readDoc(t, c.page), c.phrase) {
			t.Errorf("docs/%s does not say %q: the code and the page disagree; update the page (or the code)", c.page, c.phrase)
		}
	}
}

// thousands writes n as the docs do: 1,024.
func thousands(n int) string {
	s := strconv.Itoa(n)
	if len(s) <= 3 {
		return s
	}
	return s[:len(s)-3] + "," + s[len(s)-3:]
}

// TestDocs_ConfigDefaultsAreTheDefaults reads a mount configured with only a
// token (and the emulator's URL) and checks every default that
// docs/configuration.md's table states against what config reads back.
func TestDocs_ConfigDefaultsAreTheDefaults(t *testing.T) {
	emu := emulator.New(emulator.Config{Tokens: []string{testToken}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := newUnconfiguredEnv(t, emu, srv)
	if _, err := e.request(logical.UpdateOperation, "config", map[string]any{"token": testToken, "api_url": srv.URL}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.request(logical.ReadOperation, "config", nil)
	if err != nil || resp == nil {
		t.Fatalf("config read: %v %v", resp, err)
	}

	row := regexp.MustCompile("^\\| `([a-z_]+)` \\| ([^|]+) \\|")
	b, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(b), "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		field, doc := m[1], strings.Trim(strings.TrimSpace(m[2]), "`")
		if field == "token" || field == "api_url" {
			continue // required; and the test's platform is the emulator
		}
		got, ok := resp.Data[field]
		if !ok {
			t.Errorf("docs/configuration.md documents %q, which config does not return", field)
			continue
		}
		var want any = doc
		if d, err := time.ParseDuration(doc); err == nil {
			want = int64(d.Seconds())
		} else if n, err := strconv.Atoi(doc); err == nil {
			want = n
		} else if bl, err := strconv.ParseBool(doc); err == nil {
			want = bl
		}
		if got != want {
			t.Errorf("docs/configuration.md says %s defaults to %s; config reads %v", field, doc, got)
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("checked %d defaults of docs/configuration.md's table; its format changed?", checked)
	}
}
