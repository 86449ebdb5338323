package neo4j

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hartonomous/hartvault/internal/repo"
)

// nodeRecord and relRecord are the lines of chunk files.
type nodeRecord struct {
	ID     string                     `json:"id"`
	N      *int64                     `json:"n"`
	Labels []string                   `json:"labels"`
	Props  map[string]json.RawMessage `json:"props"`
}

type relRecord struct {
	ID    string                     `json:"id"`
	N     *int64                     `json:"n"`
	Type  string                     `json:"type"`
	Start string                     `json:"start"`
	SN    *int64                     `json:"sn"`
	End   string                     `json:"end"`
	EN    *int64                     `json:"en"`
	Props map[string]json.RawMessage `json:"props"`
}

// forEachFile reads the named files of backup m and calls fn with each file's whole
// content once all its extents arrived (they come from several objects at once, in
// any order). fn runs on the repository's read workers, so several at a time; a
// blocking fn holds back reading.
//
// Files are read in windows of consecutive files whose first extents lie in at most
// 2×workers objects: the repository reads the objects of one call in any order, and a
// file spanning two objects is held until both are read, so without windows the files
// held at once would grow with the backup. With them, memory is bounded by a few files
// per object of a window; an object shared by two windows is read twice.
func forEachFile(ctx context.Context, r *repo.Repo, m *repo.Manifest, paths []string, progress func(int64), fn func(path string, data []byte) error) error {
	span := 2 * max(1, r.Options().Workers)
	type objKey struct {
		backup string
		index  int
	}
	byPath := make(map[string]*repo.File, len(m.Files))
	for i := range m.Files {
		byPath[m.Files[i].Path] = &m.Files[i]
	}
	var window []string
	objs := map[objKey]bool{}
	for _, p := range paths {
		if f := byPath[p]; f != nil && len(f.Extents) > 0 {
			k := objKey{f.Extents[0].Backup, f.Extents[0].Object}
			if !objs[k] && len(objs) == span {
				if err := readWindow(ctx, r, m, window, progress, fn); err != nil {
					return err
				}
				window, objs = window[:0], map[objKey]bool{}
			}
			objs[k] = true
		}
		window = append(window, p)
	}
	if len(window) == 0 {
		return nil
	}
	return readWindow(ctx, r, m, window, progress, fn)
}

// readWindow reads files with one ReadFiles call, assembling each from its extents.
func readWindow(ctx context.Context, r *repo.Repo, m *repo.Manifest, paths []string, progress func(int64), fn func(path string, data []byte) error) error {
	byPath := make(map[string]*repo.File, len(m.Files))
	for i := range m.Files {
		byPath[m.Files[i].Path] = &m.Files[i]
	}
	files := make([]*repo.File, 0, len(paths))
	for _, p := range paths {
		f := byPath[p]
		if f == nil {
			return fmt.Errorf("backup %s: file %s is missing from the manifest", m.ID, p)
		}
		if f.Size == 0 || len(f.Extents) == 0 {
			return fmt.Errorf("backup %s: file %s is empty", m.ID, p)
		}
		files = append(files, f)
	}
	type pending struct {
		buf []byte
		got int64
	}
	var mu sync.Mutex
	open := map[string]*pending{}
	return r.ReadFiles(ctx, m, files, progress, func(f *repo.File, e repo.Extent, data io.Reader) error {
		mu.Lock()
		p := open[f.Path]
		if p == nil {
			p = &pending{buf: make([]byte, f.Size)}
			open[f.Path] = p
		}
		mu.Unlock()
		if e.Offset < 0 || e.Offset+e.Length > f.Size {
			return fmt.Errorf("backup %s: extent at %d+%d lies outside %s (%d bytes)", m.ID, e.Offset, e.Length, f.Path, f.Size)
		}
		if _, err := io.ReadFull(data, p.buf[e.Offset:e.Offset+e.Length]); err != nil {
			return fmt.Errorf("read %s: %w", f.Path, err)
		}
		mu.Lock()
		p.got += e.Length
		done := p.got == f.Size
		if done {
			delete(open, f.Path)
		}
		mu.Unlock()
		if !done {
			return nil
		}
		return fn(f.Path, p.buf)
	})
}

// parseChunk checks a chunk file's header and trailer and calls rec for each record
// line (a *nodeRecord or *relRecord, per kind). It returns the number of records.
func parseChunk(path, kind string, data []byte, rec func(v any) error) (int64, error) {
	var n int64
	lineNo := 0
	var trailer *chunkTrailer
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return n, fmt.Errorf("%s: line %d is not terminated: the chunk is cut short", path, lineNo+1)
		}
		line := data[:i]
		data = data[i+1:]
		lineNo++
		if trailer != nil {
			return n, fmt.Errorf("%s: line %d follows the trailer", path, lineNo)
		}
		if lineNo == 1 {
			var h chunkHeader
			if err := json.Unmarshal(line, &h); err != nil || h.Hartvault != exportMagic {
				return n, fmt.Errorf("%s: line 1 is not a hartvault export header", path)
			}
			if h.Format < 1 || h.Format > ExportFormat {
				return n, fmt.Errorf("%s: export format %d; this hartvault reads up to %d", path, h.Format, ExportFormat)
			}
			if h.Kind != kind {
				return n, fmt.Errorf("%s: holds %s, expected %s", path, h.Kind, kind)
			}
			continue
		}
		if bytes.HasPrefix(line, []byte(`{"end":`)) {
			trailer = &chunkTrailer{}
			if err := json.Unmarshal(line, trailer); err != nil || !trailer.End {
				return n, fmt.Errorf("%s: line %d: bad trailer", path, lineNo)
			}
			continue
		}
		var v any
		var err error
		switch kind {
		case "nodes":
			r := &nodeRecord{}
			if err = json.Unmarshal(line, r); err == nil && (r.N == nil || r.ID == "") {
				err = fmt.Errorf("a node needs id and n")
			}
			v = r
		default:
			r := &relRecord{}
			if err = json.Unmarshal(line, r); err == nil && (r.N == nil || r.SN == nil || r.EN == nil || r.Type == "") {
				err = fmt.Errorf("a relationship needs n, type, sn and en")
			}
			v = r
		}
		if err != nil {
			return n, fmt.Errorf("%s: line %d: %w", path, lineNo, err)
		}
		if err := rec(v); err != nil {
			return n, fmt.Errorf("%s: line %d: %w", path, lineNo, err)
		}
		n++
	}
	if lineNo == 0 {
		return 0, fmt.Errorf("%s: empty chunk", path)
	}
	if trailer == nil {
		return n, fmt.Errorf("%s: no trailer: the chunk is cut short", path)
	}
	if trailer.Records != n {
		return n, fmt.Errorf("%s: trailer counts %d records, the chunk holds %d", path, trailer.Records, n)
	}
	return n, nil
}

// chunkPaths lists the chunk files of kind in the order they were written.
func chunkPaths(info *Info, kind string) []string {
	var out []string
	for _, c := range info.Chunks {
		if c.Kind == kind {
			out = append(out, c.Path)
		}
	}
	return out
}

func chunkRecords(info *Info) map[string]int64 {
	out := make(map[string]int64, len(info.Chunks))
	for _, c := range info.Chunks {
		out[c.Path] = c.Records
	}
	return out
}

// readSchemaFile reads schema.json of backup m.
func readSchemaFile(ctx context.Context, r *repo.Repo, m *repo.Manifest) (*schemaDoc, error) {
	var doc *schemaDoc
	err := forEachFile(ctx, r, m, []string{schemaFile}, nil, func(_ string, data []byte) error {
		doc = &schemaDoc{}
		if err := json.Unmarshal(data, doc); err != nil {
			return fmt.Errorf("%s: %w", schemaFile, err)
		}
		if doc.Format < 1 || doc.Format > ExportFormat {
			return fmt.Errorf("%s: format %d; this hartvault reads up to %d", schemaFile, doc.Format, ExportFormat)
		}
		return nil
	})
	return doc, err
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
