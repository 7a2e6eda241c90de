//go:build acceptance

package acceptance

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// assertCode checks a refused request: non-zero exit, "Code: <code>" and
// every wanted fragment in the error output.
func assertCode(t testing.TB, r cliResult, code int, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("expected HTTP %d, the command succeeded:\n%s", code, r)
		return
	}
	if !strings.Contains(r.Stderr, fmt.Sprintf("Code: %d", code)) {
		t.Errorf("expected Code: %d:\n%s", code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("expected %q in the error output:\n%s", w, r)
		}
	}
}

// assert5xx checks an upstream fault: non-zero exit and a 5xx code.
func assert5xx(t testing.TB, r cliResult, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Errorf("expected a 5xx, the command succeeded:\n%s", r)
		return
	}
	if !strings.Contains(r.Stderr, "Code: 5") {
		t.Errorf("expected Code: 5xx:\n%s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("expected %q in the error output:\n%s", w, r)
		}
	}
}

// assertNotFound checks that a read found nothing (the CLI prints "No value
// found" for an empty 404 and "Code: 404" for one with an error).
func assertNotFound(t testing.TB, r cliResult) {
	t.Helper()
	if r.Code == 0 || !(strings.Contains(r.Stderr, "No value found") || strings.Contains(r.Stderr, "Code: 404")) {
		t.Errorf("expected not found:\n%s", r)
	}
}

// assertDenied checks a request refused by policy.
func assertDenied(t testing.TB, r cliResult) {
	t.Helper()
	if r.Code == 0 || !strings.Contains(r.Stderr, "Code: 403") || !strings.Contains(r.Stderr, "permission denied") {
		t.Errorf("expected permission denied (403):\n%s", r)
	}
}

func str(m map[string]any, k string) string {
	v, _ := m[k].(string)
	return v
}

func num(m map[string]any, k string) int {
	switch v := m[k].(type) {
	case float64:
		return int(v)
	case json.Number:
		n, _ := v.Int64()
		return int(n)
	case string:
		n, _ := strconv.Atoi(v)
		return n
	}
	return -1
}
