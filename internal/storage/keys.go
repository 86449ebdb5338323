package storage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkKey enforces the key rules every driver relies on: slash-separated,
// relative, no "." or ".." segments (a key must never name a path outside the
// store), no backslashes (a Windows path separator would split differently on
// each OS), and none of the characters gocloud escapes for some cloud
// (control characters, and `"#%?` for Azure): an escaped key lists out of
// lexical order there, and Store.List relies on that order. The rules are the
// same for every backend so that a repository can move between them.
func checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("invalid key %q: empty", key)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("invalid key %q: ends with \"/\"", key)
	}
	return checkPath(key, "key")
}

// checkPrefix applies checkKey's rules to a List prefix, which may be empty or
// end in "/".
func checkPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	return checkPath(strings.TrimSuffix(prefix, "/"), "prefix")
}

func checkPath(p, what string) error {
	if !utf8.ValidString(p) {
		return fmt.Errorf("invalid %s %q: not valid UTF-8", what, p)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("invalid %s %q: must be relative (no leading \"/\")", what, p)
	}
	if strings.ContainsRune(p, '\\') {
		return fmt.Errorf("invalid %s %q: contains a backslash (keys are slash-separated)", what, p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("invalid %s %q: contains a control character", what, p)
		}
		if strings.ContainsRune(`"#%?`, r) {
			return fmt.Errorf("invalid %s %q: character %q is not portable across storage backends", what, p, r)
		}
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("invalid %s %q: empty path segment", what, p)
		case ".", "..":
			return fmt.Errorf("invalid %s %q: contains a %q segment", what, p, seg)
		}
	}
	return nil
}

// windowsNameProblem reports why key cannot be stored as a file on Windows, or
// "" if it can. It is plain code (not build-tagged) so that it is tested on
// every OS; Local calls it only on Windows.
func windowsNameProblem(key string) string {
	if i := strings.IndexAny(key, `:*?"<>|`); i >= 0 {
		return fmt.Sprintf("character %q is not allowed in Windows file names", key[i])
	}
	for seg := range strings.SplitSeq(key, "/") {
		if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
			return fmt.Sprintf("segment %q ends with a dot or space, which Windows strips", seg)
		}
		base := strings.ToUpper(seg)
		if i := strings.IndexByte(base, '.'); i >= 0 {
			base = base[:i]
		}
		switch base {
		case "CON", "PRN", "AUX", "NUL",
			"COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9",
			"LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9":
			return fmt.Sprintf("segment %q is a reserved device name on Windows", seg)
		}
	}
	return ""
}
