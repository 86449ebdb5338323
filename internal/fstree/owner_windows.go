//go:build windows

package fstree

import (
	"io/fs"

	"github.com/hartonomous/hartvault/internal/repo"
)

func ownerOf(fs.FileInfo) *repo.Owner { return nil }

func restoreOwner(string, *repo.Owner) error { return nil }
