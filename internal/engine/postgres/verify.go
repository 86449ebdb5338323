package postgres

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/engine"
	"github.com/hartonomous/hartvault/internal/repo"
)

// VerifyContent reads back the content of a backup and, when the cluster has data
// checksums, checks the checksum of every stored page of every relation file. A
// page written after the backup started may be torn in the copy (WAL replay fixes
// it) and is not checked, as PostgreSQL's own tools do. A differential backup's
// pages are checked; those it takes from its full are checked with the full.
func (e *Engine) VerifyContent(ctx context.Context, r *repo.Repo, m *repo.Manifest, report func(engine.Problem)) error {
	info, err := ReadInfo(m)
	if err != nil {
		return err
	}
	var files []*repo.File
	for i := range m.Files {
		f := &m.Files[i]
		if _, ok := parseRelFile(f.Path); !ok {
			continue
		}
		var own []repo.Extent
		for _, x := range f.Extents {
			if x.Backup == "" {
				own = append(own, x)
			}
		}
		if len(own) > 0 {
			c := *f
			c.Extents = own
			files = append(files, &c)
		}
	}
	pc := &pageChecker{since: info.startLSN(), checksums: info.Server.Checksums, frags: map[pageKey][]fragment{}}
	err = r.ReadFiles(ctx, m, files, nil, func(f *repo.File, x repo.Extent, data io.Reader) error {
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		pc.extent(f, x, b, report)
		return nil
	})
	if err != nil {
		return err
	}
	pc.leftovers(report)
	return nil
}

type pageKey struct {
	path string
	page int64
}

type fragment struct {
	off  int // offset within the page
	data []byte
}

// pageChecker checks pages as extents arrive; a page split between two extents
// (at a volume boundary) is put together from its fragments.
type pageChecker struct {
	since     LSN
	checksums bool
	mu        sync.Mutex
	frags     map[pageKey][]fragment
	pages     int64
}

func (pc *pageChecker) extent(f *repo.File, x repo.Extent, b []byte, report func(engine.Problem)) {
	off := x.Offset
	for len(b) > 0 {
		page := off / blockSize
		inPage := int(off % blockSize)
		n := min(blockSize-inPage, len(b))
		if inPage == 0 && n == blockSize {
			pc.check(f.Path, page, b[:n], report)
		} else {
			pc.addFragment(f.Path, page, inPage, b[:n], report)
		}
		b = b[n:]
		off += int64(n)
	}
}

func (pc *pageChecker) addFragment(p string, page int64, off int, data []byte, report func(engine.Problem)) {
	k := pageKey{p, page}
	pc.mu.Lock()
	pc.frags[k] = append(pc.frags[k], fragment{off, append([]byte(nil), data...)})
	fs := pc.frags[k]
	total := 0
	for _, f := range fs {
		total += len(f.data)
	}
	if total < blockSize {
		pc.mu.Unlock()
		return
	}
	delete(pc.frags, k)
	pc.mu.Unlock()
	whole := make([]byte, blockSize)
	for _, f := range fs {
		copy(whole[f.off:], f.data)
	}
	pc.check(p, page, whole, report)
}

func (pc *pageChecker) check(p string, page int64, b []byte, report func(engine.Problem)) {
	pc.mu.Lock()
	pc.pages++
	pc.mu.Unlock()
	if !pc.checksums || allZero(b) || pageLSN(b) >= pc.since {
		return
	}
	if upper := uint16(b[14]) | uint16(b[15])<<8; upper == 0 {
		return // a new page: no checksum yet
	}
	rf, _ := parseRelFile(p)
	blk := uint32(int64(rf.segno)*relSegPages + page)
	if got, want := pageChecksum(b, blk), storedChecksum(b); got != want {
		report(engine.Problem{Where: fmt.Sprintf("%s block %d", p, blk),
			Reason: fmt.Sprintf("page checksum %04x, page header says %04x (relation file %s, page %d of the file)", got, want, p, page)})
	}
}

// leftovers reports pages that never came together: a file ending in a partial page.
func (pc *pageChecker) leftovers(report func(engine.Problem)) {
	keys := make([]pageKey, 0, len(pc.frags))
	for k := range pc.frags {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].path < keys[j].path || keys[i].path == keys[j].path && keys[i].page < keys[j].page
	})
	for _, k := range keys {
		report(engine.Problem{Where: fmt.Sprintf("%s page %d", k.path, k.page), Reason: "incomplete page in the backup"})
	}
}

// VerifyLogs reads back every archived WAL file of the source, of every cluster,
// and checks it against the hash in its name.
func (e *Engine) VerifyLogs(ctx context.Context, r *repo.Repo, report func(engine.Problem)) (int, error) {
	n := 0
	var objs []repo.LogObject
	err := r.ListLogs(ctx, e.src.Name, "", func(o repo.LogObject) error {
		objs = append(objs, o)
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, o := range objs {
		w, ok := parseWALName(o.Name, o.ModTime)
		if !ok {
			continue
		}
		n++
		data, err := r.GetLog(ctx, e.src.Name, o.Name)
		switch {
		case err != nil:
			report(engine.Problem{Where: repo.LogPrefix(e.src.Name) + o.Name, Reason: err.Error()})
		case hash32(data) != w.Hash:
			report(engine.Problem{Where: repo.LogPrefix(e.src.Name) + o.Name, Reason: "content does not match the hash in its name"})
		}
	}
	return n, nil
}
