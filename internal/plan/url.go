package plan

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
)

const schemeHint = "want file://, azblob://, s3:// or gs://"

// NormalizeURL checks a repository URL and returns its canonical form. File URLs become
// file:// plus an absolute slash path (file:///var/lib/hartvault, file:///C:/backups);
// relative ones (file://./repo, file://repo, file:repo) are resolved against baseDir.
// Other schemes (azblob, s3, gs) need the container or bucket as host and keep their
// text, with the scheme lower-cased. Messages never repeat the URL: it may hold secrets.
func NormalizeURL(raw, baseDir string) (string, error) {
	if raw == "" {
		return "", errors.New("missing URL")
	}
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/\\") {
		return "", errors.New("not a URL (" + schemeHint + ")")
	}
	if len(scheme) == 1 && isLetter(scheme[0]) {
		return "", fmt.Errorf("a Windows path needs a file URL: file:///%s:%s", scheme, strings.ReplaceAll(rest, "\\", "/"))
	}
	switch strings.ToLower(scheme) {
	case "file":
		return normalizeFileURL(rest, baseDir)
	case "azblob", "s3", "gs":
		scheme = strings.ToLower(scheme)
		u, err := url.Parse(scheme + ":" + rest)
		if err != nil {
			return "", fmt.Errorf("not a valid %s URL", scheme)
		}
		if u.User != nil {
			return "", errors.New("URL must not hold a user name or password; give credentials through the storage's environment")
		}
		if u.Host == "" {
			what := "bucket"
			if scheme == "azblob" {
				what = "container"
			}
			return "", fmt.Errorf("%s URL needs the %s name: %s://%s", scheme, what, scheme, strings.ToUpper(what))
		}
		return scheme + ":" + rest, nil
	default:
		return "", fmt.Errorf("unknown scheme %q (%s)", scheme, schemeHint)
	}
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// isDrivePath reports whether p starts with a Windows drive: C: alone, C:/ or C:\.
func isDrivePath(p string) bool {
	return len(p) >= 2 && isLetter(p[0]) && p[1] == ':' && (len(p) == 2 || p[2] == '/' || p[2] == '\\')
}

// parseFileURLPath reads what follows "file:" and returns the path in slash form and
// whether it is absolute. It does not look at the running OS, so Windows URLs can be
// tested anywhere. Drive paths come back as C:/x. Percent escapes are not decoded: the
// path is taken literally, so a name with a space can be written as is.
func parseFileURLPath(rest string) (p string, abs bool, err error) {
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		rest = after
		// file://localhost/x is the RFC 8089 spelling of file:///x.
		if after, ok := strings.CutPrefix(rest, "localhost/"); ok {
			rest = "/" + after
		}
	}
	switch {
	case rest == "":
		return "", false, errors.New("file URL has no path")
	case rest[0] == '/' && isDrivePath(rest[1:]): // file:///C:/x
		return drivePath(rest[1:]), true, nil
	case isDrivePath(rest): // file://C:/x, file:C:/x
		return drivePath(rest), true, nil
	case rest[0] == '/':
		return rest, true, nil
	default: // file://repo, file://./repo, file:repo
		return rest, false, nil
	}
}

func drivePath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	if len(p) == 2 {
		p += "/"
	}
	return p
}

func normalizeFileURL(rest, baseDir string) (string, error) {
	p, abs, err := parseFileURLPath(rest)
	if err != nil {
		return "", err
	}
	if isDrivePath(p) && runtime.GOOS != "windows" {
		return "", fmt.Errorf("drive path %s is only valid on Windows", p)
	}
	local := filepath.FromSlash(p)
	if !abs {
		local = filepath.Join(baseDir, local)
	}
	// Abs also cleans, and on Windows gives /x the current drive.
	if local, err = filepath.Abs(local); err != nil {
		return "", fmt.Errorf("cannot make path absolute: %v", err)
	}
	return fileURL(local), nil
}

// fileURL turns an absolute OS path into file:///path (file:///C:/path on Windows).
func fileURL(abs string) string {
	s := filepath.ToSlash(abs)
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return "file://" + s
}

// URLLocalPath returns the filesystem path of a file URL, in the OS's form, and false for
// other schemes. A relative file URL gives a relative path; Parse has already made the
// plan's URLs absolute.
func URLLocalPath(rawURL string) (string, bool) {
	scheme, rest, ok := strings.Cut(rawURL, ":")
	if !ok || !strings.EqualFold(scheme, "file") {
		return "", false
	}
	p, _, err := parseFileURLPath(rest)
	if err != nil {
		return "", false
	}
	return filepath.FromSlash(p), true
}

// LocalPath returns the filesystem path of the repository when its URL is a file URL.
func (r Repository) LocalPath() (string, bool) { return URLLocalPath(r.URL) }
