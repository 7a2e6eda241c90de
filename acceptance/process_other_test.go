//go:build acceptance && !linux

package acceptance

import (
	"os"
	"os/exec"
)

// Without Linux the suite compiles and runs, but without the safety nets of
// process_linux_test.go: Vault does not die with the test binary, no reaper
// watches it, and its plugin processes cannot be found (TestDurability skips).

const findsPlugins = false

func setVaultProcAttr(*exec.Cmd) {}

func startReaper(int) (*exec.Cmd, error) { return nil, nil }

func killGroup(int) {}

func killProcess(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func childPIDs(int) []int { return nil }

func processExe(int) string { return "" }

func processAlive(int) bool { return false }
