package clr

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under ../testdata/golden")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs (run go test -update if the change is intended):\n%s", path, got)
	}
}

func fixture(t *testing.T) Export {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "clr", "hartonomous.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e Export
	if err := json.Unmarshal(raw, &e); err != nil {
		t.Fatal(err)
	}
	for i := range e.Assemblies {
		ps, err := PermissionSet(e.Assemblies[i].PermissionSet)
		if err != nil {
			t.Fatal(err)
		}
		e.Assemblies[i].PermissionSet = ps
	}
	return e
}

func names(asms []Assembly) []string {
	var out []string
	for _, a := range asms {
		out = append(out, a.Name)
	}
	return out
}

func TestHartonomousOrder(t *testing.T) {
	e := fixture(t)
	got, err := Order(e.Assemblies)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"System.Memory", "System.Numerics.Tensors", "Hartonomous.Clr"}; !slices.Equal(names(got), want) {
		t.Errorf("order %v, want %v", names(got), want)
	}
}

func TestGoldenHartonomousScript(t *testing.T) {
	s, err := Script(fixture(t))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "clr-hartonomous.sql", s)
	// The script creates in dependency order and drops in the reverse.
	pos := func(sub string) int {
		i := strings.Index(s, sub)
		if i < 0 {
			t.Fatalf("script lacks %q", sub)
		}
		return i
	}
	if !(pos("CREATE ASSEMBLY [System.Memory]") < pos("CREATE ASSEMBLY [System.Numerics.Tensors]") && pos("CREATE ASSEMBLY [System.Numerics.Tensors]") < pos("CREATE ASSEMBLY [Hartonomous.Clr]")) {
		t.Error("creates out of order")
	}
	if !(pos("DROP ASSEMBLY [Hartonomous.Clr]") < pos("DROP ASSEMBLY [System.Numerics.Tensors]") && pos("DROP ASSEMBLY [System.Numerics.Tensors]") < pos("DROP ASSEMBLY [System.Memory]")) {
		t.Error("drops out of order")
	}
	if !(pos("DROP FUNCTION [dbo].[CosineSimilarity]") < pos("DROP TYPE [dbo].[Vector]") && pos("DROP TYPE [dbo].[Vector]") < pos("DROP ASSEMBLY [Hartonomous.Clr]")) {
		t.Error("objects must go before their type and assembly")
	}
	if !(pos("CREATE TYPE [dbo].[Vector]") < pos("CREATE AGGREGATE [dbo].[VectorCentroid]")) {
		t.Error("the type must exist before the aggregate that uses it")
	}
	bs := Batches(s)
	if bs[0] != "-- hartvault: CLR deploy script exported from database [Hartonomous]\n-- assemblies in dependency order: System.Memory, System.Numerics.Tensors, Hartonomous.Clr\n-- Run it in the target database (hartvault restore --apply does). It drops the objects and\n-- assemblies below and creates them again, in one transaction: on any error nothing changes.\n-- not recreated: trigger dbo.AuditVectors (CLR DML trigger)\nSET XACT_ABORT ON;" {
		t.Errorf("first batch %q", bs[0])
	}
	if bs[len(bs)-1] != "COMMIT TRANSACTION;" {
		t.Errorf("last batch %q", bs[len(bs)-1])
	}
	for _, b := range bs {
		if strings.Count(b, "CREATE ") > 1 {
			t.Errorf("batch holds more than one CREATE: %q", b)
		}
	}
}

func TestOrderErrors(t *testing.T) {
	a := func(n string, refs ...string) Assembly { return Assembly{Name: n, References: refs} }
	if _, err := Order([]Assembly{a("A", "B"), a("B", "C"), a("C", "A"), a("D")}); err == nil || !strings.Contains(err.Error(), "cycle: A, B, C") {
		t.Errorf("cycle: %v", err)
	}
	if _, err := Order([]Assembly{a("A", "Missing")}); err == nil || !strings.Contains(err.Error(), "A references Missing") {
		t.Errorf("unknown: %v", err)
	}
	if _, err := Order([]Assembly{a("A"), a("a")}); err == nil {
		t.Error("duplicate accepted")
	}
	got, err := Order([]Assembly{a("Z"), a("Y", "Z"), a("B"), a("A", "Y")})
	if err != nil || !slices.Equal(names(got), []string{"B", "Z", "Y", "A"}) {
		t.Errorf("order %v %v", names(got), err)
	}
}

func TestClosure(t *testing.T) {
	e := fixture(t)
	got, err := Closure(e.Assemblies, []string{"hartonomous.clr"})
	if err != nil || len(got) != 3 {
		t.Errorf("closure of Hartonomous.Clr: %v %v", names(got), err)
	}
	got, err = Closure(e.Assemblies, []string{"System.Numerics.Tensors"})
	if err != nil || !slices.Equal(names(got), []string{"System.Numerics.Tensors", "System.Memory"}) {
		t.Errorf("closure of Tensors: %v %v", names(got), err)
	}
	if _, err := Closure(e.Assemblies, []string{"Nope"}); err == nil || !strings.Contains(err.Error(), "no user assembly Nope") {
		t.Errorf("unknown: %v", err)
	}
}

func TestScriptRefusals(t *testing.T) {
	base := fixture(t)
	for name, mut := range map[string]func(*Export){
		"no bits":        func(e *Export) { e.Assemblies[0].Files = nil },
		"bad permission": func(e *Export) { e.Assemblies[0].PermissionSet = "ROOT" },
		"line break": func(e *Export) {
			e.Assemblies[2].Name = "x\nGO\nDROP DATABASE y"
			e.Assemblies[1].References = nil
			e.Assemblies[0].References = []string{"System.Numerics.Tensors"}
		},
		"unbound module": func(e *Export) { e.Modules[0].Assembly = "Other" },
		"unbound type":   func(e *Export) { e.Types[0].Assembly = "Other" },
		"trigger":        func(e *Export) { e.Modules[0].Kind = Trigger },
		"no return":      func(e *Export) { e.Modules[0].Returns = "" },
	} {
		e := fixture(t)
		_ = base
		mut(&e)
		if _, err := Script(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFormatType(t *testing.T) {
	for _, c := range []struct {
		name            string
		ml, prec, scale int
		schema, want    string
	}{
		{"nvarchar", -1, 0, 0, "", "nvarchar(max)"},
		{"nvarchar", 256, 0, 0, "", "nvarchar(128)"},
		{"nchar", 20, 0, 0, "", "nchar(10)"},
		{"varbinary", -1, 0, 0, "", "varbinary(max)"},
		{"varchar", 50, 0, 0, "", "varchar(50)"},
		{"decimal", 9, 18, 4, "", "decimal(18, 4)"},
		{"datetime2", 8, 27, 7, "", "datetime2(7)"},
		{"int", 4, 10, 0, "", "int"},
		{"float", 8, 53, 0, "", "float"},
		{"Vector", -1, 0, 0, "dbo", "[dbo].[Vector]"},
		{"we]ird", 8, 0, 0, "s", "[s].[we]]ird]"},
	} {
		if got := FormatType(c.name, c.ml, c.prec, c.scale, c.schema); got != c.want {
			t.Errorf("FormatType(%s, %d) = %s, want %s", c.name, c.ml, got, c.want)
		}
	}
	for in, want := range map[string]string{"SAFE_ACCESS": "SAFE", "EXTERNAL_ACCESS": "EXTERNAL_ACCESS", "UNSAFE_ACCESS": "UNSAFE", "unsafe": "UNSAFE"} {
		if got, err := PermissionSet(in); err != nil || got != want {
			t.Errorf("PermissionSet(%s) = %s %v", in, got, err)
		}
	}
}

func TestBatches(t *testing.T) {
	got := Batches("SELECT 1;\nGO\n\n  go  \n-- only a comment\nGO\r\nSELECT 'GO';\nSELECT 2\nGO")
	if want := []string{"SELECT 1;", "SELECT 'GO';\nSELECT 2"}; !slices.Equal(got, want) {
		t.Errorf("Batches = %q", got)
	}
}
