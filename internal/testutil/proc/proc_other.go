//go:build !unix

package proc

import "os/exec"

// SetGroup does nothing here: only cmd itself is stopped.
func SetGroup(*exec.Cmd) {}

// Terminate stops cmd.
func Terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// Kill stops cmd.
func Kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
