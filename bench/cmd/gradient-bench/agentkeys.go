package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/platform"
)

// credsBeside is the creds/<name> read measured in the same turns as the
// agent key issue and revoke, the read they are compared with.
const credsBeside = "gradient creds/<name> read (beside agent keys)"

// benchAgentKeys measures agent-creds/<role> (one agent API key per lease:
// the issue is a platform create) and the revocation of such a lease
// (sys/leases/revoke, whose plugin call deletes the key), interleaved with a
// creds/<name> read. The agent keys live on a mount and an emulator of their
// own, so that the emulator's counters are theirs; issue and revoke are told
// apart by the method of the route (POST creates, DELETE deletes).
func (b *bench) benchAgentKeys() error {
	emu := emulator.New(emulator.Config{Tokens: []string{benchToken}, PerMinuteLimit: raisedPerMinute, PerHourLimit: raisedPerHour})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: emu}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	emuURL := "http://" + l.Addr().String()

	const mount, role = "agents", "bench"
	if err := b.c.Sys().Mount(mount, &api.MountInput{Type: gradientPlugin}); err != nil {
		return err
	}
	// The scale step that follows measures its mount alone.
	defer func() { _ = b.c.Sys().Unmount(mount) }()
	if _, err := b.c.Logical().Write(mount+"/config", map[string]any{
		"token": benchToken, "api_url": emuURL, "anthropic_url": emuURL + "/anthropic", "openai_url": emuURL + "/openai",
		"rate_limit_per_minute": raisedPerMinute, "rate_limit_per_hour": raisedPerHour,
	}); err != nil {
		return err
	}
	agent, err := createAgent(emuURL)
	if err != nil {
		return err
	}
	// max_leases at its largest: the pool of leases to revoke and those the
	// timed issues make are alive together.
	if err := b.write(mount+"/agent-roles/"+role, map[string]any{"agent_uuid": agent, "ttl": "1h", "max_leases": 10000}); err != nil {
		return err
	}
	creds := mount + "/agent-creds/" + role
	issue := func() (string, error) {
		s, err := b.c.Logical().ReadWithContext(context.Background(), creds)
		if err != nil {
			return "", err
		}
		if s == nil || s.LeaseID == "" || s.Data["api_key"] == "" {
			return "", fmt.Errorf("%s: no lease and key", creds)
		}
		return s.LeaseID, nil
	}
	revoke := func(leaseID string) error {
		return b.write("sys/leases/revoke", map[string]any{"lease_id": leaseID, "sync": true})
	}

	// Fewer than the reads: each issue and revoke is a platform call and
	// a few storage writes, and the pool of leases is issued first.
	n := min(b.sz.ops, 1000)
	pool := n + warm(n)
	for _, conc := range concurrencies {
		// The leases the timed revocations end, issued untimed.
		leases := make([]string, pool)
		if r := measure("agent key pool", 8, pool, 0, func(i int) (err error) { leases[i], err = issue(); return err }); r.errors > 0 {
			return fmt.Errorf("issuing the pool of agent keys to revoke: %w", r.firstErr)
		}
		b.interleaved(conc, n,
			benchOp{name: credsBeside, counter: b.emu, warmup: true, op: func(i int) error {
				return b.read(fmt.Sprintf("gradient/creds/c1-%05d", i%b.sz.creates))
			}},
			benchOp{name: "gradient agent-creds/<role> issue (create an agent API key)", group: "creds read", counter: emu, routes: "POST ",
				op: func(int) error { _, err := issue(); return err }},
			benchOp{name: "gradient agent key revoke (sys/leases/revoke, sync)", group: "creds read", counter: emu, routes: "DELETE ",
				op: func(i int) error { return revoke(leases[i]) }},
		)
		// What the timed issues made goes before the next round.
		if err := b.write("sys/leases/revoke-prefix/"+creds, map[string]any{"sync": true}); err != nil {
			return fmt.Errorf("revoking the bench's agent keys: %w", err)
		}
		if left := len(emu.AgentAPIKeys()); left != 0 {
			return fmt.Errorf("%d agent API keys left on the platform after revoking every lease", left)
		}
	}
	b.notes = append(b.notes, agentKeyBudgetNote())
	return nil
}

// agentKeyBudgetNote is what the mount's rate budget allows at the defaults:
// each lease costs two platform requests, its create and its delete.
func agentKeyBudgetNote() string {
	const perLease = 2
	// Whole requests: the budget never spends a fraction of one.
	share := platform.BudgetShare
	perMinute := int(platform.DefaultRateLimitPerMinute * share)
	perHour := int(platform.DefaultRateLimitPerHour * share)
	return fmt.Sprintf("### Agent API keys: what the budget allows at the defaults\n\n"+
		"A lease costs %d platform requests (the create at the issue, the delete at the revocation or expiry; the table's platform/op). "+
		"The mount keeps to %.0f%% of rate_limit_per_minute %d and rate_limit_per_hour %d: %d requests a minute, so about %d leases issued and revoked a minute, "+
		"and %d an hour, so %d leases an hour (%d a minute sustained). The minute's pace holds for a burst of about half the hour's budget; "+
		"past it the pace falls to the hour's (see docs/configuration.md).\n",
		perLease, platform.BudgetShare*100, platform.DefaultRateLimitPerMinute, platform.DefaultRateLimitPerHour,
		perMinute, perMinute/perLease, perHour, perHour/perLease, perHour/perLease/60)
}

// createAgent makes an agent on the emulator, as an operator would, and
// returns its uuid.
func createAgent(emuURL string) (string, error) {
	body, _ := json.Marshal(map[string]string{"name": "bench-agent", "instruction": "Answer.", "model_uuid": "model-bench", "region": "tor1", "project_id": "project-bench"})
	req, err := http.NewRequest(http.MethodPost, emuURL+"/v2/gen-ai/agents", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+benchToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Agent struct {
			UUID string `json:"uuid"`
		} `json:"agent"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.Agent.UUID == "" {
		return "", fmt.Errorf("creating the bench's agent: HTTP %d (%v)", resp.StatusCode, err)
	}
	return out.Agent.UUID, nil
}

// countsOf keeps the counts of the routes whose key starts with prefix
// (a method and a space); all of them when prefix is empty.
func countsOf(counts map[string]int, prefix string) map[string]int {
	if prefix == "" {
		return counts
	}
	out := map[string]int{}
	for k, v := range counts {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}
