package backend

import (
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// These are contract points Vault enforces from the declarations alone, so
// the declarations are what is tested.
func TestBackend_SpecialPaths(t *testing.T) {
	b := newBackend()
	special := b.PathsSpecial
	if !slices.Contains(special.Root, "rename/*") {
		t.Errorf("rename is not sudo-protected: %v", special.Root)
	}
	for _, p := range []string{"config", "keys/"} {
		if !slices.Contains(special.SealWrapStorage, p) {
			t.Errorf("%s is not seal-wrapped: %v", p, special.SealWrapStorage)
		}
	}
	if !slices.Equal(special.LocalStorage, []string{framework.WALPrefix}) {
		t.Errorf("local storage = %v, want only the WAL", special.LocalStorage)
	}
}

// Every operation that can change the platform runs on the active node of
// the primary cluster.
func TestBackend_MutationsForward(t *testing.T) {
	b := newBackend()
	for _, p := range b.Paths {
		for op, h := range p.Operations {
			if op == logical.ReadOperation || op == logical.ListOperation {
				continue
			}
			props := h.Properties()
			if !props.ForwardPerformanceStandby || !props.ForwardPerformanceSecondary {
				t.Errorf("%s %s does not forward to the active node", op, p.Pattern)
			}
		}
	}
}

// Every path documents itself, every operation has an id-forming verb and a
// summary, and every secret field is marked sensitive.
func TestBackend_HelpAndOpenAPIMetadata(t *testing.T) {
	b := newBackend()
	for _, p := range b.Paths {
		if p.HelpSynopsis == "" || p.HelpDescription == "" {
			t.Errorf("%s lacks help", p.Pattern)
		}
		if p.DisplayAttrs == nil || p.DisplayAttrs.OperationPrefix != operationPrefix {
			t.Errorf("%s lacks the operation prefix", p.Pattern)
		}
		for op, h := range p.Operations {
			props := h.Properties()
			if props.Summary == "" || props.DisplayAttrs == nil || props.DisplayAttrs.OperationVerb == "" {
				t.Errorf("%s %s lacks a summary or an operation verb", op, p.Pattern)
			}
			if len(props.Responses) == 0 {
				t.Errorf("%s %s declares no response", op, p.Pattern)
			}
		}
		for name, f := range p.Fields {
			if (name == "api_key" || name == "token") && (f.DisplayAttrs == nil || !f.DisplayAttrs.Sensitive) {
				t.Errorf("%s field %s is not marked sensitive", p.Pattern, name)
			}
		}
	}
}

// Bad names reach the key handler (a 400 quoting the rule), while the
// agents and reassign paths still route to their own handlers.
func TestBackend_Routing(t *testing.T) {
	b := newBackend()
	cases := map[string]string{
		"keys/a/b/c":       "keys/(?P<name>.*)",
		"keys/Upper Case":  "keys/(?P<name>.*)",
		"keys/ok/agents":   "agents",
		"keys/ok/reassign": "reassign",
		"keys/ok/sync":     "/sync",
		"keys/sync":        "keys/(?P<name>.*)",
		"platform-keys/":   "platform-keys/?",
		"platform-keys/x":  "platform-keys/(?P<uuid>",
		"rename/a/b":       "rename/",
		"creds/x":          "creds/",
	}
	for path, want := range cases {
		p := b.Route(path)
		if p == nil {
			t.Errorf("%s routes nowhere", path)
			continue
		}
		if !strings.Contains(p.Pattern, want) {
			t.Errorf("%s routes to %s, want a pattern with %s", path, p.Pattern, want)
		}
	}
}
