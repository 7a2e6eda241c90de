//go:build acceptance

package acceptance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

// token creates a token holding policies, recorded as a secret.
func (f *fixture) token(t testing.TB, policies ...string) string {
	t.Helper()
	args := []string{"token", "create", "-ttl=1h", "-format=json"}
	for _, p := range policies {
		args = append(args, "-policy="+p)
	}
	out := f.v.vault(t, as(f.root).ok(), args...).Stdout
	var resp struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Auth.ClientToken == "" {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	return mustNotLeak(resp.Auth.ClientToken)
}

func (f *fixture) writePolicies(t testing.TB) {
	t.Helper()
	if f.mount != "gradient" {
		t.Fatalf("the example policies are written for gradient/, the shared mount is %s/", f.mount)
	}
	for _, p := range examplePolicies {
		f.v.vault(t, as(f.root).ok(), "policy", "write", p, filepath.Join(policyDir, p+".hcl"))
	}
}

// enableMinting gives the shared mount an OpenAI admin key, for this test
// only, and the emulator's OpenAI organization the projects (kept: the
// emulator is shared and never reset). Every key minted counts as a secret.
func (f *fixture) enableMinting(t testing.TB, projects ...string) {
	t.Helper()
	for _, id := range projects {
		if !slices.ContainsFunc(f.emu.ProviderState().OpenAIProjects, func(p emulator.OpenAIProjectState) bool { return p.ID == id }) {
			f.emu.AddOpenAIProject(id, id)
		}
	}
	admin := mustNotLeak("sk-admin-" + randomString(alnum, 40))
	f.emu.AddAdminKey(emulator.ProviderOpenAI, admin)
	f.v.vault(t, as(f.root).withStdin(admin).ok(), "write", f.mount+"/config", "openai_admin_key=-")
	t.Cleanup(func() {
		f.v.vault(t, as(f.root).ok(), "write", f.mount+"/config", "openai_admin_key=")
		for _, a := range f.emu.ProviderState().OpenAIServiceAccounts {
			mustNotLeak(a.APIKey)
		}
	})
}

// TestTeamPolicies: with the example policies, what each token may do
// succeeds; everything else is denied and changes nothing.
func TestTeamPolicies(t *testing.T) {
	f := sharedFixture(t)
	f.writePolicies(t)
	teamA, teamB := f.token(t, "team-a"), f.token(t, "team-b")
	consumer, admin := f.token(t, "consumer"), f.token(t, "gradient-admin")
	keys := f.mount + "/keys/"

	// What the teams may do.
	a1, a2 := uniqueName("team-a-main"), uniqueName("team-a-spare")
	b1 := uniqueName("team-b-main")
	a1Key, a2Key, b1Key := newAnthropicKey(), newAnthropicKey(), newAnthropicKey()
	f.v.vault(t, as(teamA).ok(), "write", keys+a1, "provider=anthropic", "api_key="+a1Key, "description=team a")
	f.v.vault(t, as(teamA).ok(), "write", keys+a2, "provider=anthropic", "api_key="+a2Key)
	f.v.vault(t, as(teamB).ok(), "write", keys+b1, "provider=anthropic", "api_key="+b1Key)
	a1UUID := str(f.v.readData(t, teamA, keys+a1), "uuid")
	b1UUID := str(f.v.readData(t, teamB, keys+b1), "uuid")
	a1Key = newAnthropicKey()
	f.v.vault(t, as(teamA).withStdin(a1Key).ok(), "write", keys+a1, "api_key=-")
	if c := f.v.readData(t, teamA, f.mount+"/creds/"+a1); str(c, "api_key") != a1Key || num(c, "version") != 2 {
		t.Errorf("team A creds after its update: version=%v", c["version"])
	}
	agent := f.emu.createAgent(t, uniqueName("team-a-bot"), "anthropic", a1UUID)
	f.v.readData(t, teamA, keys+a1+"/agents")
	moved := agentsOf(t, f.v.writeData(t, teamA, keys+a1+"/reassign", "to="+a2), "moved")
	if len(moved) != 1 || moved[0].UUID != agent {
		t.Errorf("team A reassign within the team moved %+v", moved)
	}
	a2UUID := str(f.v.readData(t, teamA, keys+a2), "uuid")
	if ag := f.emu.agent(agent); ag == nil || ag.AnthropicKeyUUID != a2UUID {
		t.Errorf("agent after team A's reassign: %+v", ag)
	}
	f.v.vault(t, as(teamA).ok(), "delete", keys+a1)

	// The consumer reads creds of team A's keys.
	if c := f.v.readData(t, consumer, f.mount+"/creds/"+a2); str(c, "api_key") != a2Key {
		t.Errorf("consumer creds do not return team A's key")
	}

	// Agent API keys: an operator writes the roles, the team reads its own
	// keys (docs/agent-keys.md).
	agentUUID := f.emu.createAgent(t, uniqueName("team-a-support"), "anthropic", "")
	aRole, bRole := uniqueName("team-a-bot"), uniqueName("team-b-bot")
	f.v.vault(t, as(admin).ok(), "write", f.mount+"/agent-roles/"+aRole, "agent_uuid="+agentUUID)
	f.v.vault(t, as(admin).ok(), "write", f.mount+"/agent-roles/"+bRole, "agent_uuid="+agentUUID)
	aCreds := f.readAgentCreds(t, teamA, f.mount+"/agent-creds/"+aRole)
	t.Cleanup(func() {
		f.v.vault(t, as(f.root).ok(), "lease", "revoke", "-prefix", f.mount+"/agent-creds/"+aRole)
		f.v.vault(t, as(admin).ok(), "delete", f.mount+"/agent-roles/"+aRole)
		f.v.vault(t, as(admin).ok(), "delete", f.mount+"/agent-roles/"+bRole)
	})
	if aCreds.Data.AgentUUID != agentUUID {
		t.Errorf("team A's agent creds: agent %s", aCreds.Data.AgentUUID)
	}

	t.Run("denied", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		other := newAnthropicKey()
		denied := map[string]struct {
			token string
			args  []string
		}{
			"A creates a team B key":             {teamA, []string{"write", keys + uniqueName("team-b-new"), "provider=anthropic", "api_key=" + other}},
			"A creates a key outside its prefix": {teamA, []string{"write", keys + uniqueName("shared"), "provider=anthropic", "api_key=" + other}},
			"A reads a team B key":               {teamA, []string{"read", keys + b1}},
			"A updates a team B key":             {teamA, []string{"write", keys + b1, "api_key=" + other}},
			"A deletes a team B key":             {teamA, []string{"delete", keys + b1, "force=true"}},
			"A lists team B agents":              {teamA, []string{"read", keys + b1 + "/agents"}},
			"A reassigns team B agents":          {teamA, []string{"write", keys + b1 + "/reassign", "to=" + a2}},
			"A reads team B creds":               {teamA, []string{"read", f.mount + "/creds/" + b1}},
			"A reads config":                     {teamA, []string{"read", f.mount + "/config"}},
			"A writes config":                    {teamA, []string{"write", f.mount + "/config", "verify_keys=false"}},
			"A deletes config":                   {teamA, []string{"delete", f.mount + "/config"}},
			"A lists keys":                       {teamA, []string{"list", keys}},
			"A renames its key without sudo":     {teamA, []string{"write", f.mount + "/rename/" + a2, "new_name=" + uniqueName("team-a-renamed")}},
			"A moves agents to a team B key":     {teamA, []string{"write", keys + a2 + "/reassign", "to=" + b1}},
			"B reads a team A key":               {teamB, []string{"read", keys + a2}},
			"B reads team A creds":               {teamB, []string{"read", f.mount + "/creds/" + a2}},
			"B moves agents to a team A key":     {teamB, []string{"write", keys + b1 + "/reassign", "to=" + a2}},
			"consumer reads key metadata":        {consumer, []string{"read", keys + a2}},
			"consumer lists keys":                {consumer, []string{"list", keys}},
			"consumer writes a key":              {consumer, []string{"write", keys + a2, "api_key=" + other}},
			"consumer deletes a key":             {consumer, []string{"delete", keys + a2}},
			"consumer reads agents":              {consumer, []string{"read", keys + a2 + "/agents"}},
			"consumer reassigns":                 {consumer, []string{"write", keys + a2 + "/reassign", "to=" + a2}},
			"consumer reads team B creds":        {consumer, []string{"read", f.mount + "/creds/" + b1}},
			"consumer reads config":              {consumer, []string{"read", f.mount + "/config"}},
			"A reads team B agent creds":         {teamA, []string{"read", f.mount + "/agent-creds/" + bRole}},
			"A reads agent creds team-b-x":       {teamA, []string{"read", f.mount + "/agent-creds/team-b-x"}},
			"A reads an unprefixed agent creds":  {teamA, []string{"read", f.mount + "/agent-creds/x"}},
			"A writes its own agent role":        {teamA, []string{"write", f.mount + "/agent-roles/" + aRole, "max_leases=10000"}},
			"A creates an agent role":            {teamA, []string{"write", f.mount + "/agent-roles/" + uniqueName("team-a-new"), "agent_uuid=" + agentUUID}},
			"A deletes an agent role":            {teamA, []string{"delete", f.mount + "/agent-roles/" + aRole}},
			"A lists agent roles":                {teamA, []string{"list", f.mount + "/agent-roles"}},
			"A tidies agent keys":                {teamA, []string{"write", "-f", f.mount + "/agent-creds-tidy"}},
			"B reads team A agent creds":         {teamB, []string{"read", f.mount + "/agent-creds/" + aRole}},
		}
		for label, c := range denied {
			t.Run(label, func(t *testing.T) {
				assertDenied(t, f.v.vault(t, as(c.token), c.args...))
			})
		}
		f.assertUnchanged(t, before, f.mount, f.emu)
	})

	// Vault matches the value "team-a-x,team-b-y" against the glob
	// "team-a-*" as a whole, so the ACL lets it through; the plugin's own
	// check of "to" (one valid key name) is what refuses it.
	t.Run("A smuggles a team B key into to", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(teamA), "write", keys+a2+"/reassign", "to="+a2+","+b1)
		if r.Code == 0 || !(strings.Contains(r.Stderr, "Code: 400") || strings.Contains(r.Stderr, "Code: 403")) {
			t.Errorf("expected a 400 or 403:\n%s", r)
		}
		f.assertUnchanged(t, before, f.mount, f.emu)
		if ag := f.emu.agent(agent); ag == nil || ag.AnthropicKeyUUID != a2UUID {
			t.Errorf("team A's agent moved: %+v", ag)
		}
	})

	t.Run("A cannot adopt team B's platform key", func(t *testing.T) {
		before := f.snapshot(t, f.mount, f.emu)
		r := f.v.vault(t, as(teamA), "write", keys+uniqueName("team-a-steal"), "provider=anthropic",
			"api_key="+newAnthropicKey(), "uuid="+b1UUID)
		if r.Code == 0 {
			t.Fatalf("team A adopted team B's key:\n%s", r)
		}
		if !strings.Contains(r.Stderr, "Code: 400") && !strings.Contains(r.Stderr, "Code: 403") {
			t.Errorf("expected a 400 or 403:\n%s", r)
		}
		f.assertUnchanged(t, before, f.mount, f.emu)
		if c := f.v.readData(t, teamB, f.mount+"/creds/"+b1); str(c, "api_key") != b1Key || str(c, "uuid") != b1UUID {
			t.Errorf("team B's key changed")
		}
		if pk := f.emu.key("anthropic", b1UUID); pk == nil || pk.Name != b1 || pk.Secret != b1Key {
			t.Errorf("team B's platform key changed: %+v", pk)
		}
	})

	// The shipped policies pin openai_project_id to the team's placeholder
	// project ids, which the emulator's OpenAI organization gets here.
	t.Run("A mints only in its own OpenAI project", func(t *testing.T) {
		f.enableMinting(t, "proj_team_a", "proj_team_b")
		gpt := uniqueName("team-a-gpt")
		f.v.vault(t, as(teamA).ok(), "write", keys+gpt, "provider=openai", "source=openai-service-account", "openai_project_id=proj_team_a")
		t.Cleanup(func() { f.v.vault(t, as(teamA).ok(), "delete", keys+gpt) })
		if d := f.v.readData(t, teamA, keys+gpt); str(d, "openai_project_id") != "proj_team_a" || str(d, "service_account_id") == "" {
			t.Fatalf("team A's minted key: %v", d)
		}

		before, accounts := f.snapshot(t, f.mount, f.emu), f.emu.ProviderState().OpenAIServiceAccounts
		assertDenied(t, f.v.vault(t, as(teamA), "write", keys+uniqueName("team-a-steal"), "provider=openai",
			"source=openai-service-account", "openai_project_id=proj_team_b"))
		assertDenied(t, f.v.vault(t, as(teamA), "write", keys+gpt, "openai_project_id=proj_team_b"))
		f.assertUnchanged(t, before, f.mount, f.emu)
		if after := f.emu.ProviderState().OpenAIServiceAccounts; !reflect.DeepEqual(after, accounts) {
			t.Errorf("service accounts changed:\nbefore %+v\nafter  %+v", accounts, after)
		}
		if d := f.v.readData(t, teamA, keys+gpt); str(d, "openai_project_id") != "proj_team_a" {
			t.Errorf("team A's key moved project: %v", d)
		}
	})

	// A key someone made in the control panel, which Vault does not
	// manage: the team policies deny uuid, operators adopt.
	t.Run("A cannot adopt a platform key Vault does not manage", func(t *testing.T) {
		panelName, panelSecret := uniqueName("panel-made"), newAnthropicKey()
		panelUUID := f.emu.createPlatformKey(t, "anthropic", panelName, panelSecret)
		before := f.snapshot(t, f.mount, f.emu)
		assertDenied(t, f.v.vault(t, as(teamA), "write", keys+uniqueName("team-a-adopt"), "provider=anthropic",
			"api_key="+newAnthropicKey(), "uuid="+panelUUID))
		f.assertUnchanged(t, before, f.mount, f.emu)
		if pk := f.emu.key("anthropic", panelUUID); pk == nil || pk.Name != panelName || pk.Secret != panelSecret {
			t.Errorf("the panel-made key changed: %+v", pk)
		}

		adopted, adoptedKey := uniqueName("team-a-adopted"), newAnthropicKey()
		f.v.vault(t, as(admin).ok(), "write", keys+adopted, "provider=anthropic", "api_key="+adoptedKey, "uuid="+panelUUID)
		if d := f.v.readData(t, teamA, keys+adopted); str(d, "uuid") != panelUUID {
			t.Errorf("the operator's adoption: %v", d)
		}
	})

	t.Run("an admin renames with sudo", func(t *testing.T) {
		renamed := uniqueName("team-a-renamed")
		f.v.vault(t, as(admin).ok(), "write", f.mount+"/rename/"+a2, "new_name="+renamed)
		if d := f.v.readData(t, teamA, keys+renamed); str(d, "uuid") != a2UUID {
			t.Errorf("team A reads the renamed key: %v", d)
		}
		assertNotFound(t, f.v.vault(t, as(teamA), "read", keys+a2))
		f.v.vault(t, as(admin).ok(), "read", f.mount+"/config")
		f.v.vault(t, as(admin).ok(), "list", keys)
	})

	// Why team-a.hcl restricts "to" on the glob rule itself: a separate,
	// more specific-looking "gradient/keys/+/reassign" rule never applies,
	// because Vault prefers the rule whose first wildcard comes later.
	t.Run("a separate +/reassign rule would not restrict to", func(t *testing.T) {
		naive := `path "gradient/keys/team-a-*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "gradient/keys/+/reassign" {
  capabilities = ["update"]
  allowed_parameters = { "to" = ["team-a-*"] }
}
`
		file := filepath.Join(t.TempDir(), "naive.hcl")
		if err := os.WriteFile(file, []byte(naive), 0o600); err != nil {
			t.Fatal(err)
		}
		f.v.vault(t, as(f.root).ok(), "policy", "write", "naive-team-a", file)
		naiveA := f.token(t, "naive-team-a")
		src := uniqueName("team-a-naive")
		f.writeKey(t, f.mount, src, "anthropic", newAnthropicKey())
		target := uniqueName("team-b-naive")
		f.writeKey(t, f.mount, target, "anthropic", newAnthropicKey())
		r := f.v.vault(t, as(naiveA), "write", keys+src+"/reassign", "to="+target)
		if r.Code != 0 {
			t.Errorf("expected the naive policy to let the request through (Vault's rule priority changed?):\n%s", r)
		}
		r = f.v.vault(t, as(teamA), "write", keys+src+"/reassign", "to="+target)
		assertDenied(t, r)
	})
}
