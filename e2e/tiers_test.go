package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTiersOnAzurite: each object is written to the tier of its backup type (or
// source kind), and a restore from archived objects goes through rehydration.
func TestTiersOnAzurite(t *testing.T) {
	az := backends(t)[1]
	if az.name != "azurite" {
		t.Fatal("the second backend should be Azurite")
	}
	assemblies, script := smallTree(t)
	w := newWorld(t, az, planOpts{paths: []string{assemblies, script}, extraRepo: "  tiers: { full: cool, diff: hot, log: hot }\n"})
	w.ok("init")
	full := w.ok("backup", "assemblies").lastLine()
	os.WriteFile(filepath.Join(assemblies, "System.Memory.dll"), []byte("v2"), 0o644)
	diff := w.ok("backup", "assemblies", "--type", "diff").lastLine()
	st := w.openStore()
	ctx := context.Background()
	for id, want := range map[string]string{full: "cool", diff: "hot"} {
		keys := w.keys("data/assemblies/" + id + "/")
		if len(keys) == 0 {
			t.Fatalf("no objects for %s", id)
		}
		for _, k := range keys {
			info, err := st.Stat(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if info.Tier != want {
				t.Errorf("%s is in tier %q, want %q", k, info.Tier, want)
			}
		}
	}

	// A source kind's tier wins over the type's: the file set goes to archive.
	a := newWorld(t, az, planOpts{paths: []string{assemblies, script}, extraRepo: "  tiers: { full: cool, files: archive }\n"})
	a.ok("init")
	id := a.ok("backup", "assemblies").lastLine()
	ast := a.openStore()
	for _, k := range a.keys("data/assemblies/" + id + "/") {
		if info, _ := ast.Stat(ctx, k); info.Tier != "archive" {
			t.Fatalf("%s is in tier %q, want archive", k, info.Tier)
		}
	}
	target := filepath.Join(t.TempDir(), "r")
	plan := a.ok("restore", "assemblies", "--target", target, "--plan")
	if !strings.Contains(plan.stdout, "in the archive tier") {
		t.Fatalf("--plan does not say objects are archived:\n%s", plan.stdout)
	}
	// Without --wait: rehydration starts and the restore stops with a clear line.
	r := a.fails(1, "being rehydrated from the archive tier", "restore", "assemblies", "--target", target)
	if !strings.Contains(r.stdout, "started rehydration") {
		t.Fatalf("rehydration was not started:\n%s", r.stdout)
	}
	if !isEmptyOrMissing(t, target) {
		t.Fatal("the target was touched before the data was online")
	}
	// Azurite rehydrates at once; --wait then restores.
	a.ok("restore", "assemblies", "--target", target, "--wait", "--wait-interval", "200ms")
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(target, "assemblies")))
	for _, k := range a.keys("data/assemblies/" + id + "/") {
		if info, _ := ast.Stat(ctx, k); info.Tier != "hot" {
			t.Fatalf("%s is in tier %q after rehydration, want hot", k, info.Tier)
		}
	}
}

// With replicas, objects bound for the archive tier are written to the default tier,
// copied to every replica (checked there, then archived there), and only then moved to
// the archive tier on the primary: an archived object cannot be read to copy it.
func TestArchiveTierWithReplicas(t *testing.T) {
	az := backends(t)[1]
	assemblies, script := smallTree(t)
	replica := fmt.Sprintf("azblob://hv-dr-%d", rand.Uint32())
	w := newWorld(t, az, planOpts{paths: []string{assemblies, script},
		extraRepo: "  tiers: { files: archive }\n  replicas: [\"" + replica + "\"]\n"})
	w.ok("init")
	id := w.ok("backup", "assemblies").lastLine()
	if l := w.ok("list", "--replica", "1"); !strings.Contains(l.stdout, id) {
		t.Fatalf("the replica lacks %s:\n%s", id, l.stdout)
	}
	ctx := context.Background()
	rw := &world{t: t, url: replica, env: w.env}
	for name, ww := range map[string]*world{"primary": w, "replica": rw} {
		st := ww.openStore()
		keys := ww.keys("data/assemblies/" + id + "/")
		if len(keys) == 0 {
			t.Fatalf("%s: no objects of %s", name, id)
		}
		for _, k := range keys {
			if info, err := st.Stat(ctx, k); err != nil || info.Tier != "archive" {
				t.Fatalf("%s: %s is in tier %q (%v), want archive", name, k, info.Tier, err)
			}
		}
	}
}

// TestReplicaFallback: with the primary (Azure Blob) unreachable, a restore reads
// from the replica; a replica can be verified, listed and restored from by name.
func TestReplicaFallback(t *testing.T) {
	az := backends(t)[1]
	assemblies, script := smallTree(t)
	rep := "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "dr-replica"))
	w := newWorld(t, az, planOpts{paths: []string{assemblies, script}, extraRepo: "  replicas: [\"" + rep + "\"]\n"})
	w.ok("init")
	id := w.ok("backup", "assemblies").lastLine()
	w.ok("verify", "--replica", "1")
	if l := w.ok("list", "--replica", "dr-replica"); !strings.Contains(l.stdout, id) {
		t.Fatalf("replica list lacks %s:\n%s", id, l.stdout)
	}
	dst := filepath.Join(t.TempDir(), "explicit")
	w.ok("restore", "assemblies", "--target", dst, "--from-replica", rep)
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(dst, "assemblies")))

	// The primary becomes unreachable: its endpoint now points at a closed port.
	good := w.env
	var broken []string
	for _, kv := range w.env {
		if strings.HasPrefix(kv, "AZURE_STORAGE_CONNECTION_STRING=") {
			kv = "AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
		}
		broken = append(broken, kv)
	}
	w.env = broken
	w.fails(1, "connection refused", "backup", "assemblies", "--force")
	dst2 := filepath.Join(t.TempDir(), "fallback")
	r := w.ok("restore", "assemblies", "--target", dst2)
	if !strings.Contains(r.stderr, "reading from replica "+rep) {
		t.Fatalf("no fallback warning:\n%s", r.stderr)
	}
	sameTree(t, expected(t, assemblies), snapshot(t, filepath.Join(dst2, "assemblies")))
	w.env = good
}
