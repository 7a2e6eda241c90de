package acceptance

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// No build tag: TestPolicyDocsLinkEveryExamplePolicy needs no Vault and runs
// with plain `go test`; TestTeamPolicies (policy_test.go) loads the same files.

// policyDir holds the example policies docs/policies.md links; the suite
// loads these exact files.
const policyDir = "../examples/policies"

var examplePolicies = []string{"team-a", "team-b", "consumer", "gradient-admin", "auditor"}

// TestPolicyDocsLinkEveryExamplePolicy: the policies the docs point users to
// are exactly the files this suite runs. Every file in examples/policies is
// loaded by the suite (writePolicies) and linked from docs/policies.md, so a
// policy cannot ship untested or undocumented. That the links resolve is
// TestMarkdownLinksResolve's (scripts/).
func TestPolicyDocsLinkEveryExamplePolicy(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(policyDir, "*.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var shipped []string
	for _, f := range files {
		shipped = append(shipped, strings.TrimSuffix(filepath.Base(f), ".hcl"))
	}
	loaded := slices.Sorted(slices.Values(examplePolicies))
	if !slices.Equal(shipped, loaded) {
		t.Errorf("examples/policies holds %v, the acceptance suite loads %v: they must be the same files", shipped, loaded)
	}

	doc, err := os.ReadFile("../docs/policies.md")
	if err != nil {
		t.Fatalf("reading docs/policies.md: %v", err)
	}
	for _, p := range shipped {
		if !strings.Contains(string(doc), "](../examples/policies/"+p+".hcl)") {
			t.Errorf("docs/policies.md does not link examples/policies/%s.hcl", p)
		}
	}
}
