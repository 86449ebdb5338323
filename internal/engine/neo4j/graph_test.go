package neo4j

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"
	"github.com/neo4j/neo4j-go-driver/v5/neo4j/dbtype"

	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// A provenance-like graph (W3C PROV: entities, activities, agents) whose nodes and
// relationships carry properties of every Neo4j type.

var berlin = mustZone("Europe/Berlin")

func mustZone(name string) *time.Location {
	l, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return l
}

// allTypes returns properties of every type, varied by i.
func allTypes(i int) map[string]any {
	f := float64(i) + 0.1
	p := map[string]any{
		"uid":      int64(i),
		"name":     fmt.Sprintf("entity \"%d\"\nwith ünïcödé ✓ and \\ backslash", i),
		"score":    f / 3,
		"active":   i%2 == 0,
		"blob":     []byte{0, 1, 2, byte(i), 0xff},
		"day":      dbtype.Date(time.Date(1900+i%300, time.Month(1+i%12), 1+i%28, 0, 0, 0, 0, time.UTC)),
		"at":       time.Date(2024, 3, 31, 1, 30, i%60, 123456789, berlin),                                                           // zone id, across a DST change
		"atOffset": time.Date(2023, 11, 19, 14, 30, 0, i, time.FixedZone(offsetZone, -(5*3600+30*60))),                               // offset
		"local":    dbtype.LocalDateTime(time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC).Add(time.Duration(i) * time.Hour)), // before and after the epoch
		"clock":    dbtype.LocalTime(time.Date(0, 1, 1, i%24, 59, 58, 1000*i, time.UTC)),
		"clockTz":  dbtype.Time(time.Date(0, 1, 1, 8, 0, i%60, 5, time.FixedZone(offsetZone, 3600+1800))),
		"took":     dbtype.Duration{Months: int64(i % 14), Days: -3, Seconds: int64(i) * 61, Nanos: 999},
		"xy":       dbtype.Point2D{SpatialRefId: 7203, X: float64(i), Y: -1.5},
		"lonlat":   dbtype.Point2D{SpatialRefId: 4326, X: 13.4 + float64(i%10)/100, Y: 52.5},
		"xyz":      dbtype.Point3D{SpatialRefId: 9157, X: 1, Y: 2, Z: float64(-i)},
		"lonlatz":  dbtype.Point3D{SpatialRefId: 4979, X: 2.35, Y: 48.85, Z: 35.5},
		"tags":     []any{"prov", fmt.Sprintf("t%d", i%7), ""},
		"counts":   []any{int64(1), int64(-2), int64(math.MaxInt64), int64(math.MinInt64)},
		"ratios":   []any{0.5, math.Inf(1), math.Copysign(0, -1)},
		"days":     []any{dbtype.Date(time.Date(2020, 2, 29, 0, 0, 0, 0, time.UTC))},
		"flags":    []any{true, false},
	}
	if i%5 == 0 {
		p["nan"] = math.NaN()
	}
	return p
}

// nodeProps are node i's properties: every type on every eighth node, a few on the
// others (the graph stays quick to load).
func nodeProps(i int) map[string]any {
	p := allTypes(i)
	if i%8 == 0 {
		return p
	}
	return map[string]any{"uid": p["uid"], "name": p["name"], "score": p["score"], "at": p["at"], "day": p["day"], "tags": p["tags"]}
}

// relProps are relationship i's properties: every type on every eighth one.
func relProps(i int) map[string]any {
	p := allTypes(i)
	delete(p, "uid")
	role := []string{"input", "output", "config"}[i%3]
	if i%8 != 0 {
		return map[string]any{"role": role, "at": p["at"], "weight": p["score"]}
	}
	p["role"] = role
	return p
}

const (
	graphEntities   = 1500
	graphActivities = 700
	graphAgents     = 60
)

// loadGraph creates the test graph and its schema: a uniqueness constraint, a range
// index on nodes and one on relationships. Every node has a unique uid.
func loadGraph(ctx context.Context, t testing.TB, drv neo4jdriver.DriverWithContext) {
	t.Helper()
	exec := func(q string, params map[string]any) {
		t.Helper()
		if _, err := neo4jdriver.ExecuteQuery(ctx, drv, q, params, neo4jdriver.EagerResultTransformer); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("CREATE CONSTRAINT entity_uid FOR (n:Entity) REQUIRE n.uid IS UNIQUE", nil)
	exec("CREATE INDEX activity_started FOR (n:Activity) ON (n.at)", nil)
	exec("CREATE INDEX used_role FOR ()-[r:USED]-() ON (r.role)", nil)
	exec("CREATE TEXT INDEX agent_name FOR (n:Agent) ON (n.name)", nil)
	// Nodes carry a temporary label while relationships are made, for an index on uid.
	exec("CREATE INDEX tmp_uid FOR (n:Tmp) ON (n.uid)", nil)
	exec("CALL db.awaitIndexes(120)", nil)

	uid := 0
	create := func(labels string, n int) {
		rows := make([]any, 0, n)
		for k := 0; k < n; k++ {
			rows = append(rows, map[string]any{"p": nodeProps(uid)})
			uid++
		}
		for len(rows) > 0 {
			k := min(500, len(rows))
			exec("UNWIND $rows AS r CREATE (n:Tmp"+labels+") SET n = r.p", map[string]any{"rows": rows[:k]})
			rows = rows[k:]
		}
	}
	create(":Entity", graphEntities)
	create(":Entity:Dataset", 200)
	create(":Activity", graphActivities)
	create(":Agent", graphAgents)
	create("", 40) // nodes without labels
	nodes := uid

	rng := rand.New(rand.NewPCG(6, 6))
	entity := func() int64 { return int64(rng.IntN(graphEntities + 200)) }
	activity := func() int64 { return int64(graphEntities + 200 + rng.IntN(graphActivities)) }
	agent := func() int64 { return int64(graphEntities + 200 + graphActivities + rng.IntN(graphAgents)) }
	anyNode := func() int64 { return int64(rng.IntN(nodes)) }
	rel := 0
	link := func(typ string, n int, from, to func() int64) {
		rows := make([]any, 0, n)
		for k := 0; k < n; k++ {
			rows = append(rows, map[string]any{"a": from(), "b": to(), "p": relProps(rel)})
			rel++
		}
		for len(rows) > 0 {
			k := min(500, len(rows))
			exec("UNWIND $rows AS r MATCH (a:Tmp {uid: r.a}) MATCH (b:Tmp {uid: r.b}) CREATE (a)-[x:"+typ+"]->(b) SET x = r.p",
				map[string]any{"rows": rows[:k]})
			rows = rows[k:]
		}
	}
	link("WAS_GENERATED_BY", 1700, entity, activity)
	link("USED", 2200, activity, entity)
	link("WAS_ASSOCIATED_WITH", 700, activity, agent)
	link("WAS_DERIVED_FROM", 900, entity, entity)
	link("RELATED", 100, anyNode, anyNode)  // also touches unlabelled nodes, and self-loops may occur
	exec("MATCH (n:Tmp) REMOVE n:Tmp", nil) // the label token stays, with no node
	exec("DROP INDEX tmp_uid", nil)
	exec("CALL db.awaitIndexes(120)", nil)
}

// graphSummary is what two graphs are compared by.
type graphSummary struct {
	Nodes, Rels int64
	Labels      map[string]int64
	Types       map[string]int64
	Checksum    string
}

// summarize counts a graph and hashes every node's labels and properties and every
// relationship's type, properties and ends (by uid), in canonical order.
func summarize(ctx context.Context, t testing.TB, drv neo4jdriver.DriverWithContext) graphSummary {
	t.Helper()
	s := graphSummary{Labels: map[string]int64{}, Types: map[string]int64{}}
	var lines []string
	res, err := neo4jdriver.ExecuteQuery(ctx, drv, "MATCH (n) RETURN labels(n) AS l, properties(n) AS p", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		labels := strs(r.Values[0])
		sort.Strings(labels)
		for _, l := range labels {
			s.Labels[l]++
		}
		props := r.Values[1].(map[string]any)
		c, err := canonical(props)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, "N "+strings.Join(labels, ":")+" "+string(c))
		s.Nodes++
	}
	res, err = neo4jdriver.ExecuteQuery(ctx, drv, "MATCH (a)-[r]->(b) RETURN a.uid, b.uid, type(r), properties(r)", nil, neo4jdriver.EagerResultTransformer)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Records {
		c, err := canonical(r.Values[3].(map[string]any))
		if err != nil {
			t.Fatal(err)
		}
		typ := r.Values[2].(string)
		s.Types[typ]++
		lines = append(lines, fmt.Sprintf("R %v %v %s %s", r.Values[0], r.Values[1], typ, c))
		s.Rels++
	}
	sort.Strings(lines)
	h := sha256.New()
	for _, l := range lines {
		h.Write([]byte(l))
		h.Write([]byte{'\n'})
	}
	s.Checksum = hex.EncodeToString(h.Sum(nil))
	return s
}

func newRepo(t testing.TB) *repo.Repo {
	t.Helper()
	ctx := context.Background()
	opts := repo.Options{
		URL:        "file://" + filepath.ToSlash(filepath.Join(t.TempDir(), "repo")),
		Keys:       repo.Keys{Passphrase: func() (string, error) { return "neo4j test passphrase", nil }},
		VolumeSize: 256 << 10, // chunks span volumes: restore reassembles them
		Workers:    2,
	}
	if _, err := repo.Init(ctx, opts); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func logicalSource(uri string) plan.Source {
	return plan.Source{Name: "provenance", Kind: plan.KindNeo4j, URI: uri, Database: "neo4j", Mode: plan.Neo4jModeLogical}
}

func driver(t testing.TB, uri string) neo4jdriver.DriverWithContext {
	t.Helper()
	drv, err := neo4jdriver.NewDriverWithContext(uri, neo4jdriver.NoAuth())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { drv.Close(context.Background()) })
	return drv
}
