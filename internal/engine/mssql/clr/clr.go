// Package clr turns the CLR assemblies of a SQL Server database, as read from
// sys.assemblies, sys.assembly_files, sys.assembly_references and sys.assembly_modules,
// into a deploy script: CREATE ASSEMBLY with the permission set, in dependency order,
// then the CREATE TYPE / FUNCTION / PROCEDURE / AGGREGATE that bind to them. It is pure:
// the engine reads the catalog, this package writes and splits scripts.
package clr

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/hartonomous/hartvault/internal/engine/mssql/tsql"
)

// File is one file of an assembly (sys.assembly_files): file_id 1 is the assembly
// itself, others are added files such as debug symbols.
type File struct {
	FileID  int    `json:"file_id"`
	Name    string `json:"name"`
	Content []byte `json:"content"`
}

// Assembly is one user assembly.
type Assembly struct {
	Name          string   `json:"name"`
	Owner         string   `json:"owner,omitempty"`      // AUTHORIZATION; "" for dbo
	PermissionSet string   `json:"permission_set"`       // SAFE, EXTERNAL_ACCESS or UNSAFE
	CLRName       string   `json:"clr_name,omitempty"`   // strong name, for the header
	Visible       bool     `json:"is_visible"`           // false: VISIBILITY = OFF
	Trusted       bool     `json:"trusted,omitempty"`    // listed in sys.trusted_assemblies on the source server
	Files         []File   `json:"files"`                // at least file 1
	References    []string `json:"references,omitempty"` // names of user assemblies it references
}

// Param is one parameter of a CLR module.
type Param struct {
	Name   string `json:"name"` // with the @
	Type   string `json:"type"` // as FormatType writes it
	Output bool   `json:"output,omitempty"`
}

// Column is one column of a table-valued function's result.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Module kinds (sys.objects.type).
const (
	ScalarFunction = "FS"
	TableFunction  = "FT"
	Procedure      = "PC"
	Aggregate      = "AF"
	Trigger        = "TA"
)

// Module is one CLR function, procedure or aggregate (sys.assembly_modules).
type Module struct {
	Schema     string   `json:"schema"`
	Name       string   `json:"name"`
	Kind       string   `json:"kind"`
	Assembly   string   `json:"assembly"`
	Class      string   `json:"class"`
	Method     string   `json:"method,omitempty"` // "" for aggregates
	Params     []Param  `json:"params,omitempty"`
	Returns    string   `json:"returns,omitempty"` // scalar functions and aggregates
	Table      []Column `json:"table,omitempty"`   // table-valued functions
	NullOnNull bool     `json:"null_on_null_input,omitempty"`
	ExecuteAs  string   `json:"execute_as,omitempty"` // CALLER (default), OWNER, SELF or a user
}

// Type is one CLR user-defined type (sys.assembly_types).
type Type struct {
	Schema   string `json:"schema"`
	Name     string `json:"name"`
	Assembly string `json:"assembly"`
	Class    string `json:"class"`
}

// Export is what one database holds.
type Export struct {
	Database   string     `json:"database"`
	Assemblies []Assembly `json:"assemblies"`
	Modules    []Module   `json:"modules,omitempty"`
	Types      []Type     `json:"types,omitempty"`
	// Skipped names the CLR objects the script does not recreate (triggers), for the report.
	Skipped []string `json:"skipped,omitempty"`
}

// PermissionSet maps sys.assemblies.permission_set_desc to the CREATE ASSEMBLY keyword.
func PermissionSet(desc string) (string, error) {
	switch strings.ToUpper(strings.TrimSpace(desc)) {
	case "SAFE_ACCESS", "SAFE":
		return "SAFE", nil
	case "EXTERNAL_ACCESS":
		return "EXTERNAL_ACCESS", nil
	case "UNSAFE_ACCESS", "UNSAFE":
		return "UNSAFE", nil
	}
	return "", fmt.Errorf("unknown permission set %q", desc)
}

// Order sorts assemblies so that each comes after those it references; among
// assemblies free to go, by name. A reference to an assembly not in the list, or a
// cycle, is an error.
func Order(asms []Assembly) ([]Assembly, error) {
	byName := map[string]int{}
	for i, a := range asms {
		k := strings.ToLower(a.Name)
		if _, dup := byName[k]; dup {
			return nil, fmt.Errorf("assembly %s is listed twice", a.Name)
		}
		byName[k] = i
	}
	indeg := make([]int, len(asms))
	users := make([][]int, len(asms))
	for i, a := range asms {
		for _, r := range a.References {
			j, ok := byName[strings.ToLower(r)]
			if !ok {
				return nil, fmt.Errorf("assembly %s references %s, which is not among the exported assemblies", a.Name, r)
			}
			indeg[i]++
			users[j] = append(users[j], i)
		}
	}
	var ready []int
	for i := range asms {
		if indeg[i] == 0 {
			ready = append(ready, i)
		}
	}
	var out []Assembly
	for len(ready) > 0 {
		sort.Slice(ready, func(a, b int) bool {
			return strings.ToLower(asms[ready[a]].Name) < strings.ToLower(asms[ready[b]].Name)
		})
		i := ready[0]
		ready = ready[1:]
		out = append(out, asms[i])
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(out) != len(asms) {
		var stuck []string
		for i := range asms {
			if indeg[i] > 0 {
				stuck = append(stuck, asms[i].Name)
			}
		}
		sort.Strings(stuck)
		return nil, fmt.Errorf("assemblies reference each other in a cycle: %s", strings.Join(stuck, ", "))
	}
	return out, nil
}

// Closure returns the named assemblies and every assembly they reference, directly or
// not. Unknown names are an error.
func Closure(asms []Assembly, names []string) ([]Assembly, error) {
	byName := map[string]Assembly{}
	for _, a := range asms {
		byName[strings.ToLower(a.Name)] = a
	}
	keep := map[string]bool{}
	var visit func(n, from string) error
	visit = func(n, from string) error {
		k := strings.ToLower(n)
		a, ok := byName[k]
		if !ok {
			if from == "" {
				return fmt.Errorf("no user assembly %s in the database", n)
			}
			return fmt.Errorf("assembly %s references %s, which is not a user assembly of the database", from, n)
		}
		if keep[k] {
			return nil
		}
		keep[k] = true
		for _, r := range a.References {
			if err := visit(r, a.Name); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	var out []Assembly
	for _, a := range asms {
		if keep[strings.ToLower(a.Name)] {
			out = append(out, a)
		}
	}
	return out, nil
}

// FormatType writes a parameter or column type from sys.types and the column's
// max_length, precision and scale, as CREATE statements take it. schema is set for
// user-defined types.
func FormatType(name string, maxLength, precision, scale int, schema string) string {
	if schema != "" {
		return tsql.QuoteName(schema) + "." + tsql.QuoteName(name)
	}
	switch strings.ToLower(name) {
	case "nvarchar", "nchar":
		if maxLength < 0 {
			return name + "(max)"
		}
		return fmt.Sprintf("%s(%d)", name, maxLength/2)
	case "varchar", "char", "varbinary", "binary":
		if maxLength < 0 {
			return name + "(max)"
		}
		return fmt.Sprintf("%s(%d)", name, maxLength)
	case "decimal", "numeric":
		return fmt.Sprintf("%s(%d, %d)", name, precision, scale)
	case "datetime2", "time", "datetimeoffset":
		return fmt.Sprintf("%s(%d)", name, scale)
	}
	return name
}

func checkName(what, n string) error {
	if strings.ContainsAny(n, "\r\n") {
		return fmt.Errorf("%s %q holds a line break: the script cannot carry it safely", what, n)
	}
	if n == "" {
		return fmt.Errorf("empty %s", what)
	}
	return nil
}

func objName(schema, name string) string {
	if schema == "" {
		schema = "dbo"
	}
	return tsql.QuoteName(schema) + "." + tsql.QuoteName(name)
}

// SHA512 is the hash sys.sp_add_trusted_assembly takes.
func SHA512(b []byte) []byte {
	s := sha512.Sum512(b)
	return s[:]
}

func hexLit(b []byte) string { return "0x" + strings.ToUpper(hex.EncodeToString(b)) }

// Script writes the deploy script of e. It drops the exported CLR objects and
// assemblies (dependents first) and creates them again in dependency order, in one
// transaction with XACT_ABORT, one statement per batch (batches end with GO lines).
// Run it in the target database; it names no database itself.
func Script(e Export) (string, error) {
	asms, err := Order(e.Assemblies)
	if err != nil {
		return "", err
	}
	known := map[string]bool{}
	for _, a := range asms {
		if err := checkName("assembly name", a.Name); err != nil {
			return "", err
		}
		if len(a.Files) == 0 || a.Files[0].FileID != 1 || len(a.Files[0].Content) == 0 {
			return "", fmt.Errorf("assembly %s: file 1 (the assembly itself) is missing", a.Name)
		}
		if _, err := PermissionSet(a.PermissionSet); err != nil {
			return "", fmt.Errorf("assembly %s: %w", a.Name, err)
		}
		known[strings.ToLower(a.Name)] = true
	}
	mods := append([]Module(nil), e.Modules...)
	sort.SliceStable(mods, func(i, j int) bool {
		if mods[i].Schema != mods[j].Schema {
			return mods[i].Schema < mods[j].Schema
		}
		return mods[i].Name < mods[j].Name
	})
	types := append([]Type(nil), e.Types...)
	sort.SliceStable(types, func(i, j int) bool { return types[i].Schema+"."+types[i].Name < types[j].Schema+"."+types[j].Name })
	for _, m := range mods {
		if !known[strings.ToLower(m.Assembly)] {
			return "", fmt.Errorf("%s.%s binds to assembly %s, which is not exported", m.Schema, m.Name, m.Assembly)
		}
		for _, n := range []string{m.Schema, m.Name, m.Class, m.Method} {
			if strings.ContainsAny(n, "\r\n") {
				return "", checkName("CLR object name", n)
			}
		}
	}
	for _, t := range types {
		if !known[strings.ToLower(t.Assembly)] {
			return "", fmt.Errorf("type %s.%s binds to assembly %s, which is not exported", t.Schema, t.Name, t.Assembly)
		}
	}

	var b strings.Builder
	batch := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\nGO\n")
	}
	names := make([]string, len(asms))
	for i, a := range asms {
		names[i] = a.Name
	}
	fmt.Fprintf(&b, "-- hartvault: CLR deploy script exported from database %s\n", tsql.QuoteName(e.Database))
	fmt.Fprintf(&b, "-- assemblies in dependency order: %s\n", strings.Join(names, ", "))
	b.WriteString("-- Run it in the target database (hartvault restore --apply does). It drops the objects and\n")
	b.WriteString("-- assemblies below and creates them again, in one transaction: on any error nothing changes.\n")
	for _, s := range e.Skipped {
		fmt.Fprintf(&b, "-- not recreated: %s\n", strings.NewReplacer("\r", " ", "\n", " ").Replace(s))
	}
	batch("SET XACT_ABORT ON;")
	batch("BEGIN TRANSACTION;")

	// Drops: modules and types first, then assemblies, dependents before what they use.
	for i := len(mods) - 1; i >= 0; i-- {
		m := mods[i]
		kw, err := dropKeyword(m.Kind)
		if err != nil {
			return "", fmt.Errorf("%s.%s: %w", m.Schema, m.Name, err)
		}
		n := objName(m.Schema, m.Name)
		batch("IF OBJECT_ID(%s) IS NOT NULL DROP %s %s;", tsql.QuoteString(n), kw, n)
	}
	for i := len(types) - 1; i >= 0; i-- {
		n := objName(types[i].Schema, types[i].Name)
		batch("IF TYPE_ID(%s) IS NOT NULL DROP TYPE %s;", tsql.QuoteString(n), n)
	}
	for i := len(asms) - 1; i >= 0; i-- {
		batch("IF EXISTS (SELECT 1 FROM sys.assemblies WHERE name = %s) DROP ASSEMBLY %s;", tsql.QuoteString(asms[i].Name), tsql.QuoteName(asms[i].Name))
	}

	// Creates, in dependency order.
	for _, a := range asms {
		if a.Trusted {
			h := hexLit(SHA512(a.Files[0].Content))
			batch("IF NOT EXISTS (SELECT 1 FROM sys.trusted_assemblies WHERE hash = %s) EXEC sys.sp_add_trusted_assembly @hash = %s, @description = %s;",
				h, h, tsql.QuoteString(describe(a)))
		}
		ps, _ := PermissionSet(a.PermissionSet)
		auth := ""
		if a.Owner != "" {
			auth = " AUTHORIZATION " + tsql.QuoteName(a.Owner)
		}
		if a.CLRName != "" {
			fmt.Fprintf(&b, "-- %s\n", strings.NewReplacer("\r", " ", "\n", " ").Replace(a.CLRName))
		}
		batch("CREATE ASSEMBLY %s%s FROM %s WITH PERMISSION_SET = %s;", tsql.QuoteName(a.Name), auth, hexLit(a.Files[0].Content), ps)
		for _, f := range a.Files[1:] {
			batch("ALTER ASSEMBLY %s ADD FILE FROM %s AS %s;", tsql.QuoteName(a.Name), hexLit(f.Content), tsql.QuoteString(f.Name))
		}
		if !a.Visible {
			batch("ALTER ASSEMBLY %s WITH VISIBILITY = OFF;", tsql.QuoteName(a.Name))
		}
	}
	for _, t := range types {
		batch("CREATE TYPE %s EXTERNAL NAME %s.%s;", objName(t.Schema, t.Name), tsql.QuoteName(t.Assembly), tsql.QuoteName(t.Class))
	}
	for _, m := range mods {
		s, err := createModule(m)
		if err != nil {
			return "", err
		}
		batch("%s", s)
	}
	batch("COMMIT TRANSACTION;")
	return b.String(), nil
}

func describe(a Assembly) string {
	if a.CLRName != "" {
		return a.CLRName
	}
	return a.Name
}

func dropKeyword(kind string) (string, error) {
	switch kind {
	case ScalarFunction, TableFunction:
		return "FUNCTION", nil
	case Procedure:
		return "PROCEDURE", nil
	case Aggregate:
		return "AGGREGATE", nil
	}
	return "", fmt.Errorf("CLR object of type %q is not scripted", kind)
}

func params(ps []Param, parens bool) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + " " + p.Type
		if p.Output {
			parts[i] += " OUTPUT"
		}
	}
	s := strings.Join(parts, ", ")
	if parens {
		return "(" + s + ")"
	}
	if s != "" {
		return " " + s
	}
	return ""
}

func createModule(m Module) (string, error) {
	n := objName(m.Schema, m.Name)
	ext := tsql.QuoteName(m.Assembly) + "." + tsql.QuoteName(m.Class)
	var with []string
	if m.ExecuteAs != "" && !strings.EqualFold(m.ExecuteAs, "CALLER") {
		switch strings.ToUpper(m.ExecuteAs) {
		case "OWNER", "SELF":
			with = append(with, "EXECUTE AS "+strings.ToUpper(m.ExecuteAs))
		default:
			with = append(with, "EXECUTE AS "+tsql.QuoteString(m.ExecuteAs))
		}
	}
	switch m.Kind {
	case ScalarFunction, TableFunction:
		if m.NullOnNull && m.Kind == ScalarFunction {
			with = append(with, "RETURNS NULL ON NULL INPUT")
		}
		w := ""
		if len(with) > 0 {
			w = " WITH " + strings.Join(with, ", ")
		}
		ret := m.Returns
		if m.Kind == TableFunction {
			cols := make([]string, len(m.Table))
			for i, c := range m.Table {
				cols[i] = tsql.QuoteName(c.Name) + " " + c.Type
			}
			ret = "TABLE (" + strings.Join(cols, ", ") + ")"
		}
		if ret == "" || ret == "TABLE ()" {
			return "", fmt.Errorf("function %s: no return type", n)
		}
		return fmt.Sprintf("CREATE FUNCTION %s%s RETURNS %s%s AS EXTERNAL NAME %s.%s;", n, params(m.Params, true), ret, w, ext, tsql.QuoteName(m.Method)), nil
	case Procedure:
		w := ""
		if len(with) > 0 {
			w = " WITH " + strings.Join(with, ", ")
		}
		return fmt.Sprintf("CREATE PROCEDURE %s%s%s AS EXTERNAL NAME %s.%s;", n, params(m.Params, false), w, ext, tsql.QuoteName(m.Method)), nil
	case Aggregate:
		if m.Returns == "" {
			return "", fmt.Errorf("aggregate %s: no return type", n)
		}
		return fmt.Sprintf("CREATE AGGREGATE %s%s RETURNS %s EXTERNAL NAME %s;", n, params(m.Params, true), m.Returns, ext), nil
	}
	return "", fmt.Errorf("%s: CLR object of type %q is not scripted", n, m.Kind)
}

// Batches splits a script at its GO lines (a line holding only GO, any case), as
// sqlcmd does, dropping empty batches and comment-only ones.
func Batches(script string) []string {
	var out []string
	var cur []string
	flush := func() {
		s := strings.TrimSpace(strings.Join(cur, "\n"))
		cur = nil
		if s == "" {
			return
		}
		code := false
		for _, l := range strings.Split(s, "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
				code = true
				break
			}
		}
		if code {
			out = append(out, s)
		}
	}
	for _, l := range strings.Split(strings.ReplaceAll(script, "\r\n", "\n"), "\n") {
		if strings.EqualFold(strings.TrimSpace(l), "GO") {
			flush()
			continue
		}
		cur = append(cur, l)
	}
	flush()
	return out
}
