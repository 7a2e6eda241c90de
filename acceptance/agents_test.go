//go:build acceptance

package acceptance

import (
	"slices"
	"strings"
	"testing"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

type agentRef struct{ UUID, Name string }

// agentsOf decodes a list of {uuid, name} objects from a response field.
func agentsOf(t testing.TB, d map[string]any, field string) []agentRef {
	t.Helper()
	raw, ok := d[field].([]any)
	if !ok && d[field] != nil {
		t.Fatalf("%s is not a list: %#v", field, d[field])
	}
	var out []agentRef
	for _, x := range raw {
		m, ok := x.(map[string]any)
		if !ok {
			t.Fatalf("%s holds a %T, want objects with uuid and name: %#v", field, x, d[field])
		}
		out = append(out, agentRef{UUID: str(m, "uuid"), Name: str(m, "name")})
	}
	return sortedRefs(out...)
}

func sortedRefs(refs ...agentRef) []agentRef {
	out := slices.Clone(refs)
	slices.SortFunc(out, func(a, b agentRef) int { return strings.Compare(a.UUID, b.UUID) })
	return out
}

// TestDeleteRefusedWhileAgentsUseKey: delete is refused while agents use the
// key, naming them and how to move them; force=true deletes anyway.
func TestDeleteRefusedWhileAgentsUseKey(t *testing.T) {
	f := sharedFixture(t)
	for _, provider := range []string{"anthropic", "openai"} {
		t.Run(provider, func(t *testing.T) {
			name := uniqueName("in-use-" + provider)
			path := f.mount + "/keys/" + name
			d := f.writeKey(t, f.mount, name, provider, newKey(provider))
			uuid := str(d, "uuid")
			a1 := agentRef{Name: uniqueName("agent-one")}
			a1.UUID = f.emu.createAgent(t, a1.Name, provider, uuid)
			a2 := agentRef{Name: uniqueName("agent-two")}
			a2.UUID = f.emu.createAgent(t, a2.Name, provider, uuid)

			got := agentsOf(t, f.v.readData(t, f.root, path+"/agents"), "agents")
			if want := sortedRefs(a1, a2); !slices.Equal(got, want) {
				t.Errorf("agents: %+v, want %+v", got, want)
			}

			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), "delete", path)
			assertCode(t, r, 400, a1.Name, a1.UUID, a2.Name, a2.UUID, "reassign", "force=true")
			f.assertUnchanged(t, before, f.mount, f.emu)
			if d2 := f.v.readData(t, f.root, path); str(d2, "uuid") != uuid {
				t.Errorf("key changed after a refused delete: %v", d2)
			}

			f.v.vault(t, as(f.root).ok(), "delete", path, "force=true")
			assertNotFound(t, f.v.vault(t, as(f.root), "read", path))
			if pk := f.emu.key(provider, uuid); pk != nil {
				t.Errorf("platform still has the key after a forced delete: %+v", pk)
			}
			if slices.Contains(f.v.list(t, f.root, f.mount+"/keys"), name) {
				t.Errorf("list still shows %s", name)
			}
		})
	}
}

// TestReassign: keys/<name>/reassign to=<other> moves every agent to the
// other key, touching nothing else; then the first key deletes without force.
func TestReassign(t *testing.T) {
	f := sharedFixture(t)
	for _, provider := range []string{"anthropic", "openai"} {
		t.Run(provider, func(t *testing.T) {
			from, to := uniqueName("from-"+provider), uniqueName("to-"+provider)
			fromUUID := str(f.writeKey(t, f.mount, from, provider, newKey(provider)), "uuid")
			toUUID := str(f.writeKey(t, f.mount, to, provider, newKey(provider)), "uuid")
			var moved []agentRef
			for _, n := range []string{"alpha", "beta", "gamma"} {
				a := agentRef{Name: uniqueName("agent-" + n)}
				a.UUID = f.emu.createAgent(t, a.Name, provider, fromUUID)
				moved = append(moved, a)
			}
			// An agent on the target key stays where it is.
			stay := agentRef{Name: uniqueName("agent-stays")}
			stay.UUID = f.emu.createAgent(t, stay.Name, provider, toUUID)
			beforeAgents := map[string]emulator.AgentState{}
			for _, a := range f.emu.State().Agents {
				beforeAgents[a.UUID] = a
			}

			d := f.v.writeData(t, f.root, f.mount+"/keys/"+from+"/reassign", "to="+to)
			if got, want := agentsOf(t, d, "moved"), sortedRefs(moved...); !slices.Equal(got, want) {
				t.Errorf("moved: %+v, want %+v", got, want)
			}
			for _, a := range moved {
				after := f.emu.agent(a.UUID)
				want := beforeAgents[a.UUID]
				if provider == "openai" {
					want.OpenAIKeyUUID = toUUID
				} else {
					want.AnthropicKeyUUID = toUUID
				}
				if after == nil || *after != want {
					t.Errorf("agent %s after reassign:\n got  %+v\n want %+v", a.Name, after, want)
				}
			}
			if after := f.emu.agent(stay.UUID); after == nil || *after != beforeAgents[stay.UUID] {
				t.Errorf("the agent already on %s changed: %+v", to, after)
			}
			if got := agentsOf(t, f.v.readData(t, f.root, f.mount+"/keys/"+from+"/agents"), "agents"); len(got) != 0 {
				t.Errorf("%s still has agents: %+v", from, got)
			}
			if got, want := agentsOf(t, f.v.readData(t, f.root, f.mount+"/keys/"+to+"/agents"), "agents"), sortedRefs(append(moved, stay)...); !slices.Equal(got, want) {
				t.Errorf("agents of %s: %+v, want %+v", to, got, want)
			}

			// Nothing left to move: reassign again moves nothing.
			if d := f.v.writeData(t, f.root, f.mount+"/keys/"+from+"/reassign", "to="+to); len(agentsOf(t, d, "moved")) != 0 {
				t.Errorf("second reassign moved agents: %v", d)
			}

			// No agents left: delete without force.
			f.v.vault(t, as(f.root).ok(), "delete", f.mount+"/keys/"+from)
			if pk := f.emu.key(provider, fromUUID); pk != nil {
				t.Errorf("platform still has %s", from)
			}
			if pk := f.emu.key(provider, toUUID); pk == nil {
				t.Errorf("platform lost %s", to)
			}
		})
	}

	t.Run("refused targets", func(t *testing.T) {
		from := uniqueName("from-refused")
		fromUUID := str(f.writeKey(t, f.mount, from, "anthropic", newAnthropicKey()), "uuid")
		f.emu.createAgent(t, uniqueName("agent-refused"), "anthropic", fromUUID)
		openai := uniqueName("other-provider")
		f.writeKey(t, f.mount, openai, "openai", newOpenAIKey())
		unmanaged := uniqueName("unmanaged")
		f.emu.createPlatformKey(t, "anthropic", unmanaged, newAnthropicKey())

		for label, args := range map[string][]string{
			"other provider":         {"to=" + openai},
			"not managed by vault":   {"to=" + unmanaged},
			"missing target":         {"to=" + uniqueName("nope")},
			"invalid target name":    {"to=Not_A_Name"},
			"target name with slash": {"to=" + openai + "/x"},
			"no target":              {},
			"the key itself":         {"to=" + from},
		} {
			t.Run(label, func(t *testing.T) {
				before := f.snapshot(t, f.mount, f.emu)
				// -force lets the CLI send a request without data.
				r := f.v.vault(t, as(f.root), append([]string{"write", "-force", f.mount + "/keys/" + from + "/reassign"}, args...)...)
				assertCode(t, r, 400)
				f.assertUnchanged(t, before, f.mount, f.emu)
			})
		}

		// A source key Vault does not have: 400 or 404 both tell the caller.
		t.Run("missing source key", func(t *testing.T) {
			before := f.snapshot(t, f.mount, f.emu)
			r := f.v.vault(t, as(f.root), "write", f.mount+"/keys/"+uniqueName("no-such-key")+"/reassign", "to="+from)
			if r.Code == 0 || !(strings.Contains(r.Stderr, "Code: 400") || strings.Contains(r.Stderr, "Code: 404")) {
				t.Errorf("expected 400 or 404:\n%s", r)
			}
			f.assertUnchanged(t, before, f.mount, f.emu)
		})
	})
}
