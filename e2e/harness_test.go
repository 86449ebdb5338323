// Package e2e drives the hartvault binary end to end: real files, real processes,
// a local repository and Azure Blob through Azurite.
package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/testutil/azurite"
	"github.com/hartonomous/hartvault/internal/testutil/pgtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hartvault-e2e-bin")
	if err != nil {
		panic(err)
	}
	// Readable by the postgres user too: archive_command runs the binary as the
	// cluster's owner.
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "hartvault")
	if runtime.GOOS == "windows" {
		binary += ".exe"
	}
	// The binary is built without the race detector unless asked for: it makes
	// scrypt and zstd many times slower, and every package it is made of already
	// runs its own tests under -race.
	args := []string{"build", "-o", binary}
	if raceEnabled && os.Getenv("HARTVAULT_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/hartvault")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hartvault:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// backend is a place a test repository lives.
type backend struct {
	name string
	// url returns a fresh repository URL; env is added to every command's environment.
	url func(t *testing.T) string
	env []string
}

// backends returns the storage backends every end-to-end scenario runs against.
func backends(t *testing.T) []backend {
	az := azurite.Start(t)
	return []backend{
		{name: "file", url: func(t *testing.T) string { return "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo")) }},
		{name: "azurite", url: func(t *testing.T) string {
			return fmt.Sprintf("azblob://hv-%d", rand.Uint32())
		}, env: az.Env()},
	}
}

// world is one test's plan, repository and environment.
type world struct {
	t      *testing.T
	dir    string
	plan   string
	url    string
	env    []string
	source string
	// asUser runs every command as this user (PostgreSQL tests run hartvault as the
	// data directory's owner, as archive_command does).
	asUser *pgtest.Owner
}

type planOpts struct {
	url        string
	keys       string // YAML lines for the key settings; default passphrase_env
	extraRepo  string // more repository YAML lines
	paths      []string
	exclude    []string
	extraPlans string
}

func newWorld(t *testing.T, b backend, o planOpts) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), url: o.url, source: "assemblies"}
	if w.url == "" {
		w.url = b.url(t)
	}
	w.env = append([]string{"HARTVAULT_PASSPHRASE=correct horse battery staple"}, b.env...)
	w.plan = filepath.Join(w.dir, "hartvault.yaml")
	w.writePlan(o)
	return w
}

func (w *world) writePlan(o planOpts) {
	keys := o.keys
	if keys == "" {
		keys = "  passphrase_env: HARTVAULT_PASSPHRASE\n"
	}
	var paths []string
	for _, p := range o.paths {
		paths = append(paths, fmt.Sprintf("%q", filepath.ToSlash(p)))
	}
	if o.exclude == nil {
		o.exclude = []string{"*.tmp"} // makeTree's scratch file
	}
	var excl []string
	for _, e := range o.exclude {
		excl = append(excl, fmt.Sprintf("%q", e))
	}
	y := fmt.Sprintf("repository:\n  url: %s\n%s%ssources:\n  - name: %s\n    kind: files\n    paths: [%s]\n    exclude: [%s]\n%s",
		w.url, keys, o.extraRepo, w.source, strings.Join(paths, ", "), strings.Join(excl, ", "), o.extraPlans)
	if err := os.WriteFile(w.plan, []byte(y), 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// result of one command.
type result struct {
	code   int
	stdout string
	stderr string
}

func (r result) lastLine() string {
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (w *world) cmd(args ...string) *exec.Cmd {
	args = append([]string{"--config", w.plan}, args...)
	var c *exec.Cmd
	if w.asUser != nil {
		c = w.asUser.Command(binary, args...)
	} else {
		c = exec.Command(binary, args...)
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	c.Env = append(c.Env, w.env...)
	return c
}

// run runs hartvault and returns what it did, whatever the exit code.
func (w *world) run(args ...string) result {
	w.t.Helper()
	c := w.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		w.t.Fatalf("run %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// ok runs hartvault and fails the test unless it exits 0.
func (w *world) ok(args ...string) result {
	w.t.Helper()
	r := w.run(args...)
	if r.code != 0 {
		w.t.Fatalf("hartvault %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// fails runs hartvault, expects exit code want and a one-line error containing substr.
func (w *world) fails(want int, substr string, args ...string) result {
	w.t.Helper()
	r := w.run(args...)
	if r.code != want {
		w.t.Fatalf("hartvault %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	if !strings.Contains(last, substr) {
		w.t.Fatalf("hartvault %s: stderr %q does not contain %q", strings.Join(args, " "), r.stderr, substr)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		w.t.Fatalf("hartvault %s printed a stack trace:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

type listed struct {
	ID          string    `json:"id"`
	Source      string    `json:"source"`
	Kind        string    `json:"kind"`
	Type        string    `json:"type"`
	Tag         string    `json:"tag"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"`
	Bytes       int64     `json:"bytes"`
	StoredBytes int64     `json:"stored_bytes"`
	Parent      *string   `json:"parent"`
	Objects     int       `json:"objects"`
}

func (w *world) list() []listed {
	w.t.Helper()
	r := w.ok("list", "--json")
	var out []listed
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		w.t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	return out
}

// entry is what a tree comparison looks at.
type entry struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time
	sum   string
	link  string
}

// snapshot records a tree: every entry's type and mode, size, content hash,
// modification time (files only) and symlink target.
func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: info.Mode()}
		switch {
		case info.Mode().IsRegular():
			e.size = info.Size()
			e.mtime = info.ModTime().Truncate(time.Microsecond)
			e.sum = fileSum(t, p)
		case info.Mode()&fs.ModeSymlink != 0:
			e.link, _ = os.Readlink(p)
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileSum(t *testing.T, p string) string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// sameTree fails unless got (a restored tree) equals want entry for entry.
func sameTree(t *testing.T, want, got map[string]entry) {
	t.Helper()
	for p, we := range want {
		ge, ok := got[p]
		if !ok {
			t.Errorf("restored tree lacks %s", p)
			continue
		}
		if p == "." {
			continue // the restore root itself
		}
		if we != ge {
			t.Errorf("%s differs:\n want %+v\n got  %+v", p, we, ge)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("restored tree has extra %s", p)
		}
	}
}

// isEmptyOrMissing reports whether dir holds nothing (or does not exist).
func isEmptyOrMissing(t *testing.T, dir string) bool {
	des, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return true
	}
	if err != nil {
		t.Fatal(err)
	}
	return len(des) == 0
}
