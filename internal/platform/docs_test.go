package platform

import (
	"os"
	"strings"
	"testing"
)

// TestDocs_ListingRestartsMatchTheCode ties docs/drift.md's "up to three
// listings" to maxListings: a test using the constant passes whatever its
// value, so the page's number is checked here.
func TestDocs_ListingRestartsMatchTheCode(t *testing.T) {
	b, err := os.ReadFile("../../docs/drift.md")
	if err != nil {
		t.Fatal(err)
	}
	words := map[int]string{2: "two", 3: "three", 4: "four", 5: "five"}[maxListings]
	if page := strings.Join(strings.Fields(string(b)), " "); words == "" || !strings.Contains(page, "starts again, up to "+words+" listings") {
		t.Errorf("docs/drift.md does not say a listing starts again %q: maxListings is %d; update the page (or the code)", "up to "+words+" listings", maxListings)
	}
}
