//go:build unix

package proc

import (
	"os/exec"
	"syscall"
)

// SetGroup starts cmd in a process group of its own, so Terminate and Kill reach
// whatever it spawns (node's workers, the JVM's children).
func SetGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// Terminate asks cmd's process group to stop (SIGTERM).
func Terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

// Kill stops cmd's process group at once (SIGKILL).
func Kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
