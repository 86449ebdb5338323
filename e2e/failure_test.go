package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/hartonomous/hartvault/internal/storage"
)

// openStore opens the world's repository storage in the test process.
func (w *world) openStore() *storage.Store {
	w.t.Helper()
	for _, kv := range w.env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AZURE_") {
			w.t.Setenv(k, v)
		}
	}
	st, err := storage.Open(context.Background(), w.url, storage.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { st.Close() })
	return st
}

func (w *world) keys(prefix string) []string {
	w.t.Helper()
	var keys []string
	if err := w.openStore().List(context.Background(), prefix, func(o storage.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		w.t.Fatal(err)
	}
	return keys
}

// flipByte damages one byte in the middle of a stored object.
func (w *world) flipByte(key string) {
	w.t.Helper()
	st := w.openStore()
	ctx := context.Background()
	b, err := st.ReadAll(ctx, key)
	if err != nil {
		w.t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := st.Put(ctx, key, b, storage.PutOptions{}); err != nil {
		w.t.Fatal(err)
	}
}

func smallTree(t *testing.T) (string, string) {
	src := t.TempDir()
	return makeTree(t, src, 3<<20)
}

func TestDamageIsFoundAndRestoreLeavesTargetAlone(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			assemblies, script := smallTree(t)
			w := newWorld(t, b, planOpts{paths: []string{assemblies, script}, exclude: []string{"*.tmp"}})
			w.ok("init")
			good := w.ok("backup", "assemblies").lastLine()
			os.WriteFile(filepath.Join(assemblies, "System.Memory.dll"), []byte("changed"), 0o644)
			bad := w.ok("backup", "assemblies").lastLine()
			w.ok("verify")

			vols := w.keys("data/assemblies/" + bad + "/")
			if len(vols) == 0 {
				t.Fatal("no volumes stored")
			}
			w.flipByte(vols[0])

			r := w.fails(1, "1 of 2 backups are damaged", "verify")
			wantLine := fmt.Sprintf("DAMAGED  assemblies %s: object %s", bad, vols[0])
			if !strings.Contains(r.stdout, wantLine) || strings.Contains(r.stdout, "DAMAGED  assemblies "+good) {
				t.Fatalf("verify output does not name exactly the damaged backup and object:\n%s", r.stdout)
			}
			w.ok("verify", "assemblies", "--backup", good)
			w.fails(1, "damaged", "verify", "assemblies", "--backup", bad)
			rj := w.run("verify", "--json")
			if rj.code != 1 || !strings.Contains(rj.stdout, `"object": "`+vols[0]+`"`) {
				t.Fatalf("verify --json: exit %d\n%s", rj.code, rj.stdout)
			}

			// Restoring the damaged backup fails clearly and leaves the target as found:
			// a missing directory stays missing, an empty one stays empty.
			missing := filepath.Join(t.TempDir(), "not-there")
			w.fails(1, "damaged", "restore", "assemblies", "--backup", bad, "--target", missing)
			if _, err := os.Stat(missing); !os.IsNotExist(err) {
				t.Fatalf("failed restore left %s behind", missing)
			}
			empty := t.TempDir()
			w.fails(1, vols[0], "restore", "assemblies", "--backup", bad, "--target", empty)
			if !isEmptyOrMissing(t, empty) {
				t.Fatalf("failed restore left files in %s", empty)
			}
			// The intact backup still restores.
			w.ok("restore", "assemblies", "--backup", good, "--target", filepath.Join(t.TempDir(), "ok"))
		})
	}
}

func TestUserErrors(t *testing.T) {
	b := backends(t)[0]
	assemblies, script := smallTree(t)
	w := newWorld(t, b, planOpts{paths: []string{assemblies, script}})

	w.fails(1, "no repository at", "list")
	w.fails(1, "no repository at", "backup", "assemblies")
	w.ok("init")
	w.ok("backup", "assemblies")

	good := w.env
	w.env = []string{"HARTVAULT_PASSPHRASE=not the passphrase"}
	w.fails(1, "wrong passphrase", "list")
	w.fails(1, "wrong passphrase", "restore", "assemblies", "--target", filepath.Join(t.TempDir(), "x"))
	w.env = []string{"HARTVAULT_PASSPHRASE="}
	w.fails(1, "HARTVAULT_PASSPHRASE", "list")
	w.env = good

	w.fails(2, `no source "nope"`, "backup", "nope")
	w.fails(2, "unknown flag", "backup", "assemblies", "--nope")
	w.fails(2, "--type", "backup", "assemblies", "--type", "incremental")
	w.fails(1, "not log", "backup", "assemblies", "--type", "log")
	w.fails(2, "cannot read time", "restore", "assemblies", "--target", t.TempDir(), "--to", "yesterday-ish")
	w.fails(2, "unknown command", "frobnicate")

	// Restore into a non-empty directory is refused and leaves it alone.
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "keep.txt"), []byte("mine"), 0o644)
	w.fails(1, "not empty", "restore", "assemblies", "--target", busy)
	if b, _ := os.ReadFile(filepath.Join(busy, "keep.txt")); string(b) != "mine" {
		t.Fatal("refused restore touched the target")
	}
	w.ok("restore", "assemblies", "--target", busy, "--force")
	if b, _ := os.ReadFile(filepath.Join(busy, "keep.txt")); string(b) != "mine" {
		t.Fatal("--force removed an entry the backup does not hold")
	}

	// Plan-file mistakes name the file, line and field, with exit code 2.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("repository:\n  url: file:///tmp/x\n  compresion: zstd\n  passphrase_env: P\n"), 0o644)
	r := w.run("--config", bad, "list")
	if r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:3: repository.compresion") {
		t.Fatalf("bad YAML: exit %d, stderr %q", r.code, r.stderr)
	}
	os.WriteFile(bad, []byte("repository:\n  url: file:///tmp/x\n  passphrase_env: P\nsources:\n  - name: a\n    kind: files\n    paths: /x\n"), 0o644)
	r = w.run("--config", bad, "list")
	if r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:7: sources[0].paths") {
		t.Fatalf("bad type: exit %d, stderr %q", r.code, r.stderr)
	}
	r = w.run("--config", filepath.Join(t.TempDir(), "missing.yaml"), "list")
	if r.code != 2 || !strings.Contains(r.stderr, "missing.yaml") {
		t.Fatalf("missing plan: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, out := range []string{r.stderr} {
		if strings.Count(strings.TrimSpace(out), "\n") > 0 {
			t.Fatalf("error is not one line: %q", out)
		}
	}
}

// TestKillMidBackup kills backups at several moments: no partial backup becomes
// visible, the repository verifies, and the next backup succeeds.
func TestKillMidBackup(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			src := t.TempDir()
			for i := 0; i < 40; i++ {
				p := filepath.Join(src, "data", fmt.Sprintf("f%02d.bin", i))
				os.MkdirAll(filepath.Dir(p), 0o755)
				buf := make([]byte, 3<<20)
				rng := rand.New(rand.NewPCG(uint64(i), 7))
				for j := range buf {
					buf[j] = byte(rng.Uint32())
				}
				os.WriteFile(p, buf, 0o644)
			}
			w := newWorld(t, b, planOpts{paths: []string{filepath.Join(src, "data")}, extraRepo: "  volume_size: 4MiB\n"})
			w.ok("init")
			spool := t.TempDir()
			rng := rand.New(rand.NewPCG(42, 42))
			committed := 0
			for round, delay := range []time.Duration{0, 50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond,
				time.Duration(rng.IntN(1000)) * time.Millisecond, time.Duration(rng.IntN(2000)) * time.Millisecond} {
				c := w.cmd("backup", "assemblies", "--force")
				c.Env = append(c.Env, "TMPDIR="+spool) // where uploads to object stores are spooled
				var out bytes.Buffer
				c.Stdout = &out
				if err := c.Start(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(delay)
				c.Process.Signal(syscall.SIGKILL)
				c.Wait()
				list := w.list()
				finished := strings.Contains(out.String(), "full backup of")
				switch {
				case len(list) == committed+1 && finished:
					committed++ // it completed before the kill: fine, it must verify
				case len(list) != committed:
					t.Fatalf("round %d (kill after %v): %d backups visible, want %d\n%s", round, delay, len(list), committed, out.String())
				}
				w.ok("verify")
				// A killed upload leaves no spool file behind.
				if des, _ := os.ReadDir(spool); len(des) > 0 {
					t.Fatalf("round %d: the killed backup left %d files in its temp dir, %s first", round, len(des), des[0].Name())
				}
			}
			// The next backup takes over the dead run's lock, cleans its leftovers, succeeds.
			r := w.ok("backup", "assemblies", "--force")
			id := r.lastLine()
			list := w.list()
			if len(list) != committed+1 || list[len(list)-1].ID != id {
				t.Fatalf("after the kills: %d backups, last %v; want %d ending %s", len(list), list, committed+1, id)
			}
			w.ok("verify")
			// No data remains of the interrupted runs.
			dirs := map[string]bool{}
			for _, k := range w.keys("data/assemblies/") {
				dirs[strings.Split(k, "/")[2]] = true
			}
			if len(dirs) != len(list) {
				t.Fatalf("data of %d backups stored, %d committed: leftovers were not removed", len(dirs), len(list))
			}
			dst := filepath.Join(t.TempDir(), "r")
			w.ok("restore", "assemblies", "--target", dst)
			sameTree(t, snapshot(t, filepath.Join(src, "data")), snapshot(t, filepath.Join(dst, "data")))
		})
	}
}

// TestConcurrentBackupsOfOneSource runs two backups of one source at once: one waits
// or fails with the lock message, and neither corrupts anything.
func TestConcurrentBackupsOfOneSource(t *testing.T) {
	b := backends(t)[0]
	src := t.TempDir()
	assemblies, script := makeTree(t, src, 150<<20)
	w := newWorld(t, b, planOpts{paths: []string{assemblies, script}})
	w.ok("init")
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = w.run("backup", "assemblies", "--force")
		}()
	}
	wg.Wait()
	ok := 0
	for _, r := range results {
		switch {
		case r.code == 0:
			ok++
		case r.code == 1 && strings.Contains(r.stderr, "is locked by") && strings.Contains(r.stderr, "pid"):
		default:
			t.Fatalf("concurrent backup: exit %d\n%s", r.code, r.stderr)
		}
	}
	if ok == 0 {
		t.Fatal("neither concurrent backup succeeded")
	}
	if n := len(w.list()); n != ok {
		t.Fatalf("%d backups succeeded but %d are listed", ok, n)
	}
	w.ok("verify")
}

func TestReplicas(t *testing.T) {
	b := backends(t)[0]
	assemblies, script := smallTree(t)
	base := t.TempDir()
	rep1 := "file://" + filepath.ToSlash(filepath.Join(base, "replica1"))
	w := newWorld(t, b, planOpts{paths: []string{assemblies, script}, extraRepo: fmt.Sprintf("  replicas: [%q]\n", rep1)})
	r := w.ok("init")
	if !strings.Contains(r.stdout, "replica") {
		t.Fatalf("init did not mention the replica: %s", r.stdout)
	}
	id1 := w.ok("backup", "assemblies").lastLine()

	// A second replica that cannot be written: the backup succeeds, warns, and the
	// replica is caught up once it can be.
	blocker := filepath.Join(base, "blocker")
	os.WriteFile(blocker, []byte("a file where a directory should be"), 0o644)
	rep2 := "file://" + filepath.ToSlash(filepath.Join(blocker, "replica2"))
	w.writePlan(planOpts{paths: []string{assemblies, script}, extraRepo: fmt.Sprintf("  replicas: [%q, %q]\n", rep1, rep2)})
	r = w.ok("backup", "assemblies", "--force")
	id2 := r.lastLine()
	if !strings.Contains(r.stderr, "replica "+rep2+" is behind") {
		t.Fatalf("failed replica not reported: %q", r.stderr)
	}
	os.Remove(blocker)
	r = w.ok("backup", "assemblies", "--force")
	id3 := r.lastLine()
	if !strings.Contains(r.stdout, "replica "+rep2+": copied 3 backups") {
		t.Fatalf("replica not caught up: %s", r.stdout)
	}

	// Each replica is a complete repository: list and restore from it directly.
	for _, rep := range []string{rep1, rep2} {
		rw := newWorld(t, b, planOpts{url: rep, paths: []string{assemblies, script}})
		got := rw.list()
		if len(got) != 3 || got[0].ID != id1 || got[1].ID != id2 || got[2].ID != id3 {
			t.Fatalf("replica %s lists %+v", rep, got)
		}
		rw.ok("verify")
		dst := filepath.Join(t.TempDir(), "r")
		rw.ok("restore", "assemblies", "--target", dst)
		want := expected(t, assemblies)
		sameTree(t, want, snapshot(t, filepath.Join(dst, "assemblies")))
	}
}

func TestRecipientsAndNoEncryption(t *testing.T) {
	b := backends(t)[0]
	assemblies, script := smallTree(t)
	id, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	dir := t.TempDir()
	idFile := filepath.Join(dir, "restore.key")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	otherFile := filepath.Join(dir, "other.key")
	os.WriteFile(otherFile, []byte(other.String()+"\n"), 0o600)

	// The backup host holds only the public key.
	keys := fmt.Sprintf("  recipients: [%q]\n", id.Recipient().String())
	w := newWorld(t, b, planOpts{paths: []string{assemblies, script}, keys: keys})
	w.env = nil
	w.ok("init")
	w.ok("backup", "assemblies")
	w.ok("list")
	w.ok("verify")
	target := filepath.Join(t.TempDir(), "r")
	w.fails(1, "no decryption key", "restore", "assemblies", "--target", target)
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatal("a restore without the key created its target")
	}
	w.writePlan(planOpts{paths: []string{assemblies, script}, keys: keys + fmt.Sprintf("  identity_file: %q\n", otherFile)})
	w.fails(1, "does not match", "restore", "assemblies", "--target", target)
	w.writePlan(planOpts{paths: []string{assemblies, script}, keys: keys + fmt.Sprintf("  identity_file: %q\n", idFile)})
	w.ok("restore", "assemblies", "--target", target)
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(target, "assemblies")))

	// Objects are age files; the secret key is nowhere in the repository.
	for _, k := range w.keys("") {
		raw, err := w.openStore().ReadAll(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte(id.String())) {
			t.Fatalf("%s holds the secret key", k)
		}
		if strings.HasSuffix(k, ".vol") && !bytes.HasPrefix(raw, []byte("age-encryption.org/v1")) {
			t.Fatalf("%s is not encrypted", k)
		}
	}

	// encryption: none is explicit, and then objects are plain zstd.
	w2 := newWorld(t, b, planOpts{paths: []string{assemblies, script}, keys: "  encryption: none\n"})
	w2.ok("init")
	w2.ok("backup", "assemblies")
	for _, k := range w2.keys("data/") {
		raw, _ := w2.openStore().ReadAll(context.Background(), k)
		if !bytes.HasPrefix(raw, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
			t.Fatalf("%s is not a zstd stream", k)
		}
	}
	dst := filepath.Join(t.TempDir(), "r2")
	w2.ok("restore", "assemblies", "--target", dst)
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(dst, "assemblies")))
	// A plan that brings a key to an unencrypted repository is told so.
	w2.writePlan(planOpts{paths: []string{assemblies, script}})
	w2.fails(1, "not encrypted", "list")
}
