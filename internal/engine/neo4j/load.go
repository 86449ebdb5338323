package neo4j

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"
	"golang.org/x/sync/errgroup"

	"github.com/hartonomous/hartvault/internal/engine"
)

// While loading, every node carries a temporary label and property holding its
// internal id from the export, with an index on them, so relationships find their
// ends; all three are removed at the end.
const (
	restoreLabel = "__HartvaultRestore"
	restoreProp  = "__hartvault_id"
	restoreIndex = "hartvault_restore_id"
)

// LoadReport is what a logical restore did.
type LoadReport struct {
	URI, Database string
	Nodes         int64
	Relationships int64
	// Dropped relationships had an end the export does not hold (none for exports of
	// this version, which drop them at backup time; kept as a safety net).
	Dropped                int64
	Labels                 map[string]int64 // restored, as counted by the server afterwards
	Types                  map[string]int64
	Indexes                int
	Constraints            int
	SchemaErrors           []string
	Emptied                bool
	Took                   time.Duration
	NodesPerSecond         float64
	RelationshipsPerSecond float64
}

// Lines summarizes the report for the restore's notes.
func (r *LoadReport) Lines() []string {
	var out []string
	if r.Emptied {
		out = append(out, fmt.Sprintf("emptied database %s at %s first (--force)", r.Database, redactURI(r.URI)))
	}
	out = append(out,
		fmt.Sprintf("loaded %d nodes (%s) and %d relationships (%s) in %s (%.0f nodes/s, %.0f relationships/s)",
			r.Nodes, countList(r.Labels), r.Relationships, countList(r.Types), r.Took.Round(time.Millisecond), r.NodesPerSecond, r.RelationshipsPerSecond),
		fmt.Sprintf("created %d indexes and %d constraints", r.Indexes, r.Constraints))
	if r.Dropped > 0 {
		out = append(out, fmt.Sprintf("dropped %d relationships whose end nodes are not in the export", r.Dropped))
	}
	for _, s := range r.SchemaErrors {
		out = append(out, "schema: "+s)
	}
	return out
}

// batch is one UNWIND write.
type batch struct {
	query string
	rows  []any
	rels  bool
}

func (e *Engine) load(ctx context.Context, req engine.RestoreRequest, rp *restorePlan) (*LoadReport, error) {
	log := req.Log.With("source", e.src.Name)
	info, m := rp.info, rp.manifest
	rep := &LoadReport{URI: rp.uri, Database: rp.database}
	t0 := time.Now()
	drv, err := e.connect(ctx, rp.uri)
	if err != nil {
		return nil, err
	}
	defer drv.Close(context.WithoutCancel(ctx))
	where := fmt.Sprintf("database %s at %s", rp.database, redactURI(rp.uri))
	sess := drv.NewSession(ctx, neo4jdriver.SessionConfig{DatabaseName: rp.database})
	defer sess.Close(context.WithoutCancel(ctx))

	// Refuse a database holding anything (or empty it with --force).
	st, err := databaseState(ctx, sess)
	if err != nil {
		return nil, fmt.Errorf("restore into %s: %w", where, err)
	}
	if !st.empty() {
		if !req.Force {
			return nil, fmt.Errorf("restore into %s: the database is not empty (%d nodes, %d relationships, %d indexes, %d constraints); --force empties it first",
				where, st.nodes, st.rels, len(st.indexes), len(st.constraints))
		}
		log.Warn("emptying the target database (--force)", "target", where, "nodes", st.nodes, "relationships", st.rels,
			"indexes", len(st.indexes), "constraints", len(st.constraints))
		if err := emptyDatabase(ctx, sess, st); err != nil {
			return nil, fmt.Errorf("restore into %s: empty it (--force): %w", where, err)
		}
		rep.Emptied = true
	}

	schema, err := readSchemaFile(ctx, req.Repo, m)
	if err != nil {
		return nil, err
	}
	if err := run(ctx, sess, fmt.Sprintf("CREATE INDEX %s IF NOT EXISTS FOR (n:%s) ON (n.%s)", quoteName(restoreIndex), quoteName(restoreLabel), quoteName(restoreProp)), nil); err != nil {
		return nil, fmt.Errorf("restore into %s: create the temporary index: %w", where, err)
	}
	if err := run(ctx, sess, "CALL db.awaitIndex($name, 300)", map[string]any{"name": restoreIndex}); err != nil {
		return nil, fmt.Errorf("restore into %s: wait for the temporary index: %w", where, err)
	}

	var total int64
	for _, f := range m.Files {
		total += f.Size
	}
	req.Progress.SetTotal(total)
	records := chunkRecords(info)

	// Nodes, then relationships: two passes, so no relationship waits for a node
	// another worker has not read yet.
	tNodes := time.Now()
	created, _, err := e.loadPass(ctx, req, drv, rp, "nodes", records)
	if err != nil {
		return rep, fmt.Errorf("restore into %s: load nodes: %w", where, err)
	}
	rep.Nodes = created
	rep.NodesPerSecond = float64(created) / max(time.Since(tNodes).Seconds(), 1e-3)
	log.Info("nodes loaded", "nodes", created, "took", time.Since(tNodes).Round(time.Millisecond))
	tRels := time.Now()
	created, dropped, err := e.loadPass(ctx, req, drv, rp, "relationships", records)
	if err != nil {
		return rep, fmt.Errorf("restore into %s: load relationships: %w", where, err)
	}
	rep.Relationships, rep.Dropped = created, dropped
	rep.RelationshipsPerSecond = float64(created) / max(time.Since(tRels).Seconds(), 1e-3)
	log.Info("relationships loaded", "relationships", created, "dropped", dropped, "took", time.Since(tRels).Round(time.Millisecond))

	// Schema after the data: indexes are built once instead of maintained per write,
	// and a constraint the data breaks fails by name with the graph complete.
	rep.Indexes, rep.Constraints, rep.SchemaErrors = createSchema(ctx, sess, schema, log)

	if err := run(ctx, sess, fmt.Sprintf("MATCH (n:%s) CALL { WITH n REMOVE n:%s, n.%s } IN TRANSACTIONS OF 10000 ROWS",
		quoteName(restoreLabel), quoteName(restoreLabel), quoteName(restoreProp)), nil); err != nil {
		return rep, fmt.Errorf("restore into %s: remove the temporary label and property: %w", where, err)
	}
	if err := run(ctx, sess, fmt.Sprintf("DROP INDEX %s IF EXISTS", quoteName(restoreIndex)), nil); err != nil {
		return rep, fmt.Errorf("restore into %s: drop the temporary index: %w", where, err)
	}

	// Verify against the manifest.
	after, err := graphCounts(ctx, sess)
	if err != nil {
		return rep, fmt.Errorf("restore into %s: count the restored graph: %w", where, err)
	}
	rep.Labels, rep.Types = after.labels, after.types
	rep.Took = time.Since(t0)
	var diffs []string
	if after.nodes != info.Nodes {
		diffs = append(diffs, fmt.Sprintf("%d nodes, the backup holds %d", after.nodes, info.Nodes))
	}
	if after.rels != info.Relationships {
		diffs = append(diffs, fmt.Sprintf("%d relationships, the backup holds %d", after.rels, info.Relationships))
	}
	diffs = append(diffs, diffCounts("label", "restored", after.labels, info.Labels)...)
	diffs = append(diffs, diffCounts("relationship type", "restored", after.types, info.Types)...)
	for _, l := range rep.Lines() {
		log.Info(l)
	}
	if len(diffs) > 0 {
		return rep, fmt.Errorf("restore into %s: the restored graph differs from the backup: %s", where, strings.Join(diffs, "; "))
	}
	if len(rep.SchemaErrors) > 0 {
		return rep, fmt.Errorf("restore into %s: the graph is loaded, but %d indexes or constraints could not be created: %s",
			where, len(rep.SchemaErrors), strings.Join(rep.SchemaErrors, "; "))
	}
	return rep, nil
}

// loadPass reads the chunk files of kind and writes them in batches on e.opts.loaders
// sessions. It returns the entities created and, for relationships, those dropped
// because an end was missing.
func (e *Engine) loadPass(ctx context.Context, req engine.RestoreRequest, drv neo4jdriver.DriverWithContext, rp *restorePlan, kind string, records map[string]int64) (int64, int64, error) {
	paths := chunkPaths(rp.info, kind)
	if len(paths) == 0 {
		return 0, 0, nil
	}
	g, gctx := errgroup.WithContext(ctx)
	work := make(chan batch, e.opts.loaders)
	var created, dropped atomic.Int64
	for i := 0; i < e.opts.loaders; i++ {
		g.Go(func() error {
			sess := drv.NewSession(gctx, neo4jdriver.SessionConfig{DatabaseName: rp.database})
			defer sess.Close(context.WithoutCancel(gctx))
			for b := range work {
				n, err := writeBatch(gctx, sess, b)
				if err != nil {
					return err
				}
				created.Add(n)
				if b.rels {
					dropped.Add(int64(len(b.rows)) - n)
				}
			}
			return nil
		})
	}
	send := func(b batch) error {
		select {
		case work <- b:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	}
	g.Go(func() error {
		defer close(work)
		return forEachFile(gctx, req.Repo, rp.manifest, paths, req.Progress.Add, func(path string, data []byte) error {
			groups := map[string][]any{}
			flush := func(key string) error {
				rows := groups[key]
				if len(rows) == 0 {
					return nil
				}
				delete(groups, key)
				if kind == "nodes" {
					return send(batch{query: nodeQuery(strings.Split(key, "\x00")), rows: rows})
				}
				return send(batch{query: relQuery(key), rows: rows, rels: true})
			}
			n, err := parseChunk(path, kind, data, func(v any) error {
				var key string
				var row map[string]any
				switch r := v.(type) {
				case *nodeRecord:
					props, err := decodeProps(r.Props)
					if err != nil {
						return fmt.Errorf("node %s: %w", r.ID, err)
					}
					labels := append([]string(nil), r.Labels...)
					sort.Strings(labels)
					key = strings.Join(labels, "\x00")
					row = map[string]any{"n": *r.N, "p": props}
				case *relRecord:
					props, err := decodeProps(r.Props)
					if err != nil {
						return fmt.Errorf("relationship %s: %w", r.ID, err)
					}
					key = r.Type
					row = map[string]any{"s": *r.SN, "e": *r.EN, "p": props}
				}
				groups[key] = append(groups[key], row)
				if len(groups[key]) >= e.opts.batchSize {
					return flush(key)
				}
				return nil
			})
			if err != nil {
				return err
			}
			if want, ok := records[path]; ok && want != n {
				return fmt.Errorf("%s holds %d records, the manifest says %d", path, n, want)
			}
			keys := make([]string, 0, len(groups))
			for k := range groups {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if err := flush(k); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err := g.Wait(); err != nil {
		return created.Load(), dropped.Load(), err
	}
	return created.Load(), dropped.Load(), nil
}

// nodeQuery creates nodes with the given labels (plus the temporary one).
func nodeQuery(labels []string) string {
	var b strings.Builder
	b.WriteString("UNWIND $rows AS r CREATE (n:")
	b.WriteString(quoteName(restoreLabel))
	for _, l := range labels {
		if l == "" {
			continue
		}
		b.WriteByte(':')
		b.WriteString(quoteName(l))
	}
	fmt.Fprintf(&b, ") SET n = r.p, n.%s = r.n RETURN count(n)", quoteName(restoreProp))
	return b.String()
}

// relQuery creates relationships of type typ between nodes found by stored id.
func relQuery(typ string) string {
	l, p := quoteName(restoreLabel), quoteName(restoreProp)
	return fmt.Sprintf("UNWIND $rows AS r MATCH (a:%s {%s: r.s}) MATCH (b:%s {%s: r.e}) CREATE (a)-[x:%s]->(b) SET x = r.p RETURN count(x)",
		l, p, l, p, quoteName(typ))
}

// writeBatch runs one batch in a write transaction (retried on transient errors,
// such as deadlocks between loaders) and returns how many entities it created.
func writeBatch(ctx context.Context, sess neo4jdriver.SessionWithContext, b batch) (int64, error) {
	v, err := sess.ExecuteWrite(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
		return firstValue(ctx, tx, b.query, map[string]any{"rows": b.rows})
	})
	if err != nil {
		return 0, fmt.Errorf("write a batch of %d: %w", len(b.rows), err)
	}
	n, _ := v.(int64)
	return n, nil
}

// quoteName quotes a label, type, property or index name for Cypher.
func quoteName(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// run runs a statement in an auto-commit transaction (CALL ... IN TRANSACTIONS and
// schema commands need one) and consumes its result.
func run(ctx context.Context, sess neo4jdriver.SessionWithContext, q string, params map[string]any) error {
	res, err := sess.Run(ctx, q, params)
	if err != nil {
		return err
	}
	_, err = res.Consume(ctx)
	return err
}

// dbState is what a target database holds.
type dbState struct {
	nodes, rels int64
	indexes     []schemaEntry // other than LOOKUP
	constraints []schemaEntry
}

func (s *dbState) empty() bool {
	return s.nodes == 0 && s.rels == 0 && len(s.indexes) == 0 && len(s.constraints) == 0
}

func databaseState(ctx context.Context, sess neo4jdriver.SessionWithContext) (*dbState, error) {
	st := &dbState{}
	c, err := graphCounts(ctx, sess)
	if err != nil {
		return nil, err
	}
	st.nodes, st.rels = c.nodes, c.rels
	schema, err := readSchema(ctx, sess)
	if err != nil {
		return nil, err
	}
	for _, ix := range schema.Indexes {
		if ix.Type != "LOOKUP" {
			st.indexes = append(st.indexes, ix)
		}
	}
	st.constraints = schema.Constraints
	return st, nil
}

// emptyDatabase drops constraints and indexes (LOOKUP indexes stay: a new database
// has them) and deletes every relationship and node, in batches.
func emptyDatabase(ctx context.Context, sess neo4jdriver.SessionWithContext, st *dbState) error {
	for _, c := range st.constraints {
		if err := run(ctx, sess, "DROP CONSTRAINT "+quoteName(c.Name)+" IF EXISTS", nil); err != nil {
			return fmt.Errorf("drop constraint %s: %w", c.Name, err)
		}
	}
	for _, ix := range st.indexes {
		if err := run(ctx, sess, "DROP INDEX "+quoteName(ix.Name)+" IF EXISTS", nil); err != nil {
			return fmt.Errorf("drop index %s: %w", ix.Name, err)
		}
	}
	if err := run(ctx, sess, "MATCH ()-[r]->() CALL { WITH r DELETE r } IN TRANSACTIONS OF 10000 ROWS", nil); err != nil {
		return fmt.Errorf("delete relationships: %w", err)
	}
	if err := run(ctx, sess, "MATCH (n) CALL { WITH n DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS", nil); err != nil {
		return fmt.Errorf("delete nodes: %w", err)
	}
	return nil
}

// counts is a graph's size per label and type.
type counts struct {
	nodes, rels int64
	labels      map[string]int64
	types       map[string]int64
}

// graphCounts counts nodes per label and relationships per type (from the count
// store: cheap even for large graphs).
func graphCounts(ctx context.Context, sess neo4jdriver.SessionWithContext) (*counts, error) {
	v, err := sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
		c := &counts{labels: map[string]int64{}, types: map[string]int64{}}
		one := func(q string) (int64, error) {
			v, err := firstValue(ctx, tx, q, nil)
			n, _ := v.(int64)
			return n, err
		}
		names := func(q string) ([]string, error) {
			res, err := tx.Run(ctx, q, nil)
			if err != nil {
				return nil, err
			}
			var out []string
			for res.Next(ctx) {
				out = append(out, str(res.Record().Values[0]))
			}
			return out, res.Err()
		}
		var err error
		if c.nodes, err = one("MATCH (n) RETURN count(n)"); err != nil {
			return nil, err
		}
		if c.rels, err = one("MATCH ()-[r]->() RETURN count(r)"); err != nil {
			return nil, err
		}
		labels, err := names("CALL db.labels() YIELD label RETURN label")
		if err != nil {
			return nil, err
		}
		for _, l := range labels {
			n, err := one("MATCH (n:" + quoteName(l) + ") RETURN count(n)")
			if err != nil {
				return nil, err
			}
			if n > 0 && l != restoreLabel {
				c.labels[l] = n
			}
		}
		types, err := names("CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType")
		if err != nil {
			return nil, err
		}
		for _, t := range types {
			n, err := one("MATCH ()-[r:" + quoteName(t) + "]->() RETURN count(r)")
			if err != nil {
				return nil, err
			}
			if n > 0 {
				c.types[t] = n
			}
		}
		return c, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*counts), nil
}

// diffCounts lists the names whose counts differ; gotWord says what got counts
// ("restored", "in the export").
func diffCounts(what, gotWord string, got, want map[string]int64) []string {
	names := map[string]bool{}
	for k := range got {
		names[k] = true
	}
	for k := range want {
		names[k] = true
	}
	var out []string
	for k := range names {
		if got[k] != want[k] {
			out = append(out, fmt.Sprintf("%s %s: %d %s, the manifest says %d", what, k, got[k], gotWord, want[k]))
		}
	}
	sort.Strings(out)
	return out
}

// createSchema recreates indexes, then constraints, from their create statements,
// and waits for all to come online. Failures are collected, not fatal: the data is
// already loaded, and the caller reports them.
func createSchema(ctx context.Context, sess neo4jdriver.SessionWithContext, doc *schemaDoc, log interface{ Warn(string, ...any) }) (int, int, []string) {
	existing, err := readSchema(ctx, sess)
	var errs []string
	if err != nil {
		return 0, 0, []string{err.Error()}
	}
	have := map[string]bool{}
	lookup := map[string]bool{}
	for _, ix := range existing.Indexes {
		have[ix.Name] = true
		if ix.Type == "LOOKUP" {
			lookup[ix.EntityType] = true
		}
	}
	var nIdx, nCon int
	for _, ix := range doc.Indexes {
		if have[ix.Name] || (ix.Type == "LOOKUP" && lookup[ix.EntityType]) {
			continue // a new database has its LOOKUP indexes already
		}
		if ix.Create == "" {
			errs = append(errs, fmt.Sprintf("index %s: the backup has no create statement for it", ix.Name))
			continue
		}
		if err := run(ctx, sess, ix.Create, nil); err != nil {
			errs = append(errs, fmt.Sprintf("index %s: %v", ix.Name, oneLine(err)))
			log.Warn("index not created", "index", ix.Name, "error", err)
			continue
		}
		nIdx++
	}
	for _, c := range doc.Constraints {
		if c.Create == "" {
			errs = append(errs, fmt.Sprintf("constraint %s: the backup has no create statement for it", c.Name))
			continue
		}
		if err := run(ctx, sess, c.Create, nil); err != nil {
			errs = append(errs, fmt.Sprintf("constraint %s: %v", c.Name, oneLine(err)))
			log.Warn("constraint not created", "constraint", c.Name, "error", err)
			continue
		}
		nCon++
	}
	if err := run(ctx, sess, "CALL db.awaitIndexes(3600)", nil); err != nil {
		errs = append(errs, fmt.Sprintf("waiting for indexes to come online: %v", oneLine(err)))
	}
	return nIdx, nCon, errs
}

func oneLine(err error) string {
	var n4 *neo4jdriver.Neo4jError
	msg := err.Error()
	if errors.As(err, &n4) {
		msg = n4.Msg
	}
	return strings.Join(strings.Fields(msg), " ")
}
