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
	b := newBackend(testTuning())
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
	b := newBackend(testTuning())
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
	b := newBackend(testTuning())
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
	b := newBackend(testTuning())
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
	b := newBackend(testTuning())
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
// builds its own error answer fails here.
func TestBackend_OnlyRespondBuildsErrorResponses(t *testing.T) {
	fset, files := parseBackend(t)
	for _, file := range files {
		for _, found := range handBuiltErrorAnswers(fset, file) {
			t.Error(found)
		}
	}
}

// The check above sees through the ways around it: an import alias, a dot
// import, a function value, a package-level variable, a status code, a
// response whose data holds "error", a user error outside the existence
// check's guard.
func TestBackend_OnlyRespondBuildsErrorResponsesCatchesEvasions(t *testing.T) {
	for name, src := range map[string]string{
		"alias import":       `import lg "github.com/hashicorp/vault/sdk/logical"; func h() { _ = lg.ErrorResponse("x") }`,
		"dot import":         `import . "github.com/hashicorp/vault/sdk/logical"; func h() { _ = ErrorResponse("x") }`,
		"method value":       `import "github.com/hashicorp/vault/sdk/logical"; func h() { f := logical.ErrorResponse; _ = f("x") }`,
		"package variable":   `import "github.com/hashicorp/vault/sdk/logical"; var f = logical.ErrorResponse`,
		"status code":        `import "github.com/hashicorp/vault/sdk/logical"; func h() { _, _ = logical.RespondWithStatusCode(nil, nil, 400) }`,
		"coded error":        `import "github.com/hashicorp/vault/sdk/logical"; func h() error { return logical.CodedError(400, "x") }`,
		"error in data":      `import "github.com/hashicorp/vault/sdk/logical"; func h() any { return &logical.Response{Data: map[string]any{"error": "x"}} }`,
		"aliased user error": `import eu "github.com/hashicorp/vault/sdk/helper/errutil"; func h() error { return eu.UserError{Err: "x"} }`,
	} {
		t.Run(name, func(t *testing.T) {
			fset := token.NewFileSet()
			file, err := parser.ParseFile(fset, "evasion.go", "package backend; "+src, 0)
			if err != nil {
				t.Fatal(err)
			}
			if found := handBuiltErrorAnswers(fset, file); len(found) != 1 {
				t.Errorf("found %d hand-built error answers, want 1: %v", len(found), found)
			}
		})
	}
}

// handBuiltErrorAnswers lists the places in file, anywhere in it, that
// answer a caller's error without respond(): logical's ErrorResponse,
// RespondWithStatusCode and CodedError outside respond, a logical.Response
// whose data holds "error", and errutil.UserError outside
// HandleExistenceCheck (the non-string guard, which runs before any
// handler). Imports are resolved by path, so an alias or a dot import
// changes nothing.
func handBuiltErrorAnswers(fset *token.FileSet, file *ast.File) []string {
	const logicalPath, errutilPath = `"github.com/hashicorp/vault/sdk/logical"`, `"github.com/hashicorp/vault/sdk/helper/errutil"`
	local := map[string]string{} // import path -> name in this file; "." for a dot import
	for _, imp := range file.Imports {
		name := strings.Trim(imp.Path.Value, `"`)
		name = name[strings.LastIndex(name, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		local[imp.Path.Value] = name
	}
	// from reports whether e names sel of the package imported from path.
	from := func(e ast.Expr, path string, sel ...string) bool {
		name, ok := local[path]
		switch e := e.(type) {
		case *ast.SelectorExpr:
			return ok && name != "." && isIdent(e.X, name) && slices.Contains(sel, e.Sel.Name)
		case *ast.Ident:
			return ok && name == "." && slices.Contains(sel, e.Name)
		}
		return false
	}
	var found []string
	report := func(n ast.Node, in, what string) {
		found = append(found, fmt.Sprintf("%s: %s %s; return a callerError and let respond() answer", fset.Position(n.Pos()), in, what))
	}
	for _, decl := range file.Decls {
		in := "a package-level declaration"
		if fn, ok := decl.(*ast.FuncDecl); ok {
			in = fn.Name.Name
		}
		ast.Inspect(decl, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr, *ast.Ident:
				if in != "respond" && from(n.(ast.Expr), logicalPath, "ErrorResponse", "RespondWithStatusCode", "CodedError") {
					report(n, in, "builds an error answer with logical")
				}
				if in != "HandleExistenceCheck" && from(n.(ast.Expr), errutilPath, "UserError") {
					report(n, in, "builds an errutil.UserError")
				}
			case *ast.CompositeLit:
				if from(n.Type, logicalPath, "Response") && dataHoldsError(n) {
					report(n, in, `answers with "error" in a response's data`)
				}
			}
			return true
		})
	}
	return found
}

// dataHoldsError: the literal sets Data to a map literal with key "error".
func dataHoldsError(lit *ast.CompositeLit) bool {
	for _, elt := range lit.Elts {
		kv, ok := elt.(*ast.KeyValueExpr)
		if !ok || !isIdent(kv.Key, "Data") {
			continue
		}
		data, ok := kv.Value.(*ast.CompositeLit)
		if !ok {
			continue
		}
		for _, e := range data.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				if lit, ok := kv.Key.(*ast.BasicLit); ok && lit.Value == `"error"` {
					return true
				}
			}
		}
	}
	return false
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// The handlers cannot build an HTTP request: the upstream clients live in
// internal/platform and internal/providers, behind interfaces. backend may
// import net/http only for its status constants (the Responses of paths,
// respond's coded errors), and no HTTP client library at all.
func TestBackend_BuildsNoHTTPRequests(t *testing.T) {
	forbidden := []string{"github.com/digitalocean/godo", "net/http/httputil", "net/http/httptrace", "golang.org/x/oauth2"}
	fset, files := parseBackend(t)
	for _, file := range files {
		httpName := ""
		for _, imp := range file.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if slices.Contains(forbidden, path) {
				t.Errorf("%s imports %s: upstream calls belong in internal/platform or internal/providers", fset.Position(imp.Pos()), path)
			}
			if path == "net/http" {
				httpName = "http"
				if imp.Name != nil {
					httpName = imp.Name.Name
				}
			}
		}
		if httpName == "" {
			continue
		}
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if ok && isIdent(sel.X, httpName) && !strings.HasPrefix(sel.Sel.Name, "Status") {
				t.Errorf("%s: uses http.%s; backend takes only status constants from net/http", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}

// parseBackend parses the package's non-test files.
func parseBackend(t *testing.T) (*token.FileSet, []*ast.File) {
	t.Helper()
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, pkg := range pkgs {
		for _, f := range pkg.Files {
			files = append(files, f)
		}
	}
	return fset, files
}
