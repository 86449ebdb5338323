package plan

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Adding a source kind: add its fields to Source (with yaml tags), add a kindSpec below
// listing those YAML keys and a validate function. A key of one kind used in a source of
// another kind is then reported as "field X is not valid for kind Y".

// kindSpec describes one source kind.
type kindSpec struct {
	// fields are the YAML keys this kind owns, besides commonSourceFields.
	fields []string
	// validate checks and normalizes the kind's fields. field is the source's path
	// (sources[2]).
	validate func(v *validator, field string, s *Source) *Error
}

// commonSourceFields are the keys every kind accepts.
func commonSourceFields() []string {
	return []string{"name", "kind", "schedule", "check_every", "retention", "alerts", "max_duration"}
}

// kindSpecs returns the known source kinds. A function, not a package variable, so the
// table cannot be changed at run time.
func kindSpecs() map[string]kindSpec {
	return map[string]kindSpec{
		KindFiles:    {fields: []string{"paths", "exclude"}, validate: validateFiles},
		KindPostgres: {fields: []string{"data_dir", "conninfo", "bin_dir"}, validate: validatePostgres},
		KindMSSQL:    {fields: mssqlFields(), validate: validateMSSQL},
		KindNeo4j:    {fields: neo4jFields(), validate: validateNeo4j},
	}
}

func kindNames(specs map[string]kindSpec) string {
	names := make([]string, 0, len(specs))
	for k := range specs {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// checkKindFields reports the first key of a source mapping that belongs to neither the
// common fields nor kind. keys are the keys present in the file, in order.
func checkKindFields(keys []string, kind string, specs map[string]kindSpec) (string, bool) {
	own := specs[kind].fields
	for _, k := range keys {
		if !slices.Contains(commonSourceFields(), k) && !slices.Contains(own, k) {
			return k, false
		}
	}
	return "", true
}

// validateFiles checks a kind files source: paths are made absolute and clean, and their
// base names must differ because restore puts each path at TARGET/<base name>.
func validateFiles(v *validator, field string, s *Source) *Error {
	pf := field + ".paths"
	if len(s.Paths) == 0 {
		if v.sh.hasKey(field, "paths") && s.Paths != nil {
			return v.errf(pf, "must list at least one path")
		}
		return v.errf(pf, "missing required field")
	}
	bases := map[string]int{}
	for i, p := range s.Paths {
		ip := fmt.Sprintf("%s[%d]", pf, i)
		abs, err := v.localPath(p)
		if err != nil {
			return v.errf(ip, "%s", err)
		}
		s.Paths[i] = abs
		base := filepath.Base(abs)
		if j, dup := bases[base]; dup {
			if s.Paths[j] == abs {
				return v.errf(ip, "%s is listed twice (also paths[%d])", abs, j)
			}
			return v.errf(ip, "base name %q is also that of paths[%d] (%s); restore puts each path at TARGET/<base name>, so base names must differ", base, j, s.Paths[j])
		}
		bases[base] = i
	}
	for i, pat := range s.Exclude {
		ip := fmt.Sprintf("%s.exclude[%d]", field, i)
		if pat == "" {
			return v.errf(ip, "empty pattern")
		}
		if _, err := path.Match(pat, ""); err == path.ErrBadPattern {
			return v.errf(ip, "bad pattern %q", pat)
		}
	}
	return nil
}
