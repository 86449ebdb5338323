package tsql

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"
	"unicode"
)

// FileToken makes a database name safe in a file or blob name: letters, digits, '.',
// '_' and '-' are kept, anything else becomes '_', and a short hash of the real name
// is appended when anything was replaced, so that two names never share a token.
func FileToken(name string) string {
	var b strings.Builder
	changed := false
	for _, r := range name {
		switch {
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '_' || r == '-'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	s := b.String()
	if len(s) > 60 {
		s, changed = s[:60], true
	}
	if s == "" || strings.Trim(s, ".") == "" {
		changed = true
	}
	if changed {
		sum := sha256.Sum256([]byte(name))
		s += "-" + hex.EncodeToString(sum[:4])
	}
	return s
}

// BackupFileNames names the stripes of one backup: DB.TYPE.bak, or DB.TYPE.NNofMM.bak.
func BackupFileNames(database, typ string, stripes int) []string {
	tok := FileToken(database)
	ext := "bak"
	if typ == TypeLog {
		ext = "trn"
	}
	if stripes <= 1 {
		return []string{fmt.Sprintf("%s.%s.%s", tok, typ, ext)}
	}
	out := make([]string, stripes)
	for i := range out {
		out[i] = fmt.Sprintf("%s.%s.%02dof%02d.%s", tok, typ, i+1, stripes, ext)
	}
	return out
}

// JoinServerPath joins a directory on the SQL Server host and a file name with the
// host's separator: \ when the directory is a Windows path, / otherwise.
func JoinServerPath(dir, name string) string {
	if IsWindowsPath(dir) {
		return strings.TrimRight(dir, `\/`) + `\` + name
	}
	return path.Join(dir, name)
}

// IsWindowsPath reports whether p is a Windows path (C:\x, C:/x or \\host\share).
func IsWindowsPath(p string) bool {
	return strings.HasPrefix(p, `\\`) || strings.Contains(p, `\`) ||
		(len(p) >= 2 && p[1] == ':' && (p[0]|0x20) >= 'a' && (p[0]|0x20) <= 'z')
}

// splitServerPath splits a server path into directory and base name.
func splitServerPath(p string) (dir, base string) {
	sep := "/"
	if IsWindowsPath(p) {
		sep = `\`
		p = strings.ReplaceAll(p, "/", `\`)
	}
	i := strings.LastIndex(p, sep)
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// DatabaseFile is one file of a backup, as RESTORE FILELISTONLY lists it.
type DatabaseFile struct {
	LogicalName  string `json:"logical_name"`
	PhysicalName string `json:"physical_name"`
	// Type is D (data), L (log), F (full-text catalog) or S (FILESTREAM or memory-optimized data).
	Type   string `json:"type"`
	FileID int64  `json:"file_id"`
	Size   int64  `json:"size"`
}

// MovesFor relocates every file of a backup for a restore under newName: each file
// keeps its extension and goes to dataDir (logs to logDir), or, when those are empty,
// to the directory it had; its name has the old database name replaced by newName,
// or newName_ prepended. Names are made safe for Windows and Linux file systems.
func MovesFor(files []DatabaseFile, oldName, newName, dataDir, logDir string) []Move {
	safe := fileSafe(newName)
	out := make([]Move, 0, len(files))
	used := map[string]bool{}
	for _, f := range files {
		dir, base := splitServerPath(f.PhysicalName)
		target := dataDir
		if f.Type == "L" {
			target = logDir
		}
		if target != "" {
			dir = target
		}
		stem, ext := base, ""
		if i := strings.LastIndex(base, "."); i > 0 && f.Type != "S" && f.Type != "F" {
			stem, ext = base[:i], base[i:]
		}
		var nb string
		if len(stem) >= len(oldName) && strings.EqualFold(stem[:len(oldName)], oldName) && oldName != "" {
			nb = safe + stem[len(oldName):] + ext
		} else {
			nb = safe + "_" + stem + ext
		}
		p := JoinServerPath(dir, nb)
		for n := 2; used[strings.ToLower(p)]; n++ {
			p = JoinServerPath(dir, fmt.Sprintf("%s_%d%s", strings.TrimSuffix(nb, ext), n, ext))
		}
		used[strings.ToLower(p)] = true
		out = append(out, Move{LogicalName: f.LogicalName, To: p})
	}
	return out
}

// fileSafe replaces characters Windows does not allow in file names.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 32 || strings.ContainsRune(`<>:"/\|?*`, r) {
			return '_'
		}
		return r
	}, s)
}
