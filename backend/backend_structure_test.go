package backend

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
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
// summary (secret fields: TestBackend_SecretFieldsAreSensitive).
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
	}
}

// carriesSecret is the rule for a field that holds a secret: a string
// whose name has a secret noun as one of its words (api_key,
// openai_admin_key, token, a future client_secret), unless its last word
// says it only describes one (key_hint, a project_id). Booleans such as
// token_set and lists such as keys are not strings.
func carriesSecret(name string, f *framework.FieldSchema) bool {
	if f.Type != framework.TypeString {
		return false
	}
	words := strings.Split(name, "_")
	if slices.Contains([]string{"hint", "hints", "id", "ids", "uuid", "name", "url", "at"}, words[len(words)-1]) {
		return false
	}
	return slices.ContainsFunc(words, func(w string) bool {
		return slices.Contains([]string{"key", "token", "secret", "password", "passphrase", "credential"}, w)
	})
}

// Every field that carries a secret, in a request or a response, is marked
// Sensitive: UIs and OpenAPI hide it, and the non-string guard
// (requests.go), which is derived from the marking, refuses it without
// quoting it. A secret field added later without the mark fails here.
func TestBackend_SecretFieldsAreSensitive(t *testing.T) {
	b := newBackend()
	check := func(where, name string, f *framework.FieldSchema) {
		if carriesSecret(name, f) && (f.DisplayAttrs == nil || !f.DisplayAttrs.Sensitive) {
			t.Errorf("%s: field %s carries a secret and is not marked Sensitive", where, name)
		}
	}
	for _, p := range b.Paths {
		for name, f := range p.Fields {
			check(p.Pattern, name, f)
		}
		for op, h := range p.Operations {
			for _, responses := range h.Properties().Responses {
				for _, r := range responses {
					for name, f := range r.Fields {
						check(fmt.Sprintf("%s %s response", op, p.Pattern), name, f)
					}
				}
			}
		}
	}
	// The guard covers exactly the marked request fields, among them
	// every secret field there is today.
	for _, name := range []string{"api_key", "next_api_key", "token", "openai_admin_key", "anthropic_admin_key"} {
		if !slices.Contains(b.secretFields, name) {
			t.Errorf("the non-string guard does not cover %s: %v", name, b.secretFields)
		}
	}
	// The rule itself, on names that must and must not count.
	str := &framework.FieldSchema{Type: framework.TypeString}
	for name, want := range map[string]bool{
		"api_key": true, "next_api_key": true, "openai_admin_key": true, "token": true, "client_secret": true,
		"key_hint": false, "next_key_hint": false, "openai_project_id": false, "description": false,
	} {
		if carriesSecret(name, str) != want {
			t.Errorf("carriesSecret(%q) = %v, want %v", name, !want, want)
		}
	}
	if carriesSecret("token_set", &framework.FieldSchema{Type: framework.TypeBool}) {
		t.Error("a boolean counts as a secret")
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

// One way to answer a caller: handlers return errors and respond() in
// requests.go alone builds error responses, so a message is never built
// twice or answered with the wrong status. A handler, guard or callback that
// builds its own logical.ErrorResponse fails here.
func TestBackend_OnlyRespondBuildsErrorResponses(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range pkgs {
		for _, file := range pkg.Files {
			for _, decl := range file.Decls {
				fn, ok := decl.(*ast.FuncDecl)
				if !ok || fn.Body == nil {
					continue
				}
				ast.Inspect(fn.Body, func(n ast.Node) bool {
					sel, ok := n.(*ast.SelectorExpr)
					if ok && sel.Sel.Name == "ErrorResponse" && isIdent(sel.X, "logical") && fn.Name.Name != "respond" {
						t.Errorf("%s: %s builds a logical.ErrorResponse; return a callerError and let respond() answer", fset.Position(sel.Pos()), fn.Name.Name)
					}
					return true
				})
			}
		}
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
