package neo4j

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	neo4jdriver "github.com/neo4j/neo4j-go-driver/v5/neo4j"
	"github.com/neo4j/neo4j-go-driver/v5/neo4j/dbtype"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/plan"
	"github.com/hartonomous/hartvault/internal/repo"
)

// A logical export is a set of files in the backup:
//
//	schema.json                 indexes and constraints (SHOW INDEXES / SHOW CONSTRAINTS)
//	nodes/000000.jsonl ...      one node per line, in internal id order
//	relationships/000000.jsonl  one relationship per line, in internal id order
//
// Each chunk file starts with a header line and ends with a trailer that counts its
// records, so a chunk cut short is detected even without the manifest:
//
//	{"hartvault":"neo4j-export","format":1,"kind":"nodes","chunk":0}
//	{"id":"4:…:0","n":0,"labels":["Activity"],"props":{"name":["string","x"]}}
//	{"end":true,"records":1}
//
// Relationship lines: {"id":…,"n":…,"type":"USED","start":…,"sn":…,"end":…,"en":…,"props":{…}}.
// "id" is the element id, "n" the internal id (what restore maps identity by).

// header and trailer of a chunk file.
type chunkHeader struct {
	Hartvault string `json:"hartvault"`
	Format    int    `json:"format"`
	Kind      string `json:"kind"`
	Chunk     int    `json:"chunk"`
}

type chunkTrailer struct {
	End     bool  `json:"end"`
	Records int64 `json:"records"`
}

const exportMagic = "neo4j-export"

// schemaDoc is schema.json.
type schemaDoc struct {
	Format      int           `json:"format"`
	Indexes     []schemaEntry `json:"indexes"`
	Constraints []schemaEntry `json:"constraints"`
}

// schemaEntry is one index or constraint as SHOW INDEXES / SHOW CONSTRAINTS report it.
type schemaEntry struct {
	Name          string   `json:"name"`
	Type          string   `json:"type"`                        // RANGE, TEXT, POINT, FULLTEXT, LOOKUP, VECTOR; UNIQUENESS, NODE_KEY, ...
	EntityType    string   `json:"entity_type"`                 // NODE | RELATIONSHIP
	LabelsOrTypes []string `json:"labels_or_types"`             // nil for LOOKUP
	Properties    []string `json:"properties"`                  // nil for LOOKUP
	Owner         string   `json:"owning_constraint,omitempty"` // an index that backs a constraint
	Create        string   `json:"create"`                      // createStatement: recreates it exactly (options included)
}

// exportStats accumulates what the export wrote.
type exportStats struct {
	info    *Info
	bytes   int64
	started time.Time
}

func (e *Engine) logicalBackup(ctx context.Context, req engine.BackupRequest) (*repo.Manifest, error) {
	log := req.Log.With("source", e.src.Name)
	drv, err := e.connect(ctx, e.src.URI)
	if err != nil {
		return nil, err
	}
	defer drv.Close(context.WithoutCancel(ctx))
	srv, err := queryServerInfo(ctx, drv, e.src.Database)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", e.src.Name, err)
	}
	log.Info("logical export starts", "server", srv.String(), "database", e.src.Database, "uri", redactURI(e.src.URI))

	history, err := req.Repo.Backups(ctx, e.src.Name)
	if err != nil {
		return nil, err
	}
	if req.Tag != "" {
		if _, err := repo.Find(history, req.Tag); err == nil {
			return nil, fmt.Errorf("tag %q is already used by a backup of %s", req.Tag, e.src.Name)
		}
	}
	b, err := req.Repo.BeginBackup(ctx, req.Lock, repo.BackupSpec{Source: e.src.Name, Kind: plan.KindNeo4j, Type: repo.TypeFull, Tag: req.Tag})
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			b.Abort(context.WithoutCancel(ctx))
		}
	}()

	info := &Info{Mode: plan.Neo4jModeLogical, Database: e.src.Database, Server: srv.String(), Version: srv.Version, Edition: srv.Edition,
		Format: ExportFormat, Labels: map[string]int64{}, Types: map[string]int64{}, Consistency: onlineConsistency}
	st := &exportStats{info: info, started: time.Now()}
	w := newChunkWriter(ctx, b, req.Progress, e.opts.chunkBytes)
	err = e.export(ctx, drv, srv, w, st, log)
	if cerr := w.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: export: %w", e.src.Name, err)
	}
	info.Chunks = w.chunks
	b.AddBytes(w.bytes)
	if err := b.SetEngine(info); err != nil {
		return nil, err
	}
	m, err := b.Commit(ctx)
	if err != nil {
		return nil, err
	}
	ok = true
	took := time.Since(st.started)
	log.Info("logical export done", "backup", m.ID, "nodes", info.Nodes, "relationships", info.Relationships,
		"dangling_dropped", info.Dangling, "indexes", info.Indexes, "constraints", info.Constraints,
		"bytes", w.bytes, "took", took.Round(time.Millisecond),
		"records_per_s", int64(float64(info.Nodes+info.Relationships)/max(took.Seconds(), 1e-3)))
	if info.Dangling > 0 {
		log.Warn("relationships dropped from the export: an end node was created after the export read its id range",
			"dangling", info.Dangling)
	}
	return m, nil
}

// export writes schema, nodes and relationships.
func (e *Engine) export(ctx context.Context, drv neo4jdriver.DriverWithContext, srv serverInfo, w *chunkWriter, st *exportStats, log interface {
	Info(string, ...any)
	Warn(string, ...any)
}) error {
	sess := drv.NewSession(ctx, neo4jdriver.SessionConfig{DatabaseName: e.src.Database, AccessMode: neo4jdriver.AccessModeRead, FetchSize: 1000})
	defer sess.Close(context.WithoutCancel(ctx))

	schema, err := readSchema(ctx, sess)
	if err != nil {
		return err
	}
	st.info.Indexes, st.info.Constraints = len(schema.Indexes), len(schema.Constraints)
	raw, err := json.MarshalIndent(schema, "", "  ")
	if err != nil {
		return err
	}
	if err := w.writeFile(schemaFile, append(raw, '\n')); err != nil {
		return err
	}

	var enc encoder
	seen := &bitset{}
	maxNode, err := maxID(ctx, sess, "MATCH (n) RETURN max(id(n))")
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = e.scan(ctx, sess, scanSpec{
		kind: "nodes", max: maxNode,
		query: "MATCH (n) WHERE id(n) IN range($lo, $hi) WITH n ORDER BY id(n) LIMIT $limit RETURN n",
	}, w, func(v any, line []byte, c *pageCounts) ([]byte, int64, error) {
		n, ok := v.(dbtype.Node)
		if !ok {
			return nil, 0, fmt.Errorf("node query returned %T", v)
		}
		line = append(line, `{"id":`...)
		line = appendString(line, n.ElementId)
		line = append(line, `,"n":`...)
		line = strconv.AppendInt(line, n.Id, 10) //nolint:staticcheck // the internal id is what pages and identity use
		line = append(line, `,"labels":[`...)
		labels := append([]string(nil), n.Labels...)
		sort.Strings(labels)
		for i, l := range labels {
			if i > 0 {
				line = append(line, ',')
			}
			line = appendString(line, l)
			c.names[l]++
		}
		line = append(line, `],"props":`...)
		line, err := enc.appendProps(line, n.Props)
		if err != nil {
			return nil, 0, fmt.Errorf("node %s: %w", n.ElementId, err)
		}
		return append(line, "}\n"...), n.Id, nil //nolint:staticcheck
	}, func(c *pageCounts) {
		for _, id := range c.ids {
			seen.set(id)
		}
		st.info.Nodes += c.records
		for k, n := range c.names {
			st.info.Labels[k] += n
		}
	})
	if err != nil {
		return err
	}
	log.Info("nodes exported", "nodes", st.info.Nodes, "took", time.Since(t0).Round(time.Millisecond))

	if e.opts.afterNodes != nil {
		if err := e.opts.afterNodes(ctx); err != nil {
			return err
		}
	}

	maxRel, err := maxID(ctx, sess, "MATCH ()-[r]->() RETURN max(id(r))")
	if err != nil {
		return err
	}
	t0 = time.Now()
	err = e.scan(ctx, sess, scanSpec{
		kind: "relationships", max: maxRel,
		query: "MATCH ()-[r]->() WHERE id(r) IN range($lo, $hi) WITH r ORDER BY id(r) LIMIT $limit RETURN r",
	}, w, func(v any, line []byte, c *pageCounts) ([]byte, int64, error) {
		r, ok := v.(dbtype.Relationship)
		if !ok {
			return nil, 0, fmt.Errorf("relationship query returned %T", v)
		}
		//nolint:staticcheck // internal ids: pages, dangling checks and identity use them
		id, sn, en := r.Id, r.StartId, r.EndId
		if !seen.has(sn) || !seen.has(en) {
			c.dangling++
			return line, id, nil
		}
		line = append(line, `{"id":`...)
		line = appendString(line, r.ElementId)
		line = append(line, `,"n":`...)
		line = strconv.AppendInt(line, id, 10)
		line = append(line, `,"type":`...)
		line = appendString(line, r.Type)
		line = append(line, `,"start":`...)
		line = appendString(line, r.StartElementId)
		line = append(line, `,"sn":`...)
		line = strconv.AppendInt(line, sn, 10)
		line = append(line, `,"end":`...)
		line = appendString(line, r.EndElementId)
		line = append(line, `,"en":`...)
		line = strconv.AppendInt(line, en, 10)
		line = append(line, `,"props":`...)
		line, err := enc.appendProps(line, r.Props)
		if err != nil {
			return nil, 0, fmt.Errorf("relationship %s: %w", r.ElementId, err)
		}
		c.names[r.Type]++
		return append(line, "}\n"...), id, nil
	}, func(c *pageCounts) {
		st.info.Relationships += c.records
		st.info.Dangling += c.dangling
		for k, n := range c.names {
			st.info.Types[k] += n
		}
	})
	if err != nil {
		return err
	}
	log.Info("relationships exported", "relationships", st.info.Relationships, "took", time.Since(t0).Round(time.Millisecond))
	st.info.SuspectLocal = enc.suspectLocal
	if enc.suspectLocal > 0 {
		log.Warn("local date-times near a daylight-saving change of this host's time zone may be off by the change: "+
			"the Neo4j Go driver builds them in the local zone; run hartvault with TZ=UTC to be exact", "values", enc.suspectLocal)
	}
	return nil
}

// scanSpec is one phase of the export.
type scanSpec struct {
	kind  string
	max   int64 // highest id at the start of the phase; -1 when there is nothing
	query string
}

// pageCounts are what one page read, merged only once its transaction succeeded.
type pageCounts struct {
	records  int64
	dangling int64
	names    map[string]int64
	ids      []int64
}

func (c *pageCounts) reset() {
	c.records, c.dangling, c.ids = 0, 0, c.ids[:0]
	clear(c.names)
}

// scan reads ids 0..spec.max in pages: each page is one read transaction over an id
// range (NodeByIdSeek / RelationshipByIdSeek: no sort of the whole graph, no SKIP),
// at most pageSize records. Ranges widen over sparse stretches of the id space and
// narrow again where it is dense.
func (e *Engine) scan(ctx context.Context, sess neo4jdriver.SessionWithContext, spec scanSpec, w *chunkWriter,
	line func(v any, buf []byte, c *pageCounts) ([]byte, int64, error), merge func(*pageCounts)) error {
	if spec.max < 0 {
		return nil
	}
	limit := int64(e.opts.pageSize)
	span := limit
	page := &pageCounts{names: map[string]int64{}}
	var buf []byte
	for lo := int64(0); lo <= spec.max; {
		hi := min(lo+span-1, spec.max)
		var last int64 = -1
		_, err := sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
			buf = buf[:0]
			page.reset()
			last = -1
			res, err := tx.Run(ctx, spec.query, map[string]any{"lo": lo, "hi": hi, "limit": limit})
			if err != nil {
				return nil, err
			}
			for res.Next(ctx) {
				before := len(buf)
				var id int64
				if buf, id, err = line(res.Record().Values[0], buf, page); err != nil {
					return nil, err
				}
				last = id
				if len(buf) > before {
					page.records++
					page.ids = append(page.ids, id)
				}
			}
			return nil, res.Err()
		})
		if err != nil {
			return fmt.Errorf("read %s with ids %d..%d: %w", spec.kind, lo, hi, err)
		}
		merge(page)
		if err := w.add(spec.kind, buf, page.records, page.ids); err != nil {
			return err
		}
		full := last >= 0 && int64(len(page.ids))+page.dangling >= limit
		switch {
		case full:
			lo = last + 1 // the page hit its limit inside the range: continue right after it
		default:
			lo = hi + 1
		}
		switch {
		case full && span > limit:
			span = max(limit, span/2)
		case !full && page.records+page.dangling < limit/4 && span < e.opts.maxSpan:
			span = min(span*2, e.opts.maxSpan)
		}
	}
	return w.flush(spec.kind)
}

// maxID runs a max(id(...)) query; -1 when the graph has none.
func maxID(ctx context.Context, sess neo4jdriver.SessionWithContext, q string) (int64, error) {
	v, err := sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
		return firstValue(ctx, tx, q, nil)
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", q, err)
	}
	if n, ok := v.(int64); ok {
		return n, nil
	}
	return -1, nil
}

// readSchema reads indexes and constraints (YIELD *: the columns differ between 4.4
// and 5.x). Indexes that back a constraint are left to the constraint, which creates
// them: 5.x names the owning constraint, 4.4 marks such indexes UNIQUE.
func readSchema(ctx context.Context, sess neo4jdriver.SessionWithContext) (*schemaDoc, error) {
	doc := &schemaDoc{Format: ExportFormat, Indexes: []schemaEntry{}, Constraints: []schemaEntry{}}
	_, err := sess.ExecuteRead(ctx, func(tx neo4jdriver.ManagedTransaction) (any, error) {
		doc.Indexes, doc.Constraints = doc.Indexes[:0], doc.Constraints[:0]
		for _, q := range []struct {
			cypher string
			into   *[]schemaEntry
		}{{"SHOW INDEXES YIELD *", &doc.Indexes}, {"SHOW CONSTRAINTS YIELD *", &doc.Constraints}} {
			res, err := tx.Run(ctx, q.cypher, nil)
			if err != nil {
				return nil, err
			}
			for res.Next(ctx) {
				m := res.Record().AsMap()
				en := schemaEntry{Name: str(m["name"]), Type: str(m["type"]), EntityType: str(m["entityType"]),
					LabelsOrTypes: strs(m["labelsOrTypes"]), Properties: strs(m["properties"]),
					Owner: str(m["owningConstraint"]), Create: str(m["createStatement"])}
				if en.Owner != "" || str(m["uniqueness"]) == "UNIQUE" {
					continue
				}
				*q.into = append(*q.into, en)
			}
			if err := res.Err(); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the schema (SHOW INDEXES, SHOW CONSTRAINTS; Neo4j 4.2 or newer): %w", err)
	}
	sort.Slice(doc.Indexes, func(i, j int) bool { return doc.Indexes[i].Name < doc.Indexes[j].Name })
	sort.Slice(doc.Constraints, func(i, j int) bool { return doc.Constraints[i].Name < doc.Constraints[j].Name })
	return doc, nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func strs(v any) []string {
	l, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, str(x))
	}
	return out
}

// bitset holds the internal ids of exported nodes: one bit per id up to the highest,
// so a graph of a billion node ids needs 125 MB.
type bitset struct{ words []uint64 }

func (s *bitset) set(id int64) {
	if id < 0 {
		return
	}
	w := int(id >> 6)
	if w >= len(s.words) {
		s.words = append(s.words, make([]uint64, w+1-len(s.words)+len(s.words)/4)...)
	}
	s.words[w] |= 1 << uint(id&63)
}

func (s *bitset) has(id int64) bool {
	w := int(id >> 6)
	return id >= 0 && w < len(s.words) && s.words[w]&(1<<uint(id&63)) != 0
}

// chunkWriter packs chunk files: records accumulate in a buffer that is sealed into
// a file (header, records, trailer) once it reaches chunkBytes; a writer goroutine
// stores sealed chunks through the pack writer while the next one fills. Memory is
// bounded by two chunk buffers plus one page.
type chunkWriter struct {
	ctx      context.Context
	b        *repo.Backup
	pw       *repo.PackWriter
	progress engine.Progress
	limit    int

	cur     *bytes.Buffer
	kind    string
	records int64
	first   int64
	last    int64
	seq     map[string]int

	work   chan sealed
	free   chan *bytes.Buffer
	done   chan error
	mu     sync.Mutex
	err    error // the first store error, seen by send
	chunks []Chunk
	bytes  int64
}

type sealed struct {
	path string
	buf  *bytes.Buffer
	meta *Chunk
}

func newChunkWriter(ctx context.Context, b *repo.Backup, progress engine.Progress, limit int) *chunkWriter {
	w := &chunkWriter{ctx: ctx, b: b, pw: b.NewPackWriter(ctx), progress: progress, limit: limit,
		seq: map[string]int{}, work: make(chan sealed), free: make(chan *bytes.Buffer, 2), done: make(chan error, 1)}
	w.free <- &bytes.Buffer{}
	w.free <- &bytes.Buffer{}
	go w.run()
	return w
}

func (w *chunkWriter) run() {
	var firstErr error
	for s := range w.work {
		if firstErr == nil {
			if firstErr = w.store(s); firstErr != nil {
				w.mu.Lock()
				w.err = firstErr
				w.mu.Unlock()
			}
		}
		s.buf.Reset()
		w.free <- s.buf
	}
	if err := w.pw.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		w.pw.Abort()
	}
	w.done <- firstErr
}

func (w *chunkWriter) store(s sealed) error {
	size := int64(s.buf.Len())
	exts, err := w.pw.Write(bytes.NewReader(s.buf.Bytes()), 0)
	if err != nil {
		return fmt.Errorf("store %s: %w", s.path, err)
	}
	f := repo.File{Path: s.path, Type: repo.TypeRegular, Mode: 0o600, ModTime: time.Now().UTC(), Size: size, Extents: exts}
	if len(exts) == 1 {
		f.SHA256 = exts[0].SHA256
	}
	w.b.AddFile(f)
	w.progress.Add(size)
	return nil
}

// send hands a sealed buffer to the writer goroutine. A store that failed stops the
// export at the next chunk.
func (w *chunkWriter) send(s sealed) error {
	if err := w.failed(); err != nil {
		return err
	}
	select {
	case w.work <- s:
		return nil
	case <-w.ctx.Done():
		return w.ctx.Err()
	}
}

func (w *chunkWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writeFile stores a whole small file (schema.json).
func (w *chunkWriter) writeFile(path string, data []byte) error {
	buf := <-w.free
	buf.Write(data)
	w.bytes += int64(len(data))
	return w.send(sealed{path: path, buf: buf})
}

// add appends a page's records of kind; ids are the page's record ids in order.
func (w *chunkWriter) add(kind string, data []byte, records int64, ids []int64) error {
	if records == 0 {
		return nil
	}
	if w.cur == nil || w.kind != kind {
		if err := w.flush(w.kind); err != nil {
			return err
		}
		w.cur = <-w.free
		w.kind, w.records, w.first = kind, 0, ids[0]
		hdr, _ := json.Marshal(chunkHeader{Hartvault: exportMagic, Format: ExportFormat, Kind: kind, Chunk: w.seq[kind]})
		w.cur.Write(hdr)
		w.cur.WriteByte('\n')
	}
	w.cur.Write(data)
	w.records += records
	w.last = ids[len(ids)-1]
	w.bytes += int64(len(data))
	if w.cur.Len() >= w.limit {
		return w.flush(kind)
	}
	return nil
}

// flush seals the open chunk of kind, if any.
func (w *chunkWriter) flush(kind string) error {
	if w.cur == nil || w.kind != kind {
		return nil
	}
	tr, _ := json.Marshal(chunkTrailer{End: true, Records: w.records})
	w.cur.Write(tr)
	w.cur.WriteByte('\n')
	dir := nodesDir
	if kind == "relationships" {
		dir = relsDir
	}
	path := fmt.Sprintf("%s%06d.jsonl", dir, w.seq[kind])
	w.seq[kind]++
	w.chunks = append(w.chunks, Chunk{Path: path, Kind: kind, Records: w.records, First: w.first, Last: w.last})
	buf := w.cur
	w.cur = nil
	return w.send(sealed{path: path, buf: buf})
}

// close stores what is left and waits for the writer goroutine.
func (w *chunkWriter) close() error {
	var err error
	if w.cur != nil {
		err = w.flush(w.kind)
	}
	close(w.work)
	if werr := <-w.done; err == nil {
		err = werr
	}
	return err
}
