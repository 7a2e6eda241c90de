//go:build acceptance

package acceptance

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type cliResult struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int
}

func (r cliResult) String() string {
	return fmt.Sprintf("vault %s\nexit %d\nstdout: %s\nstderr: %s", strings.Join(r.Args, " "), r.Code, r.Stdout, r.Stderr)
}

var cliLog = struct {
	sync.Mutex
	f *os.File
}{}

// recordStderr appends the CLI's error output to a file the hygiene scan reads.
func recordStderr(args []string, stderr string) {
	if stderr == "" {
		return
	}
	cliLog.Lock()
	defer cliLog.Unlock()
	if cliLog.f == nil {
		path := filepath.Join(suiteDir, "cli-stderr.log")
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			panic(err)
		}
		cliLog.f = f
		registerLog(path)
	}
	fmt.Fprintf(cliLog.f, "$ vault %s\n%s\n", args[0], stderr)
}

// cliOpts says how one vault command runs. Build it with as and chain the
// rest: as(token).withStdin(key).ok().
type cliOpts struct {
	token       string // VAULT_TOKEN; none when empty
	stdin       string // the command's standard input; none when empty
	mustSucceed bool   // fail the test unless the command exits 0
	// noRedirects sets VAULT_DISABLE_REDIRECTS: a standby that answered
	// with a redirect instead of forwarding fails the command (Code: 307).
	noRedirects bool
}

// as runs the command with token. cliOpts{} runs it with no token.
func as(token string) cliOpts { return cliOpts{token: token} }

// withStdin feeds in to the command (for `api_key=-` and `token=-`).
func (o cliOpts) withStdin(in string) cliOpts {
	o.stdin = in
	return o
}

// forwardedOnly refuses redirects, so a command that succeeds against a
// standby was forwarded by it.
func (o cliOpts) forwardedOnly() cliOpts {
	o.noRedirects = true
	return o
}

// ok fails the test unless the command exits 0.
func (o cliOpts) ok() cliOpts {
	o.mustSucceed = true
	return o
}

// vault runs the real vault CLI against s, the one way the suite runs it.
// t may be nil outside a test (not with ok): a command that cannot be
// started then comes back with Code -1 instead of failing the test.
func (s *vaultServer) vault(t testing.TB, o cliOpts, args ...string) cliResult {
	if t != nil {
		t.Helper()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	env := []string{"VAULT_ADDR=" + s.addr, "HOME=" + filepath.Join(s.dir, "home"), "NO_COLOR=1"}
	if o.noRedirects {
		env = append(env, "VAULT_DISABLE_REDIRECTS=true")
	}
	if o.token != "" {
		env = append(env, "VAULT_TOKEN="+o.token)
	}
	cmd.Env = cleanEnv(env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.stdin != "" {
		cmd.Stdin = strings.NewReader(o.stdin)
	}
	err := cmd.Run()
	r := cliResult{Args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		r.Code = exitErr.ExitCode()
	default:
		if t != nil {
			t.Fatalf("running vault %v: %v", args, err)
		}
		r.Code = -1
		r.Stderr += err.Error()
	}
	recordStderr(args, r.Stderr)
	if o.mustSucceed && r.Code != 0 {
		t.Fatalf("expected success on %s:\n%s", s.name, r)
	}
	return r
}

// readData runs `vault read -format=json path` and returns its data.
func (s *vaultServer) readData(t testing.TB, token, path string) map[string]any {
	t.Helper()
	out := s.vault(t, as(token).ok(), "read", "-format=json", path).Stdout
	return decodeData(t, out)
}

// writeData runs `vault write -format=json path args...` and returns the
// response data (nil when the response has none).
func (s *vaultServer) writeData(t testing.TB, token, path string, args ...string) map[string]any {
	t.Helper()
	out := s.vault(t, as(token).ok(), append([]string{"write", "-format=json", path}, args...)...).Stdout
	if strings.TrimSpace(out) == "" {
		return nil
	}
	return decodeData(t, out)
}

func decodeData(t testing.TB, out string) map[string]any {
	t.Helper()
	var secret struct {
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &secret); err != nil {
		t.Fatalf("decoding vault JSON output: %v\n%s", err, out)
	}
	return secret.Data
}

// list runs `vault list -format=json path`; an empty or missing list is nil.
func (s *vaultServer) list(t testing.TB, token, path string) []string {
	t.Helper()
	r := s.vault(t, as(token), "list", "-format=json", path)
	if r.Code != 0 {
		// An empty list: exit 2 with "No value found", or with -format=json
		// an empty object and no error text.
		if r.Code == 2 && (strings.Contains(r.Stderr, "No value found") ||
			(strings.TrimSpace(r.Stderr) == "" && strings.TrimSpace(r.Stdout) == "{}")) {
			return nil
		}
		t.Fatalf("list failed:\n%s", r)
	}
	var names []string
	if err := json.Unmarshal([]byte(r.Stdout), &names); err != nil {
		t.Fatalf("decoding list output: %v\n%s", err, r.Stdout)
	}
	return names
}
