//go:build acceptance

package acceptance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Process handling that needs Linux: process groups, a parent-death signal
// and /proc. process_other_test.go stands in for it elsewhere.

// findsPlugins says whether childPIDs and processExe can see processes here.
const findsPlugins = true

// setVaultProcAttr makes a Vault server lead its own process group, which
// its plugin processes join. If the test binary dies (timeout panic,
// SIGKILL), Vault dies with it.
func setVaultProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// startReaper guards the Vault server vaultPID: plugins outlive a killed
// Vault, so a reaper in a group of its own kills Vault's whole group if the
// test binary goes away first.
func startReaper(vaultPID int) (*exec.Cmd, error) {
	reaper := exec.Command("sh", "-c", fmt.Sprintf(
		"while kill -0 %d 2>/dev/null; do sleep 1; done; kill -KILL -%d 2>/dev/null", os.Getpid(), vaultPID))
	reaper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := reaper.Start(); err != nil {
		return nil, err
	}
	return reaper, nil
}

// killGroup kills whatever is left of the process group pid leads.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// killProcess sends SIGKILL to pid.
func killProcess(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// childPIDs lists the processes whose parent is pid (Linux /proc).
func childPIDs(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may contain spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
			out = append(out, child)
		}
	}
	return out
}

// processExe is the binary a process runs, "" when it is gone.
func processExe(pid int) string {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(exe, " (deleted)")
}

func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && processExe(pid) != ""
}
