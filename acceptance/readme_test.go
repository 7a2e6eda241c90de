package acceptance

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No build tag: TestReadmeShowsExamplePolicies needs no Vault and runs with
// plain `go test`; TestTeamPolicies (policy_test.go) loads the same files.

// policyDir holds the example policies the README shows; the suite loads
// these exact files.
const policyDir = "../examples/policies"

var examplePolicies = []string{"team-a", "team-b", "consumer", "gradient-admin", "auditor"}

// TestReadmeShowsExamplePolicies: the README's policy examples are exactly
// the files this suite runs.
func TestReadmeShowsExamplePolicies(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatalf("reading README.md: %v", err)
	}
	for _, p := range examplePolicies {
		b, err := os.ReadFile(filepath.Join(policyDir, p+".hcl"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), strings.TrimSpace(string(b))) {
			t.Errorf("README.md does not contain examples/policies/%s.hcl verbatim", p)
		}
	}
}
