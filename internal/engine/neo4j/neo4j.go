// Package neo4j is the Neo4j engine. Mode logical exports a graph online over Bolt
// (nodes, relationships, every property with its Neo4j type, indexes and constraints)
// into a versioned, line-oriented JSON format stored through the repository, and loads
// it back into an empty database. Mode admin drives the server's own neo4j-admin: an
// online backup on Enterprise, a dump between the plan's stop and start commands on
// Community. docs/neo4j.md describes both, and what consistency each gives.
package neo4j

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"
	_ "time/tzdata" // datetimes with a zone id (Europe/Berlin) must load on hosts without a zone database

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// Engine backs up and restores one kind: neo4j source.
type Engine struct {
	src    plan.Source
	getenv func(string) string
	opts   options

	toolMu sync.Mutex
	tool   *AdminTool // neo4j-admin, once detected
}

// options are tuning knobs; tests shrink them to exercise paging.
type options struct {
	pageSize   int   // records per read transaction
	chunkBytes int   // a chunk file is sealed once it holds this many bytes
	batchSize  int   // rows per UNWIND batch on restore
	loaders    int   // concurrent write transactions on restore
	maxSpan    int64 // largest id range one page scans (sparse id spaces)
	// afterNodes runs between the node and relationship phases of an export (tests
	// use it to create a relationship to a node the export has not seen).
	afterNodes func(ctx context.Context) error
}

func defaultOptions() options {
	return options{pageSize: 5000, chunkBytes: 8 << 20, batchSize: 2000, loaders: 2, maxSpan: 1 << 20}
}

// New returns the engine for a kind: neo4j source (validated by package plan).
func New(src plan.Source) *Engine {
	return &Engine{src: src, getenv: os.Getenv, opts: defaultOptions()}
}

func (e *Engine) Source() string { return e.src.Name }
func (e *Engine) Kind() string   { return plan.KindNeo4j }

// Export format and file layout of a logical backup.
const (
	// ExportFormat is the version of the export format; a reader refuses newer ones.
	ExportFormat = 1
	schemaFile   = "schema.json"
	nodesDir     = "nodes/"
	relsDir      = "relationships/"
)

// Info is the engine section of a Neo4j manifest.
type Info struct {
	Mode     string `json:"mode"`
	Database string `json:"database"`
	// Server is the server's name, version and edition as it reported them.
	Server  string `json:"server,omitempty"`
	Version string `json:"version,omitempty"`
	Edition string `json:"edition,omitempty"`

	// Logical backups.
	Format        int              `json:"format,omitempty"`
	Nodes         int64            `json:"nodes"`
	Relationships int64            `json:"relationships"`
	Labels        map[string]int64 `json:"labels,omitempty"` // nodes per label (a node counts under each of its labels)
	Types         map[string]int64 `json:"types,omitempty"`  // relationships per type
	// Dangling relationships were read but not stored: an end node was created after
	// the export passed its id range, so the export does not hold it.
	Dangling int64 `json:"dangling_relationships,omitempty"`
	// SuspectLocal counts local date-times that may be off by a daylight-saving change
	// of the backup host's time zone (see docs/neo4j.md).
	SuspectLocal int64   `json:"suspect_local_datetimes,omitempty"`
	Indexes      int     `json:"indexes,omitempty"`
	Constraints  int     `json:"constraints,omitempty"`
	Chunks       []Chunk `json:"chunks,omitempty"`
	// Consistency says what the export guarantees (see docs/neo4j.md).
	Consistency string `json:"consistency,omitempty"`

	// Admin backups.
	Admin *AdminInfo `json:"admin,omitempty"`
}

// Chunk is one file of a logical export.
type Chunk struct {
	Path    string `json:"path"`
	Kind    string `json:"kind"` // nodes | relationships
	Records int64  `json:"records"`
	// First and Last are the first and last internal ids the chunk holds.
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// onlineConsistency is recorded in every logical backup's manifest.
const onlineConsistency = "online export over Bolt: each page read in its own read transaction (read-committed); " +
	"not a point-in-time snapshot while writes run; relationships whose end nodes are not in the export are dropped and counted"

// readInfo decodes a manifest's engine section.
func readInfo(m *repo.Manifest) (*Info, error) {
	var info Info
	if len(m.Engine) == 0 {
		return nil, fmt.Errorf("backup %s of %s has no Neo4j section in its manifest", m.ID, m.Source)
	}
	if err := jsonUnmarshal(m.Engine, &info); err != nil {
		return nil, fmt.Errorf("backup %s of %s: Neo4j section of the manifest: %w", m.ID, m.Source, err)
	}
	if info.Format > ExportFormat {
		return nil, fmt.Errorf("backup %s of %s has export format %d; this hartvault reads up to %d", m.ID, m.Source, info.Format, ExportFormat)
	}
	return &info, nil
}

// Backup takes a logical export or an admin backup, as the plan's mode says.
func (e *Engine) Backup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	if req.Log == nil {
		req.Log = slog.New(slog.DiscardHandler)
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	if e.src.Mode == plan.Neo4jModeAdmin {
		switch req.Type {
		case "", repo.TypeFull, repo.TypeDiff:
		default:
			return nil, fmt.Errorf("source %s: neo4j-admin backups are full or diff (Enterprise), not %s", e.src.Name, req.Type)
		}
		return e.adminBackup(ctx, req)
	}
	switch req.Type {
	case "", repo.TypeFull:
	default:
		return nil, fmt.Errorf("source %s: a logical Neo4j export is always full, not %s (mode: admin has diff backups on Enterprise)", e.src.Name, req.Type)
	}
	return e.logicalBackup(ctx, req)
}

// restorePlan is the engine's part of a RestorePlan.
type restorePlan struct {
	manifest *repo.Manifest
	info     *Info
	uri      string
	database string
	until    time.Time // admin, 5.x Enterprise: --restore-until
}

// PlanRestore picks the backup (by id or tag, else the newest finished at or before
// the target time) and describes the steps. A logical restore goes to req.Target as a
// Bolt URI when set, else to the plan's uri; req.Database, when set, names the database
// (else the plan's).
func (e *Engine) PlanRestore(ctx context.Context, req engine.RestoreRequest) (*engine.RestorePlan, error) {
	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	m, err := engine.Select(history, req.BackupID, req.To)
	if err != nil {
		return nil, err
	}
	info, err := readInfo(m)
	if err != nil {
		return nil, err
	}
	rp := &restorePlan{manifest: m, info: info, uri: e.src.URI, database: e.src.Database}
	if req.Database != "" {
		rp.database = req.Database
	}
	// Restorable: any instant from the first backup on (to the newest backup before it).
	p := &engine.RestorePlan{Source: e.src.Name, Kind: e.Kind(), To: m.Finished, Engine: rp, Earliest: history[0].Finished}
	if info.Mode == plan.Neo4jModeAdmin {
		return e.planAdminRestore(ctx, req, p, rp, history)
	}
	if req.Target != "" {
		if msg := checkTargetURI(req.Target); msg != "" {
			return nil, fmt.Errorf("restore of %s: --target must be a Bolt URI for a logical Neo4j backup: %s", e.src.Name, msg)
		}
		rp.uri = req.Target
	}
	p.Target = redactURI(rp.uri) + " database " + rp.database
	p.Backups = []*repo.Manifest{m}
	var size int64
	for _, f := range m.Files {
		size += f.Size
	}
	clear := "refuse a database that holds any node, index or constraint (--force empties it first)"
	if req.Force {
		clear = "empty the database first (--force): delete every node and relationship in batches, drop every index and constraint"
	}
	p.Steps = []string{
		fmt.Sprintf("connect to %s, database %s; %s", redactURI(rp.uri), rp.database, clear),
		fmt.Sprintf("read %d chunk files (%s) of export format %d, checking every extent's SHA-256", len(info.Chunks), engine.Bytes(size), info.Format),
		fmt.Sprintf("create %d nodes with their labels (%s) in batches of %d (UNWIND), each marked with its stored id under a temporary label and index",
			info.Nodes, countList(info.Labels), e.opts.batchSize),
		fmt.Sprintf("create %d relationships (%s), matching both ends by stored id; relationships whose ends are missing are dropped and counted", info.Relationships, countList(info.Types)),
		fmt.Sprintf("create %d indexes and %d constraints, wait for them to come online, then remove the temporary label, property and index", info.Indexes, info.Constraints),
		"compare node counts per label and relationship counts per type with the manifest",
	}
	if info.Dangling > 0 {
		p.Steps = append(p.Steps, fmt.Sprintf("note: the export dropped %d relationships whose end nodes were created while it ran", info.Dangling))
	}
	return p, nil
}

// Restore carries out a plan made by PlanRestore.
func (e *Engine) Restore(ctx context.Context, req engine.RestoreRequest, p *engine.RestorePlan) error {
	rp, ok := p.Engine.(*restorePlan)
	if !ok {
		return fmt.Errorf("restore of %s: plan was not made by the Neo4j engine", e.src.Name)
	}
	if req.Log == nil {
		req.Log = slog.New(slog.DiscardHandler)
	}
	if req.Progress == nil {
		req.Progress = engine.NoProgress{}
	}
	if err := req.Repo.CheckKey(ctx, rp.manifest); err != nil {
		return err
	}
	if rp.info.Mode == plan.Neo4jModeAdmin {
		return e.adminRestore(ctx, req, p, rp)
	}
	rep, err := e.load(ctx, req, rp)
	if rep != nil {
		p.Notes = append(p.Notes, rep.Lines()...)
	}
	return err
}

// Summary is the line `list` shows for a backup.
func (e *Engine) Summary(m *repo.Manifest) string {
	info, err := readInfo(m)
	if err != nil {
		return ""
	}
	if info.Mode == plan.Neo4jModeAdmin && info.Admin != nil {
		return fmt.Sprintf("neo4j-admin %s (%s %s)", info.Admin.Method, info.Edition, info.Version)
	}
	s := fmt.Sprintf("%d nodes, %d relationships", info.Nodes, info.Relationships)
	if info.Dangling > 0 {
		s += fmt.Sprintf(", %d dangling dropped", info.Dangling)
	}
	return s
}

// Warnings are the lines worth showing after a backup.
func (e *Engine) Warnings(m *repo.Manifest) []string {
	info, err := readInfo(m)
	if err != nil {
		return nil
	}
	var out []string
	if info.Dangling > 0 {
		out = append(out, fmt.Sprintf("%d relationships were left out: their end nodes were created while the export ran (an online export is not a snapshot)", info.Dangling))
	}
	if info.SuspectLocal > 0 {
		out = append(out, fmt.Sprintf("%d local date-times lie just after a daylight-saving change of this host's time zone and may be off by it: run hartvault with TZ=UTC", info.SuspectLocal))
	}
	if a := info.Admin; a != nil && a.Requested != "" && a.Requested != adminFull && a.Full {
		out = append(out, fmt.Sprintf("neo4j-admin took a full backup (asked for %s)", a.Requested))
	}
	return out
}

var (
	_ engine.Engine          = (*Engine)(nil)
	_ engine.ContentVerifier = (*Engine)(nil)
	_ engine.Summarizer      = (*Engine)(nil)
	_ engine.Warner          = (*Engine)(nil)
)

// connect opens a driver for uri with the plan's credentials and checks it reaches
// the server. The password comes from the environment and appears nowhere else.
func (e *Engine) connect(ctx context.Context, uri string) (neo4jdriver.DriverWithContext, error) {
	auth := neo4jdriver.NoAuth()
	if e.src.User != "" {
		pw, ok := lookupEnv(e.getenv, e.src.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("source %s: environment variable %s (password_env) is not set", e.src.Name, e.src.PasswordEnv)
		}
		auth = neo4jdriver.BasicAuth(e.src.User, pw, "")
	}
	drv, err := neo4jdriver.NewDriverWithContext(uri, auth, func(c *neo4jdriver.Config) {
		c.UserAgent = "hartvault"
		c.MaxTransactionRetryTime = 30 * time.Second
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: Bolt driver for %s: %w", e.src.Name, redactURI(uri), err)
	}
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := drv.VerifyConnectivity(vctx); err != nil {
		_ = drv.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("source %s: cannot reach Neo4j at %s: %w", e.src.Name, redactURI(uri), err)
	}
	return drv, nil
}

func lookupEnv(getenv func(string) string, name string) (string, bool) {
	if name == "" {
		return "", false
	}
	v := getenv(name)
	return v, v != ""
}

// serverInfo is what dbms.components() reports.
type serverInfo struct {
	Name, Version, Edition string
}

func (s serverInfo) String() string {
	return strings.TrimSpace(s.Name + " " + s.Version + " " + s.Edition)
}

// major is the server's major version (4, 5, 2025...), 0 when unknown.
func (s serverInfo) major() int {
	n := 0
	for _, c := range s.Version {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func queryServerInfo(ctx context.Context, drv neo4jdriver.DriverWithContext, database string) (serverInfo, error) {
	res, err := neo4jdriver.ExecuteQuery(ctx, drv, "CALL dbms.components() YIELD name, versions, edition RETURN name, versions[0] AS version, edition",
		nil, neo4jdriver.EagerResultTransformer, neo4jdriver.ExecuteQueryWithDatabase(database), neo4jdriver.ExecuteQueryWithReadersRouting())
	if err != nil {
		return serverInfo{}, fmt.Errorf("query the server's version (dbms.components): %w", err)
	}
	for _, r := range res.Records {
		m := r.AsMap()
		name, _ := m["name"].(string)
		if name == "Neo4j Kernel" || len(res.Records) == 1 {
			v, _ := m["version"].(string)
			ed, _ := m["edition"].(string)
			return serverInfo{Name: name, Version: v, Edition: ed}, nil
		}
	}
	return serverInfo{}, errors.New("query the server's version: dbms.components() returned no Neo4j Kernel row")
}

// checkTargetURI returns why s is not a Bolt URI ("" when it is).
func checkTargetURI(s string) string {
	for _, p := range []string{"bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://"} {
		if strings.HasPrefix(strings.ToLower(s), p) {
			if strings.Contains(s[len(p):], "@") {
				return "it must not hold a user name or password (the plan's user and password_env are used)"
			}
			return ""
		}
	}
	return "want bolt://HOST:PORT or neo4j://HOST:PORT"
}

// redactURI drops any user information from a URI for messages.
func redactURI(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if slash := strings.Index(rest, "/"); slash < 0 || at < slash {
			rest = rest[at+1:]
		}
	}
	return scheme + "://" + rest
}

// countList formats counts per name, biggest first: "Activity 1200, Entity 300".
func countList(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if m[names[i]] != m[names[j]] {
			return m[names[i]] > m[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for i, n := range names {
		if i == 8 {
			parts = append(parts, fmt.Sprintf("and %d more", len(names)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %d", n, m[n]))
	}
	return strings.Join(parts, ", ")
}
