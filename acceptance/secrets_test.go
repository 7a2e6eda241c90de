package acceptance

import (
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Secrets the suite uses, and the scan for them. No build tag: the scanner's
// own test (TestSecretScanner) runs with plain `go test`.

var secrets = struct {
	sync.Mutex
	set map[string]bool
}{set: map[string]bool{}}

// mustNotLeak records a secret that must never appear in a log or in the
// CLI's error output.
func mustNotLeak(s string) string {
	secrets.Lock()
	defer secrets.Unlock()
	secrets.set[s] = true
	return s
}

func secretCount() int {
	secrets.Lock()
	defer secrets.Unlock()
	return len(secrets.set)
}

const (
	alnum    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	lowerAln = "abcdefghijklmnopqrstuvwxyz0123456789"
)

func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		j, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[j.Int64()]
	}
	return string(b)
}

// Fresh keys of the shape the emulator's providers accept. Each is recorded
// as a secret.
func newAnthropicKey() string { return mustNotLeak("sk-ant-api03-" + randomString(alnum, 40)) }
func newOpenAIKey() string    { return mustNotLeak("sk-proj-" + randomString(alnum, 40)) }

func newKey(provider string) string {
	if provider == "openai" {
		return newOpenAIKey()
	}
	return newAnthropicKey()
}

// uniqueName returns prefix plus a random suffix, a valid key name.
func uniqueName(prefix string) string { return prefix + "-" + randomString(lowerAln, 6) }

var logRegistry = struct {
	sync.Mutex
	files []string
}{}

func registerLog(path string) {
	logRegistry.Lock()
	defer logRegistry.Unlock()
	for _, f := range logRegistry.files {
		if f == path {
			return
		}
	}
	logRegistry.files = append(logRegistry.files, path)
}

func logFiles() []string {
	logRegistry.Lock()
	defer logRegistry.Unlock()
	return append([]string(nil), logRegistry.files...)
}

// scanForSecrets looks for every recorded secret, and for long fragments of
// it, in every registered log. It returns one line per finding.
func scanForSecrets() []string {
	secrets.Lock()
	var list []string
	for s := range secrets.set {
		list = append(list, s)
	}
	secrets.Unlock()
	sort.Strings(list)
	return scanFiles(logFiles(), list)
}

func scanFiles(files, secrets []string) []string {
	var leaks []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				leaks = append(leaks, fmt.Sprintf("%s: cannot read: %v", f, err))
			}
			continue
		}
		text := string(b)
		for _, s := range secrets {
			for _, frag := range fragments(s) {
				if strings.Contains(text, frag) {
					leaks = append(leaks, fmt.Sprintf("%s contains %q (from secret %s...)", f, frag, s[:min(len(s), 10)]))
					break
				}
			}
		}
	}
	return leaks
}

// fragments are the whole secret and, for long ones, the first and last 12
// characters of its random part: enough to catch a truncated or masked echo.
func fragments(s string) []string {
	out := []string{s}
	body := s
	for _, p := range []string{"sk-ant-api03-", "sk-ant-admin01-", "sk-proj-", "sk-admin-", "sk-"} {
		if strings.HasPrefix(s, p) {
			body = s[len(p):]
			break
		}
	}
	if len(body) >= 24 {
		out = append(out, body[:12], body[len(body)-12:])
	}
	return out
}

// TestSecretScanner checks the scanner itself: it must find a secret, or a
// long fragment of one, and nothing else.
func TestSecretScanner(t *testing.T) {
	dir := t.TempDir()
	secret := "sk-proj-" + randomString(alnum, 40)
	body := secret[len("sk-proj-"):]
	cases := map[string]struct {
		text string
		leak bool
	}{
		"whole key":             {"error: " + secret, true},
		"masked, head visible":  {"key sk-proj-" + body[:12] + "****", true},
		"masked, tail visible":  {"key sk-proj-****" + body[len(body)-12:], true},
		"last four only (hint)": {"hint " + body[len(body)-4:], false},
		"unrelated text":        {"nothing to see", false},
	}
	for label, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(label, " ", "_")+".log")
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := len(scanFiles([]string{path}, []string{secret})) > 0; got != c.leak {
			t.Errorf("%s: leak found = %v, want %v", label, got, c.leak)
		}
	}
}
