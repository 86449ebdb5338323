package neo4j

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/repo"
	"github.com/hartonomous/hartvault/internal/testutil/neo4jtest"
)

// testLogger writes the engine's log to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// heapPeak samples the Go heap until stop is called and returns the highest value.
func heapPeak() (stop func() uint64) {
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// writer keeps writing to the graph until stopped: new nodes linked to old ones,
// property updates, and deletions of nodes it created.
func writer(ctx context.Context, t *testing.T, drv neo4jdriver.DriverWithContext) (stop func() int64) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	var writes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		next := int64(1_000_000)
		for ctx.Err() == nil {
			var q string
			props := allTypes(int(next % 1000))
			delete(props, "uid")
			params := map[string]any{"uid": next, "old": int64(rng.IntN(graphEntities)), "p": props}
			switch rng.IntN(4) {
			case 0, 1:
				q = "MATCH (o:Entity {uid: $old}) CREATE (n:Entity:Fresh) SET n = $p, n.uid = $uid CREATE (n)-[:WAS_DERIVED_FROM {role: 'late'}]->(o)"
				next++
			case 2:
				q = "MATCH (o:Entity {uid: $old}) SET o.touched = $uid"
			default:
				q = "MATCH (n:Fresh) WITH n LIMIT 1 DETACH DELETE n"
			}
			if _, err := neo4jdriver.ExecuteQuery(ctx, drv, q, params, neo4jdriver.EagerResultTransformer); err != nil {
				if ctx.Err() == nil {
					t.Errorf("concurrent write: %v", err)
				}
				return
			}
			writes.Add(1)
		}
	}()
	return func() int64 {
		cancel()
		wg.Wait()
		return writes.Load()
	}
}

func backup(ctx context.Context, t *testing.T, eng *Engine, r *repo.Repo) (*repo.Manifest, *Info) {
	t.Helper()
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r, Log: testLogger(t)})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	info, err := readInfo(res.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	return res.Manifest, info
}

func restore(ctx context.Context, t *testing.T, eng *Engine, r *repo.Repo, id, target string, force bool) (*engine.RestorePlan, error) {
	t.Helper()
	req := engine.RestoreRequest{Repo: r, BackupID: id, Target: target, Force: force, Log: testLogger(t)}
	p, err := eng.PlanRestore(ctx, req)
	if err != nil {
		t.Fatalf("plan restore: %v", err)
	}
	return p, eng.Restore(ctx, req, p)
}

// TestLogicalBackupRestore loads a provenance graph into a real Neo4j and backs it up
// while writes continue; backs up again with writes stopped, restores that into a
// fresh second server and compares both graphs exactly; then restores the online
// backup over it (--force): it must load cleanly, match its manifest and hold no
// relationship without both ends.
func TestLogicalBackupRestore(t *testing.T) {
	ctx := context.Background()
	servers := neo4jtest.StartN(t, 2)
	src, dst := servers[0], servers[1]
	srcDrv, dstDrv := driver(t, src.URI), driver(t, dst.URI)
	t0 := time.Now()
	loadGraph(ctx, t, srcDrv)
	t.Logf("graph loaded in %s", time.Since(t0).Round(time.Millisecond))
	r := newRepo(t)

	eng := New(logicalSource(src.URI))
	eng.opts.pageSize = 300 // many pages, and chunks that span volumes
	eng.opts.chunkBytes = 512 << 10
	eng.opts.batchSize = 1000
	var late atomic.Bool
	eng.opts.afterNodes = func(ctx context.Context) error {
		// A node the export has not seen, linked to one it has: the relationship must
		// be dropped and counted, not stored dangling.
		late.Store(true)
		_, err := neo4jdriver.ExecuteQuery(ctx, srcDrv,
			"MATCH (o:Entity {uid: 0}) CREATE (n:Agent {uid: 9000000, name: 'late'})-[:WAS_ASSOCIATED_WITH {role: 'late'}]->(o)",
			nil, neo4jdriver.EagerResultTransformer)
		return err
	}

	// 1. Online backup while writes continue.
	stopWrites := writer(ctx, t, srcDrv)
	time.Sleep(200 * time.Millisecond)
	peak := heapPeak()
	t0 = time.Now()
	m1, info1 := backup(ctx, t, eng, r)
	took := time.Since(t0)
	heap := peak()
	writes := stopWrites()
	t.Logf("online backup: %d nodes, %d relationships, %d dangling dropped, %d chunks, %s plain, %s stored in %s (%.0f records/s) during %d concurrent writes; Go heap peak %s",
		info1.Nodes, info1.Relationships, info1.Dangling, len(info1.Chunks), engine.Bytes(m1.Bytes), engine.Bytes(m1.StoredBytes),
		took.Round(time.Millisecond), float64(info1.Nodes+info1.Relationships)/took.Seconds(), writes, engine.Bytes(int64(heap)))
	if !late.Load() || info1.Dangling < 1 {
		t.Errorf("dangling relationships dropped: %d, want at least the one made after the node phase", info1.Dangling)
	}
	if w := eng.Warnings(m1); len(w) == 0 || !strings.Contains(w[0], "relationships were left out") {
		t.Errorf("warnings after the online backup: %q", w)
	}
	if writes == 0 {
		t.Errorf("no write ran during the backup")
	}
	if len(chunkPaths(info1, "nodes")) < 2 || len(chunkPaths(info1, "relationships")) < 2 {
		t.Errorf("chunks: %+v, want several of each kind", info1.Chunks)
	}
	if info1.Indexes != 5 || info1.Constraints != 1 { // 3 + the 2 LOOKUP indexes; the constraint's index goes with it
		t.Errorf("schema: %d indexes, %d constraints", info1.Indexes, info1.Constraints)
	}
	if rep, err := VerifyExport(ctx, r, m1); err != nil || len(rep.Problems) > 0 {
		t.Fatalf("verify the online backup: %v %+v", err, rep)
	}

	// 2. With writes stopped, back up again, restore into the fresh second server and
	// compare both graphs exactly.
	eng.opts.afterNodes = nil
	peak = heapPeak()
	t0 = time.Now()
	m2, info2 := backup(ctx, t, eng, r)
	took = time.Since(t0)
	t.Logf("quiet backup: %d nodes, %d relationships in %s (%.0f records/s), Go heap peak %s",
		info2.Nodes, info2.Relationships, took.Round(time.Millisecond), float64(info2.Nodes+info2.Relationships)/took.Seconds(), engine.Bytes(int64(peak())))
	if info2.Dangling != 0 {
		t.Errorf("quiet backup dropped %d relationships", info2.Dangling)
	}
	peak = heapPeak()
	t0 = time.Now()
	p, err := restore(ctx, t, eng, r, m2.ID, dst.URI, false)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	took = time.Since(t0)
	t.Logf("restore: %s, Go heap peak %s; notes:\n%s", took.Round(time.Millisecond), engine.Bytes(int64(peak())), strings.Join(p.Notes, "\n"))
	if !strings.Contains(p.Target, dst.URI) {
		t.Errorf("plan target %q, want the --target URI", p.Target)
	}
	want := summarize(ctx, t, srcDrv)
	got := summarize(ctx, t, dstDrv)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored graph differs:\n got %+v\nwant %+v", got, want)
	}
	if want.Nodes != info2.Nodes || want.Rels != info2.Relationships {
		t.Errorf("source holds %d nodes, %d relationships; the backup says %d, %d", want.Nodes, want.Rels, info2.Nodes, info2.Relationships)
	}
	assertClean(ctx, t, dstDrv)
	assertSchema(ctx, t, dstDrv)
	assertValues(ctx, t, dstDrv)
	health, err := eng.Health(ctx, dst.URI, "", []string{"MATCH (e:Entity)-[:WAS_GENERATED_BY]->(:Activity) RETURN count(e)", "CREATE (x:Nope)"})
	if err != nil || len(health) != 4 || health[0].First != fmt.Sprint(want.Nodes) || health[1].First != fmt.Sprint(want.Rels) ||
		health[2].Err != nil || health[2].First != fmt.Sprint(want.Types["WAS_GENERATED_BY"]) || health[3].Err == nil {
		t.Errorf("health queries: %v %+v (a write must fail: the queries run read-only)", err, health)
	}

	// 3. Restoring the online backup over it is refused without --force.
	if _, err := restore(ctx, t, eng, r, m1.ID, dst.URI, false); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a non-empty database: %v, want a refusal", err)
	}

	// 4. With --force the online backup loads cleanly, matches its manifest and holds
	// no relationship without both ends.
	t0 = time.Now()
	if _, err := restore(ctx, t, eng, r, m1.ID, dst.URI, true); err != nil {
		t.Fatalf("restore --force of the online backup: %v", err)
	}
	t.Logf("restore --force of the online backup: %s", time.Since(t0).Round(time.Millisecond))
	got = summarize(ctx, t, dstDrv)
	if got.Nodes != info1.Nodes || got.Rels != info1.Relationships || fmt.Sprint(got.Labels) != fmt.Sprint(info1.Labels) || fmt.Sprint(got.Types) != fmt.Sprint(info1.Types) {
		t.Errorf("restored %+v; the online backup holds %d nodes %v, %d relationships %v", got, info1.Nodes, info1.Labels, info1.Relationships, info1.Types)
	}
	res, err := neo4jdriver.ExecuteQuery(ctx, dstDrv, "MATCH (a)-[r]->(b) WHERE a.uid IS NULL OR b.uid IS NULL RETURN count(r)", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Records[0].Values[0].(int64); n != 0 {
		t.Errorf("%d restored relationships lack a proper end", n)
	}
	assertClean(ctx, t, dstDrv)

	t.Run("verify detects damage", func(t *testing.T) { testVerifyDamage(ctx, t, r, m2) })
}

// assertClean checks the restore left none of its temporary label, property or index.
func assertClean(ctx context.Context, t *testing.T, drv neo4jdriver.DriverWithContext) {
	t.Helper()
	res, err := neo4jdriver.ExecuteQuery(ctx, drv, fmt.Sprintf("MATCH (n) WHERE n:%s OR n.%s IS NOT NULL RETURN count(n)", quoteName(restoreLabel), quoteName(restoreProp)),
		nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Records[0].Values[0].(int64); n != 0 {
		t.Errorf("%d nodes keep the restore's temporary label or property", n)
	}
	res, err = neo4jdriver.ExecuteQuery(ctx, drv, "SHOW INDEXES YIELD name WHERE name = $n RETURN count(*)", map[string]any{"n": restoreIndex}, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	if n := res.Records[0].Values[0].(int64); n != 0 {
		t.Errorf("the temporary index %s is still there", restoreIndex)
	}
}

// assertSchema checks the restored indexes and constraint, and that the constraint
// is enforced.
func assertSchema(ctx context.Context, t *testing.T, drv neo4jdriver.DriverWithContext) {
	t.Helper()
	res, err := neo4jdriver.ExecuteQuery(ctx, drv, "SHOW INDEXES YIELD name, type, state RETURN name, type, state ORDER BY name", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, rec := range res.Records {
		have[rec.Values[0].(string)] = rec.Values[1].(string) + " " + rec.Values[2].(string)
	}
	for name, want := range map[string]string{"activity_started": "RANGE ONLINE", "used_role": "RANGE ONLINE", "agent_name": "TEXT ONLINE", "entity_uid": "RANGE ONLINE"} {
		if have[name] != want {
			t.Errorf("index %s: %q, want %q (all: %v)", name, have[name], want, have)
		}
	}
	_, err = neo4jdriver.ExecuteQuery(ctx, drv, "CREATE (:Entity {uid: 0})", nil, neo4jdriver.EagerResultTransformer)
	if err == nil || !strings.Contains(err.Error(), "ConstraintValidationFailed") {
		t.Errorf("a duplicate Entity uid was accepted (%v): the uniqueness constraint is not there", err)
	}
}

// assertValues reads one node and one relationship back and compares every value
// with what the generator wrote, type by type.
func assertValues(ctx context.Context, t *testing.T, drv neo4jdriver.DriverWithContext) {
	t.Helper()
	res, err := neo4jdriver.ExecuteQuery(ctx, drv, "MATCH (n:Entity {uid: 8}) RETURN properties(n)", nil, neo4jdriver.EagerResultTransformer)
	if err != nil || len(res.Records) != 1 {
		t.Fatalf("read node 8: %v", err)
	}
	got := res.Records[0].Values[0].(map[string]any)
	delete(got, "touched") // the concurrent writer may have set it before the quiet backup
	compareProps(t, "node uid 8", got, allTypes(8))
	if at := got["at"].(time.Time); at.Location().String() != "Europe/Berlin" {
		t.Errorf("datetime zone: %s, want Europe/Berlin", at.Location())
	}
	if off := got["atOffset"].(time.Time); off.Location().String() != offsetZone {
		t.Errorf("datetime with offset came back in zone %s", off.Location())
	}
}

func compareProps(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	for k := range want {
		g, err1 := canonical(map[string]any{k: got[k]})
		w, err2 := canonical(map[string]any{k: want[k]})
		if err1 != nil || err2 != nil || string(g) != string(w) {
			t.Errorf("%s: property %s: got %s (%v), want %s (%v)", what, k, g, err1, w, err2)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d properties, want %d", what, len(got), len(want))
	}
}

// testVerifyDamage changes a good backup's manifest or objects and expects
// VerifyExport to name each problem.
func testVerifyDamage(ctx context.Context, t *testing.T, r *repo.Repo, m *repo.Manifest) {
	edit := func(f func(m *repo.Manifest, info *Info)) *repo.Manifest {
		c := *m
		c.Files = append([]repo.File(nil), m.Files...)
		info, err := readInfo(m)
		if err != nil {
			t.Fatal(err)
		}
		f(&c, info)
		raw, err := json.Marshal(info)
		if err != nil {
			t.Fatal(err)
		}
		c.Engine = raw
		return &c
	}
	for _, tc := range []struct {
		name string
		m    *repo.Manifest
		want []string
	}{
		{"counts", edit(func(_ *repo.Manifest, info *Info) {
			info.Nodes++
			info.Labels["Agent"]--
			info.Chunks[0].Records++
		}), []string{"the export holds", "label Agent", "records, the manifest says"}},
		{"missing chunk", edit(func(m *repo.Manifest, info *Info) {
			for i, f := range m.Files {
				if f.Path == info.Chunks[1].Path {
					m.Files = append(m.Files[:i], m.Files[i+1:]...)
					break
				}
			}
		}), []string{"missing from the backup"}},
		{"dropped node chunk", edit(func(m *repo.Manifest, info *Info) {
			// Forget the first node chunk entirely: relationships then point at nodes
			// that are not in the export.
			first := chunkPaths(info, "nodes")[0]
			var kept []Chunk
			for _, c := range info.Chunks {
				if c.Path != first {
					kept = append(kept, c)
				}
			}
			info.Chunks = kept
		}), []string{"have an end node that is not in the export"}},
	} {
		rep, err := VerifyExport(ctx, r, tc.m)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, want := range tc.want {
			if !hasProblem(rep, want) {
				t.Errorf("%s: problems %+v, want one saying %q", tc.name, rep.Problems, want)
			}
		}
	}

	// A damaged object is a problem, not an error.
	obj := m.Objects[len(m.Objects)/2]
	path := filepath.Join(strings.TrimPrefix(r.Options().URL, "file://"), filepath.FromSlash(obj.Key))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyExport(ctx, r, m)
	if err != nil {
		var de *repo.DamageError
		if !errors.As(err, &de) {
			t.Fatalf("damaged object: %v", err)
		}
	} else if len(rep.Problems) == 0 {
		t.Errorf("a damaged object went unnoticed")
	}
}

func hasProblem(rep *ExportReport, want string) bool {
	for _, p := range rep.Problems {
		if strings.Contains(p.Reason, want) {
			return true
		}
	}
	return false
}
