package mssql

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/engine/mssql/clr"
	"github.com/hartonomous/hartvault/internal/plan"
)

func hartonomousCLR(t *testing.T) clr.Export {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "clr", "hartonomous.json"))
	if err != nil {
		t.Fatal(err)
	}
	var x clr.Export
	if err := json.Unmarshal(raw, &x); err != nil {
		t.Fatal(err)
	}
	return x
}

func TestCLRExportAndRestore(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) { s.CLR = true })
	te.fake.addDB("Hartonomous", "FULL")
	te.fake.clr["hartonomous"] = hartonomousCLR(t)

	first, info := te.mustBackup("full")
	if len(info.CLR) != 1 {
		t.Fatalf("clr %+v", info.CLR)
	}
	ex := info.CLR[0]
	wantPaths := []string{"Hartonomous/clr/System.Memory.dll", "Hartonomous/clr/System.Numerics.Tensors.dll", "Hartonomous/clr/Hartonomous.Clr.dll",
		"Hartonomous/clr/Hartonomous.Clr.Hartonomous.Clr.pdb", "Hartonomous/clr/deploy-clr.sql"}
	if ex.Holder != "" || !slices.Equal(ex.Paths, wantPaths) || !slices.Equal(ex.Assemblies, []string{"System.Memory", "System.Numerics.Tensors", "Hartonomous.Clr"}) {
		t.Errorf("export %+v", ex)
	}
	if len(first.Files) != 6 {
		t.Errorf("%d files in the first backup", len(first.Files))
	}

	// Unchanged: the next backup refers to the first one's files.
	te.fake.work(time.Hour, 1)
	m, info := te.mustBackup("log")
	if info.CLR[0].Holder != first.ID || len(m.Files) != 1 {
		t.Errorf("unchanged export: holder %q, %d files", info.CLR[0].Holder, len(m.Files))
	}

	// A new build of Hartonomous.Clr is stored again.
	x := hartonomousCLR(t)
	for i := range x.Assemblies {
		if x.Assemblies[i].Name == "Hartonomous.Clr" {
			x.Assemblies[i].Files[0].Content = append(x.Assemblies[i].Files[0].Content, "v1.4.3"...)
		}
	}
	te.fake.clr["hartonomous"] = x
	te.fake.work(time.Hour, 1)
	changed, info := te.mustBackup("log")
	if info.CLR[0].Holder != "" || info.CLR[0].SHA256 == ex.SHA256 || len(changed.Files) != 6 {
		t.Errorf("changed export: %+v", info.CLR[0])
	}

	// Restore the export as of the first backup: the script is the golden one.
	dir := filepath.Join(t.TempDir(), "clr")
	p, err := te.restore(engine.RestoreRequest{Target: dir, BackupID: m.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Backups) != 1 || p.Backups[0].ID != first.ID || !strings.Contains(p.Steps[0], "write 5 files") {
		t.Errorf("plan %v %q", p.Backups, p.Steps)
	}
	got, err := os.ReadFile(filepath.Join(dir, "Hartonomous", ScriptName))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "golden", "clr-hartonomous.sql"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("restored script differs from testdata/golden/clr-hartonomous.sql")
	}
	dll, err := os.ReadFile(filepath.Join(dir, "Hartonomous", "Hartonomous.Clr.dll"))
	if err != nil || string(dll) != string(hartonomousCLR(t).Assemblies[0].Files[0].Content) {
		t.Errorf("restored dll: %v", err)
	}

	// The latest export, applied to another database.
	dir2 := filepath.Join(t.TempDir(), "clr")
	p, err = te.restore(engine.RestoreRequest{Target: dir2, Apply: true, As: "Hartonomous_Test"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Backups[0].ID != changed.ID || !strings.Contains(p.Steps[len(p.Steps)-1], "-- apply deploy-clr.sql to database [Hartonomous_Test]: drop and create again assemblies System.Memory, System.Numerics.Tensors, Hartonomous.Clr") {
		t.Errorf("plan %q", p.Steps)
	}
	script, _ := os.ReadFile(filepath.Join(dir2, "Hartonomous", ScriptName))
	if got, want := te.fake.applied["Hartonomous_Test"], clr.Batches(string(script)); !slices.Equal(got, want) || len(got) < 10 {
		t.Errorf("applied %d batches, want %d", len(got), len(want))
	}
	if !strings.Contains(string(script), "76312E342E33") { // "v1.4.3" in hex
		t.Error("the latest export lacks the new build")
	}

	// A failing script is reported; the files stay restored.
	te.fake.failWhen("CREATE ASSEMBLY [Hartonomous.Clr]", errorString("mssql: CREATE ASSEMBLY failed because it could not open the physical file (6501)"))
	dir3 := filepath.Join(t.TempDir(), "clr")
	_, err = te.restore(engine.RestoreRequest{Target: dir3, Apply: true})
	if err == nil || !strings.Contains(err.Error(), "apply deploy-clr.sql to Hartonomous") || !strings.Contains(err.Error(), "(6501)") {
		t.Errorf("apply failure: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir3, "Hartonomous", ScriptName)); err != nil {
		t.Errorf("files after a failed apply: %v", err)
	}
	// A non-empty target needs --force.
	if _, err := te.restore(engine.RestoreRequest{Target: dir}); err == nil {
		t.Error("restored into a non-empty directory without --force")
	}
	if _, err := te.plan(engine.RestoreRequest{As: "x", Apply: true}); err == nil || !strings.Contains(err.Error(), "--apply deploys a CLR export: give --target DIR") {
		t.Errorf("apply without target: %v", err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestCLRAssembliesFilter(t *testing.T) {
	t.Parallel()
	te := newTestEnv(t, func(s *plan.Source) { s.CLR = true; s.CLRAssemblies = []string{"System.Numerics.Tensors"} })
	te.fake.addDB("Hartonomous", "FULL")
	te.fake.clr["hartonomous"] = hartonomousCLR(t)
	_, info := te.mustBackup("full")
	if got := info.CLR[0].Assemblies; !slices.Equal(got, []string{"System.Memory", "System.Numerics.Tensors"}) {
		t.Errorf("assemblies %v (the filter keeps what they reference)", got)
	}
	te.src.CLRAssemblies = []string{"Nope"}
	if _, err := te.backup("full"); err == nil || !strings.Contains(err.Error(), "clr_assemblies: no user assembly Nope") {
		t.Errorf("unknown assembly: %v", err)
	}
	// A database without assemblies exports nothing.
	te.src.CLRAssemblies = nil
	delete(te.fake.clr, "hartonomous")
	if _, info := te.mustBackup("full"); len(info.CLR) != 0 {
		t.Errorf("export of nothing: %+v", info.CLR)
	}
}
