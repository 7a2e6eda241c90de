//go:build acceptance

package acceptance

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const pluginName = "vault-plugin-secrets-gradient"

// Set by TestMain from the environment.
var (
	vaultBin      string
	pluginDir     string
	pluginPath    string
	pluginVersion string
	pluginSHA256  string
	// suiteDir holds every log the suite produces: server logs, audit logs
	// and the CLI's error output. The secret-hygiene check scans all of it.
	suiteDir string
)

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	if err := loadEnv(); err != nil {
		fmt.Fprintf(os.Stderr, "\nacceptance: %v\n\n"+
			"Run the suite with `make test-acceptance` (or `make test`): it builds the plugin,\n"+
			"gets a Vault binary with scripts/get-vault.sh and sets the environment. To run it\n"+
			"by hand, set VAULT_BIN to a vault binary (1.15 or later), GRADIENT_PLUGIN_DIR to the\n"+
			"directory holding %s built with -tags gradienttest (`make build-test`)\n"+
			"and GRADIENT_PLUGIN_VERSION to its version.\n\n", err, pluginName)
		return 1
	}
	dir, err := os.MkdirTemp("", "gradient-acceptance-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: %v\n", err)
		return 1
	}
	suiteDir = dir

	code := m.Run()

	stopShared()
	stopAllServers()
	if leaks := scanForSecrets(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "\nFAIL: secret hygiene: plaintext secrets found after the suite:\n  %s\n",
			strings.Join(leaks, "\n  "))
		code = 1
	} else {
		fmt.Fprintf(os.Stderr, "acceptance: secret hygiene: %d secrets absent from %d log files\n",
			secretCount(), len(logFiles()))
	}
	if code == 0 {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Fprintf(os.Stderr, "acceptance: logs kept in %s\n", dir)
	}
	return code
}

func loadEnv() error {
	vaultBin = os.Getenv("VAULT_BIN")
	if vaultBin == "" {
		return errors.New("VAULT_BIN is not set")
	}
	out, err := exec.Command(vaultBin, "version").Output()
	if err != nil {
		return fmt.Errorf("VAULT_BIN=%s does not run: %v", vaultBin, err)
	}
	if !strings.HasPrefix(string(out), "Vault v") {
		return fmt.Errorf("VAULT_BIN=%s is not Vault: %q", vaultBin, out)
	}
	pluginDir = os.Getenv("GRADIENT_PLUGIN_DIR")
	if pluginDir == "" {
		return errors.New("GRADIENT_PLUGIN_DIR is not set")
	}
	if pluginDir, err = filepath.Abs(pluginDir); err != nil {
		return err
	}
	pluginPath = filepath.Join(pluginDir, pluginName)
	st, err := os.Stat(pluginPath)
	if err != nil || st.Mode()&0o111 == 0 {
		return fmt.Errorf("no executable plugin at %s (build it with `make build-test`)", pluginPath)
	}
	pluginVersion = os.Getenv("GRADIENT_PLUGIN_VERSION")
	if pluginVersion == "" {
		pluginVersion = "v0.1.0"
	}
	b, err := os.ReadFile(pluginPath)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(b)
	pluginSHA256 = hex.EncodeToString(sum[:])
	return nil
}
