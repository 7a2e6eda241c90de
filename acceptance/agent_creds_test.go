//go:build acceptance

package acceptance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// agentCreds is what `vault read -format=json <mount>/agent-creds/<role>`
// prints.
type agentCreds struct {
	LeaseID       string `json:"lease_id"`
	LeaseDuration int    `json:"lease_duration"`
	Renewable     bool   `json:"renewable"`
	Data          struct {
		APIKey     string `json:"api_key"`
		APIKeyUUID string `json:"api_key_uuid"`
		AgentUUID  string `json:"agent_uuid"`
		AgentURL   string `json:"agent_url"`
	} `json:"data"`
}

// readAgentCreds reads one agent key through the CLI; its secret is
// recorded for the log scan.
func (f *fixture) readAgentCreds(t testing.TB, token, path string) agentCreds {
	t.Helper()
	out := f.v.vault(t, as(token).ok(), "read", "-format=json", path).Stdout
	var c agentCreds
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.LeaseID == "" || c.Data.APIKey == "" {
		t.Fatalf("decoding agent creds: %v", err)
	}
	mustNotLeak(c.Data.APIKey)
	return c
}

// agentKeyUUIDs are the uuids of the agent's API keys on the platform.
func (e *emu) agentKeyUUIDs(agentUUID string) map[string]bool {
	out := map[string]bool{}
	for _, k := range e.AgentAPIKeys() {
		if k.AgentUUID == agentUUID {
			out[k.UUID] = true
		}
	}
	return out
}

// waitAgentKeyGone polls the emulator's key listing until the key is gone.
func (e *emu) waitAgentKeyGone(t testing.TB, agentUUID, keyUUID string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for e.agentKeyUUIDs(agentUUID)[keyUUID] {
		if time.Now().After(deadline) {
			t.Fatalf("agent API key %s still on the platform after %s", keyUUID, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// callAgent calls the agent's endpoint as an application would: 200 for a
// live key, 401 otherwise.
func (e *emu) callAgent(t testing.TB, agentURL, secret string) int {
	t.Helper()
	url, ok := emulator.AgentEndpointURL(e.url, agentURL)
	if !ok {
		t.Fatalf("not an agent endpoint: %q", agentURL)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestAgentCreds_Lifecycle: issue, renew (capped at max_ttl), revoke,
// revoke -prefix, expiry and max_leases, through the CLI and a real Vault.
func TestAgentCreds_Lifecycle(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "agentkeys", e)
	agent := e.createAgent(t, uniqueName("support-bot"), "anthropic", "")
	role := uniqueName("team-a-bot")
	creds := mount + "/agent-creds/" + role
	f.v.vault(t, as(f.root).ok(), "write", mount+"/agent-roles/"+role, "agent_uuid="+agent, "ttl=10m", "max_ttl=20m", "max_leases=2")
	agentURL := str(f.v.readData(t, f.root, mount+"/agent-roles/"+role), "agent_url")

	c := f.readAgentCreds(t, f.root, creds)
	if c.Data.AgentUUID != agent || c.Data.AgentURL != agentURL || c.LeaseDuration != 600 || !c.Renewable {
		t.Fatalf("agent creds: agent %s url %s lease %d renewable %v", c.Data.AgentUUID, c.Data.AgentURL, c.LeaseDuration, c.Renewable)
	}
	if !e.agentKeyUUIDs(agent)[c.Data.APIKeyUUID] || e.callAgent(t, agentURL, c.Data.APIKey) != http.StatusOK {
		t.Fatal("the issued key is not live at the agent")
	}

	t.Run("renewal never outlives max_ttl", func(t *testing.T) {
		var renewed struct {
			LeaseDuration int `json:"lease_duration"`
		}
		out := f.v.vault(t, as(f.root).ok(), "lease", "renew", "-format=json", "-increment=1h", c.LeaseID).Stdout
		if err := json.Unmarshal([]byte(out), &renewed); err != nil || renewed.LeaseDuration > 1200 || renewed.LeaseDuration < 1100 {
			t.Fatalf("renewed lease: %d s (%v), want at most max_ttl 1200 s", renewed.LeaseDuration, err)
		}
	})

	t.Run("max_leases, and a revoke frees a slot", func(t *testing.T) {
		second := f.readAgentCreds(t, f.root, creds)
		assertCode(t, f.v.vault(t, as(f.root), "read", creds), 400, "max_leases")
		if n := len(e.agentKeyUUIDs(agent)); n != 2 {
			t.Fatalf("%d keys on the agent, want 2", n)
		}
		f.v.vault(t, as(f.root).ok(), "lease", "revoke", second.LeaseID)
		e.waitAgentKeyGone(t, agent, second.Data.APIKeyUUID, 30*time.Second)
		if e.callAgent(t, agentURL, second.Data.APIKey) != http.StatusUnauthorized {
			t.Fatal("a revoked key still works at the agent")
		}
		f.readAgentCreds(t, f.root, creds)
	})

	t.Run("status counts", func(t *testing.T) {
		st := f.v.readData(t, f.root, mount+"/status")
		if num(st, "agent_roles") != 1 || num(st, "agent_leased_keys") != 2 {
			t.Fatalf("status: agent_roles %v, agent_leased_keys %v", st["agent_roles"], st["agent_leased_keys"])
		}
	})

	t.Run("revoke -prefix deletes every key of the role", func(t *testing.T) {
		f.v.vault(t, as(f.root).ok(), "lease", "revoke", "-prefix", creds)
		deadline := time.Now().Add(30 * time.Second)
		for len(e.agentKeyUUIDs(agent)) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("keys left after revoke -prefix: %v", e.agentKeyUUIDs(agent))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if e.callAgent(t, agentURL, c.Data.APIKey) != http.StatusUnauthorized {
			t.Fatal("a key revoked by prefix still works at the agent")
		}
	})

	t.Run("a lost create answer leaves no key", func(t *testing.T) {
		lost := uniqueName("team-a-lost")
		f.v.vault(t, as(f.root).ok(), "write", mount+"/agent-roles/"+lost, "agent_uuid="+agent)
		before := len(e.agentKeyUUIDs(agent))
		e.InjectFault(emulator.Fault{Method: "POST", Path: "/v2/gen-ai/agents/{agent_uuid}/api_keys", Mode: "drop"})
		assert5xx(t, f.v.vault(t, as(f.root), "read", mount+"/agent-creds/"+lost), "deleted again")
		if after := len(e.agentKeyUUIDs(agent)); after != before {
			t.Fatalf("%d keys on the agent after a lost create, want %d", after, before)
		}
	})

	t.Run("expiry deletes the key", func(t *testing.T) {
		short := uniqueName("team-a-short")
		f.v.vault(t, as(f.root).ok(), "write", mount+"/agent-roles/"+short, "agent_uuid="+agent, "ttl=2s", "max_ttl=2s")
		s := f.readAgentCreds(t, f.root, mount+"/agent-creds/"+short)
		if s.LeaseDuration > 2 {
			t.Fatalf("lease %d s, want 2 s", s.LeaseDuration)
		}
		e.waitAgentKeyGone(t, agent, s.Data.APIKeyUUID, 60*time.Second)
		if e.callAgent(t, agentURL, s.Data.APIKey) != http.StatusUnauthorized {
			t.Fatal("an expired key still works at the agent")
		}
	})
}

// TestAgentCreds_VaultAgentReadsAgainAtMaxTTL: a real `vault agent` renders
// agent-creds/<role>, renews the lease while it can, and once renewal can no
// longer extend it (max_ttl) reads again: the file then holds a new key, live
// at the agent, and the old key is deleted on the platform when its lease
// ends. This is the loop docs/agent-keys.md promises Vault Agent users.
func TestAgentCreds_VaultAgentReadsAgainAtMaxTTL(t *testing.T) {
	f := sharedFixture(t)
	e := newEmulator(t)
	mount := f.newMount(t, "agentkeys", e)
	agent := e.createAgent(t, uniqueName("support-bot"), "anthropic", "")
	role := uniqueName("agent-bot")
	// ttl 4s and max_ttl 12s: at least one renewal before the agent must
	// read again, and the whole test within about 30 s.
	const ttl, maxTTL = 4 * time.Second, 12 * time.Second
	f.v.vault(t, as(f.root).ok(), "write", mount+"/agent-roles/"+role, "agent_uuid="+agent,
		fmt.Sprintf("ttl=%s", ttl), fmt.Sprintf("max_ttl=%s", maxTTL))
	agentURL := str(f.v.readData(t, f.root, mount+"/agent-roles/"+role), "agent_url")

	dir := t.TempDir()
	rendered := filepath.Join(dir, "agent-api-key.txt")
	// The uuid is rendered beside the secret only so that the test can find
	// the key on the platform, whose listing never shows a secret.
	startAgent(t, f.v, dir, fmt.Sprintf(`{{ with secret "%s/agent-creds/%s" }}{{ .Data.api_key }} {{ .Data.api_key_uuid }}{{ end }}`, mount, role), rendered)
	read := func() (secret, uuid string) {
		b, err := os.ReadFile(rendered)
		if err != nil {
			return "", ""
		}
		secret, uuid, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
		if secret != "" {
			mustNotLeak(secret)
		}
		return secret, uuid
	}

	var first, firstUUID string
	eventually(t, 30*time.Second, "the first render", func() bool { first, firstUUID = read(); return firstUUID != "" })
	if !e.agentKeyUUIDs(agent)[firstUUID] || e.callAgent(t, agentURL, first) != http.StatusOK {
		t.Fatal("the rendered key is not live at the agent")
	}

	var second, secondUUID string
	took := eventually(t, maxTTL+20*time.Second, "a new key rendered once the lease reaches max_ttl", func() bool {
		second, secondUUID = read()
		return secondUUID != "" && secondUUID != firstUUID
	})
	t.Logf("Vault Agent rendered a new key %s after the first (ttl %s, max_ttl %s)", took.Round(100*time.Millisecond), ttl, maxTTL)
	// Later than one ttl: the agent renewed the first lease rather than
	// reading again at its first expiry.
	if took < ttl+time.Second {
		t.Errorf("the agent read a new key after %s, before the first lease could have been renewed (ttl %s)", took, ttl)
	}
	if second == first || !e.agentKeyUUIDs(agent)[secondUUID] || e.callAgent(t, agentURL, second) != http.StatusOK {
		t.Fatal("the newly rendered key is not a new key live at the agent")
	}

	// The first lease ends at its max_ttl (Vault revokes it on expiry): its
	// key goes from the platform and the agent refuses it.
	rendered2 := time.Now()
	e.waitAgentKeyGone(t, agent, firstUUID, maxTTL+20*time.Second)
	t.Logf("the first key was gone from the platform %s after the new render", time.Since(rendered2).Round(100*time.Millisecond))
	if e.callAgent(t, agentURL, first) != http.StatusUnauthorized {
		t.Fatal("the first key still works at the agent after its lease ended")
	}
}
