//go:build !linux

package main

import (
	"os/exec"
	"syscall"
)

// setProcAttr gives Vault its own process group, so that stop reaches the
// plugins too. The measurements that read /proc need Linux.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
