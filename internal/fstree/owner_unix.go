//go:build !windows

package fstree

import (
	"io/fs"
	"os"
	"syscall"

	"github.com/hartonomous/hartvault/internal/repo"
)

func ownerOf(info fs.FileInfo) *repo.Owner {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return &repo.Owner{UID: int(st.Uid), GID: int(st.Gid)}
	}
	return nil
}

// restoreOwner gives a file back its owner when running as root, as tar does; other
// users cannot, and their files simply belong to them.
func restoreOwner(p string, o *repo.Owner) error {
	if o == nil || os.Geteuid() != 0 {
		return nil
	}
	return os.Lchown(p, o.UID, o.GID)
}
