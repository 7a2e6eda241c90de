package emulator_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocs_EmulatorPageListsEveryControl checks that docs/emulator.md names
// every route of the test control API (`GET state`, `POST faults`, ...),
// with its method, and no route the emulator does not serve.
func TestDocs_EmulatorPageListsEveryControl(t *testing.T) {
	src, err := os.ReadFile("control.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/emulator.md")
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, m := range regexp.MustCompile(`"([a-z/-]+)": +\{http\.Method(Get|Post)\b`).FindAllStringSubmatch(string(src), -1) {
		served[strings.ToUpper(m[2])+" "+m[1]] = true
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(GET|POST) ([a-z/-]+)").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]+" "+m[2]] = true
	}
	if len(served) < 10 {
		t.Fatalf("found %d control routes in control.go; its format changed?", len(served))
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("docs/emulator.md does not list the control route `%s`", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("docs/emulator.md lists `%s`, which the emulator does not serve", r)
		}
	}
}
