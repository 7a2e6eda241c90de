package providers

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDocs_AdminPacingMatchesTheCode ties docs/rotation.md's pace of the
// providers' Admin API calls to adminRate and adminBurst.
func TestDocs_AdminPacingMatchesTheCode(t *testing.T) {
	b, err := os.ReadFile("../../docs/rotation.md")
	if err != nil {
		t.Fatal(err)
	}
	if adminRate != 1 {
		t.Fatalf("adminRate is %v a second; docs/rotation.md says one call a second: update the page and this test", adminRate)
	}
	want := fmt.Sprintf("one call a second on average, bursts of %d", adminBurst)
	if page := strings.Join(strings.Fields(string(b)), " "); !strings.Contains(page, want) {
		t.Errorf("docs/rotation.md does not say %q; update the page (or the code)", want)
	}
}
