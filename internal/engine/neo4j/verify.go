package neo4j

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// ExportReport is what VerifyExport found in a logical backup.
type ExportReport struct {
	Nodes, Relationships int64
	Labels, Types        map[string]int64
	Problems             []engine.Problem
}

// VerifyContent checks a backup's content beyond its objects' hashes: for a logical
// export, that it is complete and parses (VerifyExport); admin backups are opaque
// neo4j-admin artifacts and only their objects are checked.
func (e *Engine) VerifyContent(ctx context.Context, r *repo.Repo, m *repo.Manifest, report func(engine.Problem)) error {
	info, err := readInfo(m)
	if err != nil {
		report(engine.Problem{Where: "manifest", Reason: err.Error()})
		return nil
	}
	if info.Mode == plan.Neo4jModeAdmin {
		return nil
	}
	rep, err := VerifyExport(ctx, r, m)
	if err != nil {
		return err
	}
	for _, p := range rep.Problems {
		report(p)
	}
	return nil
}

// VerifyExport reads every file of a logical backup and checks that the export is
// complete and parses: the schema and every chunk the manifest lists are there, each
// chunk has its header and trailer and as many records as the manifest says, every
// property value decodes, node counts per label and relationship counts per type add
// up to the manifest's, and every relationship's ends are nodes of the export.
// Damage and inconsistencies are Problems; the error is for failures to read at all
// (storage, a wrong key), except damaged objects, which are Problems too.
func VerifyExport(ctx context.Context, r *repo.Repo, m *repo.Manifest) (*ExportReport, error) {
	rep := &ExportReport{Labels: map[string]int64{}, Types: map[string]int64{}}
	info, err := readInfo(m)
	if err != nil {
		rep.Problems = append(rep.Problems, engine.Problem{Where: "manifest", Reason: err.Error()})
		return rep, nil
	}
	if info.Mode != plan.Neo4jModeLogical {
		return rep, fmt.Errorf("backup %s is a neo4j-admin backup, not a logical export", m.ID)
	}
	var mu sync.Mutex
	problem := func(where, format string, args ...any) {
		mu.Lock()
		rep.Problems = append(rep.Problems, engine.Problem{Where: where, Reason: fmt.Sprintf(format, args...)})
		mu.Unlock()
	}
	damaged := func(where string, err error) error {
		var de *repo.DamageError
		if errors.As(err, &de) {
			problem(where, "%s", de.Error())
			return nil
		}
		return err
	}

	// The manifest must list the files it describes, and no chunk twice.
	present := map[string]bool{}
	for _, f := range m.Files {
		present[f.Path] = true
	}
	if !present[schemaFile] {
		problem(schemaFile, "missing from the backup")
	} else if doc, err := readSchemaFile(ctx, r, m); err != nil {
		if err := damaged(schemaFile, err); err != nil {
			problem(schemaFile, "%v", err)
		}
	} else if len(doc.Indexes) != info.Indexes || len(doc.Constraints) != info.Constraints {
		problem(schemaFile, "holds %d indexes and %d constraints, the manifest says %d and %d",
			len(doc.Indexes), len(doc.Constraints), info.Indexes, info.Constraints)
	}
	listed := map[string]bool{}
	for _, c := range info.Chunks {
		if listed[c.Path] {
			problem(c.Path, "listed twice in the manifest")
		}
		listed[c.Path] = true
		if !present[c.Path] {
			problem(c.Path, "missing from the backup")
		}
	}
	records := chunkRecords(info)

	seen := &bitset{}
	var dangling int64
	for _, kind := range []string{"nodes", "relationships"} {
		var paths []string
		for _, p := range chunkPaths(info, kind) {
			if present[p] {
				paths = append(paths, p)
			}
		}
		if len(paths) == 0 {
			continue
		}
		err := forEachFile(ctx, r, m, paths, nil, func(path string, data []byte) error {
			local := map[string]int64{}
			var ids []int64
			var localDangling int64
			n, err := parseChunk(path, kind, data, func(v any) error {
				switch x := v.(type) {
				case *nodeRecord:
					if _, err := decodeProps(x.Props); err != nil {
						return fmt.Errorf("node %s: %w", x.ID, err)
					}
					for _, l := range x.Labels {
						local[l]++
					}
					ids = append(ids, *x.N)
				case *relRecord:
					if _, err := decodeProps(x.Props); err != nil {
						return fmt.Errorf("relationship %s: %w", x.ID, err)
					}
					local[x.Type]++
					mu.Lock()
					if !seen.has(*x.SN) || !seen.has(*x.EN) {
						localDangling++
					}
					mu.Unlock()
				}
				return nil
			})
			if err != nil {
				problem(path, "%v", err)
				return nil
			}
			if want := records[path]; want != n {
				problem(path, "holds %d records, the manifest says %d", n, want)
			}
			mu.Lock()
			defer mu.Unlock()
			for k, c := range local {
				if kind == "nodes" {
					rep.Labels[k] += c
				} else {
					rep.Types[k] += c
				}
			}
			if kind == "nodes" {
				rep.Nodes += n
				for _, id := range ids {
					seen.set(id)
				}
			} else {
				rep.Relationships += n
				dangling += localDangling
			}
			return nil
		})
		if err != nil {
			if err := damaged(kind, err); err != nil {
				return rep, fmt.Errorf("verify backup %s of %s: %w", m.ID, m.Source, err)
			}
		}
	}
	if dangling > 0 {
		problem("relationships", "%d relationships have an end node that is not in the export", dangling)
	}
	if rep.Nodes != info.Nodes {
		problem("nodes", "the export holds %d nodes, the manifest says %d", rep.Nodes, info.Nodes)
	}
	if rep.Relationships != info.Relationships {
		problem("relationships", "the export holds %d relationships, the manifest says %d", rep.Relationships, info.Relationships)
	}
	for _, d := range diffCounts("label", "in the export", rep.Labels, info.Labels) {
		problem("nodes", "%s", d)
	}
	for _, d := range diffCounts("relationship type", "in the export", rep.Types, info.Types) {
		problem("relationships", "%s", d)
	}
	sort.SliceStable(rep.Problems, func(i, j int) bool { return rep.Problems[i].Where < rep.Problems[j].Where })
	return rep, nil
}
