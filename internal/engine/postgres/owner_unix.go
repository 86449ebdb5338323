//go:build !windows

package postgres

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/hartonomous/hartvault/internal/repo"
)

// runAs makes cmd run as the data directory's owner when hartvault runs as root:
// PostgreSQL refuses to run as root.
func runAs(cmd *exec.Cmd, owner *repo.Owner) {
	if owner == nil || os.Geteuid() != 0 || owner.UID == 0 {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(owner.UID), Gid: uint32(owner.GID)}}
}

// chownTree gives dir (and with all, everything under it) to owner when running
// as root.
func chownTree(dir string, owner *repo.Owner, all bool) error {
	if owner == nil || os.Geteuid() != 0 {
		return nil
	}
	if !all {
		return os.Chown(dir, owner.UID, owner.GID)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, owner.UID, owner.GID)
	})
}

// ownerOfDir reads who owns a directory (the cluster's owner).
func ownerOfDir(dir string) (*repo.Owner, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return &repo.Owner{UID: int(st.Uid), GID: int(st.Gid)}, nil
	}
	return nil, nil
}
