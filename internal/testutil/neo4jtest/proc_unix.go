//go:build unix

package neo4jtest

import (
	"os/exec"
	"syscall"
)

// A process group lets a stop reach anything the JVM started.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
