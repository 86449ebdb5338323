//go:build windows

package postgres

import (
	"os/exec"

	"github.com/hartonomous/hartvault/internal/repo"
)

func runAs(*exec.Cmd, *repo.Owner) {}

func chownTree(string, *repo.Owner, bool) error { return nil }

func ownerOfDir(string) (*repo.Owner, error) { return nil, nil }
