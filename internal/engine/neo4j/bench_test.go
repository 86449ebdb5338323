package neo4j

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/testutil/neo4jtest"
)

// BenchmarkLogicalExportRestore measures a logical backup and restore with the
// default settings on a generated graph of HARTVAULT_NEO4J_BENCH_NODES nodes (default
// 100000) and twice as many relationships. It runs once whatever b.N is:
//
//	go test -run '^$' -bench LogicalExportRestore -benchtime 1x ./internal/engine/neo4j/
func BenchmarkLogicalExportRestore(b *testing.B) {
	nodes := 100_000
	if s := os.Getenv("HARTVAULT_NEO4J_BENCH_NODES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		nodes = n
	}
	ctx := context.Background()
	servers := neo4jtest.StartN(b, 2)
	srcDrv := driver(b, servers[0].URI)
	exec := func(q string, params map[string]any) {
		b.Helper()
		sess := srcDrv.NewSession(ctx, neo4jdriver.SessionConfig{})
		defer sess.Close(ctx)
		res, err := sess.Run(ctx, q, params)
		if err == nil {
			_, err = res.Consume(ctx)
		}
		if err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	t0 := time.Now()
	exec("CREATE CONSTRAINT entity_uid FOR (n:Entity) REQUIRE n.uid IS UNIQUE", nil)
	exec(`UNWIND range(0, $n - 1) AS i CALL { WITH i
		CREATE (:Entity {uid: i, name: 'entity ' + i, score: i / 3.0, at: datetime({epochSeconds: 1700000000 + i, timezone: 'Europe/Berlin'}),
			day: date({year: 2000 + i % 25, month: 1 + i % 12, day: 1 + i % 28}), tags: ['prov', 't' + (i % 7)], blob: [b IN range(0, 15) | b]})
		} IN TRANSACTIONS OF 10000 ROWS`, map[string]any{"n": nodes})
	exec(`MATCH (a:Entity) CALL { WITH a
		MATCH (b:Entity {uid: (a.uid * 7919 + 1) % $n}) MATCH (c:Entity {uid: (a.uid * 104729 + 3) % $n})
		CREATE (a)-[:USED {role: 'input', at: localdatetime({year: 2024, month: 1 + a.uid % 12, day: 1 + a.uid % 28, hour: a.uid % 24}), w: a.uid}]->(b),
			(a)-[:WAS_DERIVED_FROM {took: duration({seconds: a.uid}), where: point({x: a.uid, y: 1.5})}]->(c)
		} IN TRANSACTIONS OF 5000 ROWS`, map[string]any{"n": nodes})
	b.Logf("generated %d nodes, %d relationships in %s", nodes, 2*nodes, time.Since(t0).Round(time.Millisecond))

	r := newRepo(b)
	eng := New(logicalSource(servers[0].URI))
	b.ResetTimer()
	peak := heapPeak()
	t0 = time.Now()
	res, err := engine.RunBackup(ctx, eng, engine.BackupRequest{Repo: r})
	if err != nil {
		b.Fatal(err)
	}
	exportTook := time.Since(t0)
	exportHeap := peak()
	info, _ := readInfo(res.Manifest)
	records := float64(info.Nodes + info.Relationships)

	peak = heapPeak()
	t0 = time.Now()
	req := engine.RestoreRequest{Repo: r, Target: servers[1].URI}
	p, err := eng.PlanRestore(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.Restore(ctx, req, p); err != nil {
		b.Fatal(err)
	}
	restoreTook := time.Since(t0)
	restoreHeap := peak()
	b.StopTimer()
	b.ReportMetric(records/exportTook.Seconds(), "export-records/s")
	b.ReportMetric(records/restoreTook.Seconds(), "restore-records/s")
	b.ReportMetric(float64(exportHeap)/(1<<20), "export-heap-MiB")
	b.ReportMetric(float64(restoreHeap)/(1<<20), "restore-heap-MiB")
	b.Logf("export: %d nodes, %d relationships, %s plain, %s stored in %s; restore in %s; Go heap peaks %s / %s; %v",
		info.Nodes, info.Relationships, engine.Bytes(res.Manifest.Bytes), engine.Bytes(res.Manifest.StoredBytes),
		exportTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond), engine.Bytes(int64(exportHeap)), engine.Bytes(int64(restoreHeap)), p.Notes)
}
