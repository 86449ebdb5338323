//go:build !unix

package neo4jtest

import "os/exec"

func setProcessGroup(*exec.Cmd) {}

func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
