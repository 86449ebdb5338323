package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// makeTree builds a file set like Hartonomous's: assemblies (one of 100 MB), a deploy
// script outside the folder, an empty file, an empty directory, a symlink, varied
// modes and unicode names, and a file the plan excludes.
func makeTree(t *testing.T, root string, bigSize int) (assemblies, script string) {
	t.Helper()
	rng := rand.New(rand.NewChaCha8([32]byte{1, 2, 3}))
	assemblies = filepath.Join(root, "assemblies")
	script = filepath.Join(root, "scripts", "deploy-clr.sql")
	mk := func(p string, size int, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size)
		for i := 0; i < size; i += 8192 {
			// Alternate random and repetitive blocks: partly compressible, like binaries.
			end := min(i+8192, size)
			if (i/8192)%3 == 0 {
				for j := i; j < end; j++ {
					b[j] = byte(j % 61)
				}
			} else {
				for j := i; j < end; j += 8 {
					v := rng.Uint64()
					for k := 0; k < 8 && j+k < end; k++ {
						b[j+k] = byte(v >> (8 * k))
					}
				}
			}
		}
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	mk(filepath.Join(assemblies, "Hartonomous.Clr.dll"), 2<<20+123, 0o644)
	mk(filepath.Join(assemblies, "System.Numerics.Tensors.dll"), 1<<20, 0o644)
	mk(filepath.Join(assemblies, "System.Memory.dll"), 500_000, 0o444)
	mk(filepath.Join(assemblies, "models", "weights.bin"), bigSize, 0o640)
	mk(filepath.Join(assemblies, "empty.txt"), 0, 0o600)
	mk(filepath.Join(assemblies, "tools", "run.sh"), 300, 0o755)
	mk(filepath.Join(assemblies, "docs", "ünïcødé файл 日本語.txt"), 4000, 0o644)
	mk(filepath.Join(assemblies, "scratch.tmp"), 1000, 0o644) // excluded by the plan
	mk(script, 7000, 0o644)
	if err := os.MkdirAll(filepath.Join(assemblies, "empty-dir"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("Hartonomous.Clr.dll", filepath.Join(assemblies, "current.dll")); err != nil {
		t.Fatal(err)
	}
	// Times in the past with sub-second parts, so restored times are really restored.
	base := time.Date(2025, 11, 19, 14, 30, 0, 123456789, time.UTC)
	i := 0
	filepath.WalkDir(assemblies, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			i++
			os.Chtimes(p, base.Add(time.Duration(i)*time.Hour), base.Add(time.Duration(i)*time.Hour))
		}
		return nil
	})
	return assemblies, script
}

// expected is the snapshot a restore of the plan's paths must reproduce.
func expected(t *testing.T, assemblies string) map[string]entry {
	want := snapshot(t, assemblies)
	delete(want, "scratch.tmp")
	return want
}

func TestFileSetBackupAndRestore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			src := t.TempDir()
			assemblies, script := makeTree(t, src, 100<<20)
			w := newWorld(t, b, planOpts{paths: []string{assemblies, script}, exclude: []string{"*.tmp"}})
			w.ok("init")
			w.fails(1, "already exists", "init")

			r1 := w.ok("backup", "assemblies", "--tag", "v1.0.0")
			id1 := r1.lastLine()
			want1 := expected(t, assemblies)
			script1 := fileSum(t, script)

			// Unchanged: no new backup, exit 0, and it says so.
			r := w.ok("backup", "assemblies")
			if !strings.Contains(r.stdout, "unchanged") {
				t.Fatalf("unchanged tree: %q", r.stdout)
			}
			// A new modification time alone is not a change of content.
			now := time.Now()
			os.Chtimes(filepath.Join(assemblies, "System.Memory.dll"), now, now)
			r = w.ok("backup", "assemblies")
			if !strings.Contains(r.stdout, "unchanged") {
				t.Fatalf("touched but unchanged tree: %q", r.stdout)
			}
			if got := w.list(); len(got) != 1 {
				t.Fatalf("after unchanged runs: %d backups, want 1", len(got))
			}
			between := time.Now()
			time.Sleep(20 * time.Millisecond)

			// Change one file, back up again.
			f := filepath.Join(assemblies, "Hartonomous.Clr.dll")
			b2 := []byte(strings.Repeat("v2 of the CLR assembly ", 5000))
			if err := os.WriteFile(f, b2, 0o644); err != nil {
				t.Fatal(err)
			}
			id2 := w.ok("backup", "assemblies", "--tag", "v1.0.1").lastLine()
			want2 := expected(t, assemblies)
			// A tag names one backup: taking it again is refused, before anything is stored.
			w.fails(1, `tag "v1.0.1" is already used by a backup of assemblies`, "backup", "assemblies", "--force", "--tag", "v1.0.1")

			// Then a differential that stores only what changed since the full.
			os.WriteFile(filepath.Join(assemblies, "docs", "notes.txt"), []byte("added after v1.0.1\n"), 0o644)
			id3 := w.ok("backup", "assemblies", "--type", "diff").lastLine()
			want3 := expected(t, assemblies)

			list := w.list()
			if len(list) != 3 || list[0].ID != id1 || list[1].ID != id2 || list[2].ID != id3 {
				t.Fatalf("list: %+v, want %s %s %s", list, id1, id2, id3)
			}
			if list[0].Tag != "v1.0.0" || list[0].Kind != "files" || list[0].Type != "full" || list[0].Parent != nil {
				t.Fatalf("first backup listed as %+v", list[0])
			}
			if list[2].Type != "diff" || list[2].Parent == nil || *list[2].Parent != id2 {
				t.Fatalf("diff listed as %+v, want parent %s", list[2], id2)
			}
			if list[0].Bytes < 100<<20 || list[0].StoredBytes <= 0 || list[0].StoredBytes >= list[0].Bytes {
				t.Fatalf("full: bytes %d stored %d", list[0].Bytes, list[0].StoredBytes)
			}
			if list[2].StoredBytes > 64<<10 {
				t.Fatalf("diff stored %d bytes for one small new file", list[2].StoredBytes)
			}
			// 100 MB at 256 MiB volumes: a handful of objects, not one per file.
			if list[0].Objects > 4 {
				t.Fatalf("full backup made %d objects", list[0].Objects)
			}

			// Each version restores exactly.
			for _, c := range []struct {
				sel  []string
				want map[string]entry
				sum  string
			}{
				{[]string{"--backup", id1}, want1, script1},
				{[]string{"--backup", "v1.0.0"}, want1, script1},
				{[]string{"--to", between.Format(time.RFC3339Nano)}, want1, script1},
				{[]string{"--backup", id2}, want2, ""},
				{[]string{"--backup", id3}, want3, ""},
				{[]string{"--to", "latest"}, want3, ""},
			} {
				dst := filepath.Join(t.TempDir(), "restore")
				w.ok(append([]string{"restore", "assemblies", "--target", dst}, c.sel...)...)
				sameTree(t, c.want, snapshot(t, filepath.Join(dst, "assemblies")))
				if c.sum != "" && fileSum(t, filepath.Join(dst, "deploy-clr.sql")) != c.sum {
					t.Errorf("%v: deploy-clr.sql differs", c.sel)
				}
			}
			w.ok("verify")
		})
	}
}
