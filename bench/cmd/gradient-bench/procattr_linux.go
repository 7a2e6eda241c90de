package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr gives Vault its own process group, so that stop reaches the
// plugins too, and has the kernel kill it if the bench dies first.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
