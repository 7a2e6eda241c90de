//go:build acceptance

package acceptance

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPathHelp: `vault path-help` explains every path: a synopsis, the
// parameters that path takes and a description.
func TestPathHelp(t *testing.T) {
	f := sharedFixture(t)
	cases := map[string][]string{
		"config":                {"token", "api_url", "anthropic_url", "openai_url", "verify_keys", "request_timeout", "name_cache_ttl"},
		"keys":                  nil,
		"keys/example":          {"name", "provider", "api_key", "description", "uuid", "force"},
		"keys/example/agents":   {"name"},
		"keys/example/reassign": {"name", "to"},
		"rename/example":        {"name", "new_name"},
		"creds/example":         {"name"},
	}
	for path, params := range cases {
		t.Run(path, func(t *testing.T) {
			out := f.v.vault(t, as(f.root).ok(), "path-help", f.mount+"/"+path).Stdout
			if !strings.Contains(out, "Request:") || !strings.Contains(out, "## DESCRIPTION") {
				t.Fatalf("path-help output lacks the usual sections:\n%s", out)
			}
			// The synopsis is the text between the header and the first section.
			head, desc, _ := strings.Cut(out, "## DESCRIPTION")
			synopsis := head
			if i := strings.Index(head, "## PARAMETERS"); i >= 0 {
				synopsis = head[:i]
			}
			lines := strings.Split(strings.TrimSpace(synopsis), "\n")
			if len(lines) < 3 || len(strings.TrimSpace(lines[len(lines)-1])) < 15 {
				t.Errorf("no useful synopsis:\n%s", out)
			}
			if len(strings.TrimSpace(desc)) < 40 {
				t.Errorf("description is too short to help:\n%s", desc)
			}
			for _, p := range params {
				if !strings.Contains(head, "\n    "+p+" (") {
					t.Errorf("parameter %s is not documented:\n%s", p, out)
				}
			}
			if strings.Contains(out, "\t") {
				t.Errorf("help text contains tab characters (a raw string leaking indentation?):\n%q", out)
			}
		})
	}
}

// TestOpenAPI: sys/internal/specs/openapi lists every path of the mount with
// an operation id for each operation.
func TestOpenAPI(t *testing.T) {
	f := sharedFixture(t)
	req, err := http.NewRequest(http.MethodGet, f.v.addr+"/v1/sys/internal/specs/openapi", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", f.root)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"/" + f.mount + "/config":               {"get", "post", "delete"},
		"/" + f.mount + "/keys/":                {"get"},
		"/" + f.mount + "/keys/{name}":          {"get", "post", "delete"},
		"/" + f.mount + "/keys/{name}/agents":   {"get"},
		"/" + f.mount + "/keys/{name}/reassign": {"post"},
		"/" + f.mount + "/rename/{name}":        {"post"},
		"/" + f.mount + "/creds/{name}":         {"get"},
	}
	seen := map[string]string{}
	for path, methods := range want {
		item, ok := doc.Paths[path]
		if !ok {
			var have []string
			for p := range doc.Paths {
				if strings.HasPrefix(p, "/"+f.mount+"/") {
					have = append(have, p)
				}
			}
			t.Errorf("OpenAPI has no %s; the mount's paths are %v", path, have)
			continue
		}
		for _, m := range methods {
			raw, ok := item[m]
			if !ok {
				t.Errorf("%s has no %s operation", path, m)
				continue
			}
			var op struct {
				OperationID string `json:"operationId"`
				Summary     string `json:"summary"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", m, path)
				continue
			}
			if prev, dup := seen[op.OperationID]; dup {
				t.Errorf("operationId %s is used by %s and %s %s", op.OperationID, prev, m, path)
			}
			seen[op.OperationID] = m + " " + path
		}
	}
	t.Logf("operation ids: %v", seen)
}
